"""A stateless soft limiter: the last step of restoration, so output never clips."""

from __future__ import annotations

import numpy as np

DEFAULT_KNEE = 0.9
# Just under full scale, so float32 rounding of tanh(large) cannot reach 1.0.
CEILING = 0.999


def soft_limit(wave: np.ndarray, knee: float = DEFAULT_KNEE) -> np.ndarray:
    """Leave samples within ``±knee`` untouched; bend larger ones smoothly towards ±1.

    Above the knee, ``knee + h * tanh((|x| - knee) / h)`` with ``h = CEILING - knee``:
    continuous with slope 1 at the knee and never above ``CEILING``, so a 16/24-bit file
    cannot clip. Stateless, so streaming blocks limit exactly as the whole file would.
    """
    if not 0.0 < knee < CEILING:
        raise ValueError(f"knee must be in (0, {CEILING}), got {knee}")
    magnitude = np.abs(wave)
    over = magnitude > knee
    if not over.any():
        return wave
    headroom = CEILING - knee
    limited = knee + headroom * np.tanh((magnitude[over] - knee) / headroom)
    out = wave.copy()
    out[over] = np.sign(wave[over]) * limited
    return out

"""Loudness measurement and normalisation after ITU-R BS.1770 (pyloudnorm)."""

from __future__ import annotations

import numpy as np
import pyloudnorm

# pyloudnorm's gating needs at least one 400 ms block; shorter clips fall back to RMS.
_MIN_GATED_SECONDS = 0.4
# Quieter than this is treated as silence: the gain to reach the target would be absurd.
SILENCE_LUFS = -70.0


def measure_loudness(wave: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of ``(C, N)`` or ``(N,)`` audio; ``-inf`` for silence.

    Clips shorter than one gating block are measured as K-weighting-free RMS in dBFS - 0.691,
    which matches BS.1770 for steady full-band signals.
    """
    data = wave.T if wave.ndim == 2 else wave
    if data.shape[0] < int(_MIN_GATED_SECONDS * sample_rate):
        mean_square = float(np.mean(np.square(data, dtype=np.float64)))
        return -0.691 + 10 * np.log10(mean_square) if mean_square > 0 else float("-inf")
    meter = pyloudnorm.Meter(sample_rate)
    return float(meter.integrated_loudness(data.astype(np.float64)))


def normalize_loudness(
    wave: np.ndarray, sample_rate: int, target_lufs: float = -20.0, max_gain_db: float = 40.0
) -> tuple[np.ndarray, float]:
    """Scale audio to ``target_lufs``.

    Returns:
        (scaled wave, gain in dB that was applied). Silent or near-silent input gets gain 0;
        the gain is capped at ``max_gain_db`` so a faint hiss is not blown up to speech level.
        Undo with ``apply_gain(wave, -gain_db)``.
    """
    loudness = measure_loudness(wave, sample_rate)
    if not np.isfinite(loudness) or loudness < SILENCE_LUFS:
        return wave, 0.0
    gain_db = float(np.clip(target_lufs - loudness, -max_gain_db, max_gain_db))
    return apply_gain(wave, gain_db), gain_db


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by ``10 ** (gain_db / 20)``, keeping float32."""
    return (wave * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)

"""High-quality sample-rate conversion (soxr, "very high quality")."""

from __future__ import annotations

import numpy as np
import soxr


def resample(wave: np.ndarray, sr_in: int, sr_out: int, quality: str = "VHQ") -> np.ndarray:
    """Resample ``(C, N)`` or ``(N,)`` float32 audio from ``sr_in`` to ``sr_out``.

    Output length is ``round(N * sr_out / sr_in)``; identity when the rates match.
    soxr's linear-phase filter keeps the signal aligned (no group delay to compensate).
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return wave.astype(np.float32, copy=False)
    if wave.ndim == 1:
        return soxr.resample(wave, sr_in, sr_out, quality=quality).astype(np.float32)
    # soxr wants (N, C)
    out = soxr.resample(np.ascontiguousarray(wave.T), sr_in, sr_out, quality=quality)
    return np.ascontiguousarray(out.T, dtype=np.float32)

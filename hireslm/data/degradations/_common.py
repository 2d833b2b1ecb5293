"""Checks and small helpers shared by the degradation functions."""

from __future__ import annotations

import numpy as np

from hireslm.audio.io import check_audio
from hireslm.audio.resample import resample

# Source samples of context kept on each side of a crop that is resampled.
RESAMPLE_MARGIN = 256


def check_wave(wave: np.ndarray, sample_rate: int, name: str) -> np.ndarray:
    """Validate a degradation's input and return it as float32 ``(C, N)``.

    Raises:
        ValueError: not 2-D or a non-positive sample rate.
        EmptyAudioError, NonFiniteAudioError: no samples, or NaN/inf samples.
    """
    if not isinstance(wave, np.ndarray) or wave.ndim != 2:
        shape = getattr(wave, "shape", None)
        raise ValueError(f"{name}: wave must be a (C, N) numpy array, got shape {shape}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{name}: sample_rate must be a positive integer, got {sample_rate}")
    check_audio(wave, source=name)
    return wave.astype(np.float32, copy=False)


def power(wave: np.ndarray) -> float:
    """Mean square over all channels and samples (float64 accumulation)."""
    return float(np.mean(np.square(wave, dtype=np.float64)))


def as_2d(wave: np.ndarray) -> np.ndarray:
    """``(N,)`` -> ``(1, N)``; ``(C, N)`` unchanged."""
    return wave[None, :] if wave.ndim == 1 else wave


def fit_length(
    source: np.ndarray,
    source_rate: int,
    length: int,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Loop/crop ``source`` ``(C, M)`` at a random offset into ``(C, length)`` at ``sample_rate``.

    The crop is taken at the source's own rate, then only that piece is resampled, so a long
    noise file costs no more than the length that is needed.
    """
    source = as_2d(source)
    if source.shape[-1] == 0:
        raise ValueError("source signal has no samples")
    total = source.shape[-1]
    offset = int(rng.integers(0, total))
    if source_rate == sample_rate:
        margin, needed = 0, length
    else:
        # Context on both sides keeps the resampler's edge transients out of the crop.
        margin = RESAMPLE_MARGIN
        needed = int(np.ceil(length * source_rate / sample_rate)) + 2 * margin + 1
    # Index arithmetic instead of tiling: costs the length needed, not the source's length.
    piece = source[:, (offset - margin + np.arange(needed)) % total]
    piece = resample(np.ascontiguousarray(piece, dtype=np.float32), source_rate, sample_rate)
    start = int(round(margin * sample_rate / source_rate))
    piece = piece[:, start:]
    if piece.shape[-1] < length:
        piece = np.pad(piece, ((0, 0), (0, length - piece.shape[-1])), mode="wrap")
    return piece[:, :length]


def match_channels(source: np.ndarray, channels: int) -> np.ndarray:
    """Give ``source`` ``(C', N)`` exactly ``channels`` rows: downmix, or repeat a mono row."""
    if source.shape[0] == channels:
        return source
    if source.shape[0] == 1:
        return np.repeat(source, channels, axis=0)
    mono = source.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0)

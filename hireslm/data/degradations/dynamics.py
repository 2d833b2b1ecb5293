"""Level and time-domain damage: clipping, gain, packet loss."""

from __future__ import annotations

import numpy as np

from hireslm.data.degradations._common import check_wave


def clipping(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    threshold: float | None = None,
    threshold_dbfs: float | None = None,
    soft: bool = False,
) -> np.ndarray:
    """Clip at a threshold: a fraction of the input's peak, or an absolute level in dBFS.

    Args:
        wave: ``(C, N)`` float32.
        threshold: in (0, 1], fraction of ``max|wave|`` (exactly one of the two thresholds).
        threshold_dbfs: <= 0, absolute clip level ``10 ** (dBFS / 20)``.
        soft: ``t * tanh(x / t)`` instead of a hard ``clip(x, -t, t)``; both keep ``|y| <= t``.
    ``rng`` is unused.
    """
    wave = check_wave(wave, sample_rate, "clipping")
    if (threshold is None) == (threshold_dbfs is None):
        raise ValueError("clipping: give exactly one of threshold and threshold_dbfs")
    if threshold is not None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"clipping: threshold must be in (0, 1], got {threshold}")
        level = float(threshold) * float(np.max(np.abs(wave)))
    else:
        if threshold_dbfs > 0.0:
            raise ValueError(f"clipping: threshold_dbfs must be <= 0, got {threshold_dbfs}")
        level = 10.0 ** (float(threshold_dbfs) / 20.0)
    if level <= 0.0:
        return wave.copy()
    if soft:
        out = level * np.tanh(wave.astype(np.float64) / level)
    else:
        out = np.clip(wave, -level, level)
    return out.astype(np.float32)


def gain(
    wave: np.ndarray, sample_rate: int, rng: np.random.Generator, *, gain_db: float
) -> np.ndarray:
    """Multiply ``(C, N)`` by ``10 ** (gain_db / 20)``; nothing is clipped here. ``rng`` unused."""
    wave = check_wave(wave, sample_rate, "gain")
    return (wave.astype(np.float64) * 10.0 ** (float(gain_db) / 20.0)).astype(np.float32)


def packet_loss(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    loss_rate: float,
    frame_ms: float = 20.0,
    fade_ms: float = 0.0,
) -> np.ndarray:
    """Drop whole packets, as a VoIP stream without concealment does.

    The signal is cut into ``frame_ms`` packets; each is lost independently with probability
    ``loss_rate`` (same packets on every channel) and replaced by silence. With ``fade_ms`` > 0
    the audio fades out/in over that time at each gap's edges (inside the kept packets) instead
    of jumping to zero, which avoids the clicks a hard gap makes.

    Args:
        wave: ``(C, N)`` float32.
    """
    wave = check_wave(wave, sample_rate, "packet_loss")
    if not 0.0 <= loss_rate <= 1.0:
        raise ValueError(f"packet_loss: loss_rate must be in [0, 1], got {loss_rate}")
    frame = int(round(frame_ms * sample_rate / 1000.0))
    if frame <= 0:
        raise ValueError(f"packet_loss: frame_ms too small at {sample_rate} Hz: {frame_ms}")
    length = wave.shape[-1]
    n_frames = -(-length // frame)
    lost = rng.random(n_frames) < loss_rate
    keep = np.repeat(~lost, frame)[:length].astype(np.float64)
    fade = int(round(fade_ms * sample_rate / 1000.0))
    if fade > 0 and lost.any():
        # Ramps live inside the kept packets so a lost packet stays fully silent.
        keep = np.minimum(keep, _ramp_to_gaps(keep, fade))
    return (wave * keep[None, :]).astype(np.float32)


def _ramp_to_gaps(keep: np.ndarray, fade: int) -> np.ndarray:
    """``min(1, distance to nearest dropped sample / fade)`` for a 0/1 mask ``(N,)``."""
    length = keep.size
    index = np.arange(length)
    dropped = keep == 0.0
    big = length + fade
    last = np.where(dropped, index, -big)
    last = np.maximum.accumulate(last)
    next_ = np.where(dropped, index, 2 * big)
    next_ = np.minimum.accumulate(next_[::-1])[::-1]
    distance = np.minimum(index - last, next_ - index)
    return np.minimum(1.0, distance / float(fade))

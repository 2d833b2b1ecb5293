"""Consistent declipping of a whole signal: A-SPADE on overlapping frames, in blocks.

The signal is cut on one global grid of Hann-windowed frames (``frame`` samples, hop a
quarter of it, as in Záviška et al.'s toolbox), and only the frames that hold a clipped
sample are restored (``hireslm.repair.spade``); the restored frames are overlap-added with
the dual (synthesis) window. Every frame returned by A-SPADE is consistent, and the dual
window makes the overlap-add a convex combination, so the result is consistent too; it is
then enforced sample by sample: every unclipped sample is the input's own value, bit for
bit, and every clipped one has at least the clip level's magnitude with the input's sign.

Memory stays bounded: the signal is processed in regions of ``block_frames`` hops, each from
a window reaching one frame past the region, and frames are restored ``batch_frames`` at a
time. A frame's result depends only on its own samples, so the cut into regions (or stream
blocks, ``hireslm.repair.stream``) does not change the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.repair.clip_detect import (
    DEFAULT_MIN_RUN,
    DEFAULT_TOLERANCE,
    ClipLevels,
    as_float_2d,
    clipped_masks,
    estimate_clip_levels,
)
from hireslm.repair.runs import Runs
from hireslm.repair.spade import aspade

REFERENCE_RATE = 48000


@dataclass(frozen=True)
class DeclipSettings:
    """How ``declip`` restores clipped runs.

    Args:
        frame_48k: frame length at 48 kHz (other rates keep its duration), a multiple of 4.
        redundancy, step, every, max_iter: A-SPADE's (``hireslm.repair.spade.aspade``).
        epsilon: A-SPADE's stopping threshold for a frame whose clip level is 1 (frames are
            scaled by the channel's clip level first, so it is relative).
        tolerance, min_run: which samples count as clipped (``clip_detect.clipped_masks``).
        block_frames: hops per processed region (bounds the memory).
        batch_frames: frames restored together.
    """

    frame_48k: int = 4096
    redundancy: int = 2
    step: int = 8
    every: int = 1
    epsilon: float = 0.1
    max_iter: int = 300
    tolerance: float = DEFAULT_TOLERANCE
    min_run: int = DEFAULT_MIN_RUN
    block_frames: int = 256
    batch_frames: int = 64

    def frame(self, sample_rate: int) -> int:
        """Frame length at ``sample_rate``: a multiple of 4, at least 64."""
        return max(4 * int(round(self.frame_48k / 4 * sample_rate / REFERENCE_RATE)), 64)


@dataclass(frozen=True)
class DeclipResult:
    """``wave``: restored, shaped like the input, float (the input's float dtype; float64
    for integer input, in the integer's units). ``levels``: the clip levels used.
    ``runs``: the clipped runs that were restored. ``frames``: frames A-SPADE restored."""

    wave: np.ndarray
    levels: ClipLevels
    runs: Runs
    frames: int


def analysis_window(frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann ``(frame,)`` (peak 1) and its dual for a hop of ``frame // 4``: the
    products of the two, summed over the frames covering a sample, are exactly 1."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame) / frame)
    hop = frame // 4
    power = np.zeros(hop)
    for shift in range(4):
        power += (window**2)[shift * hop:(shift + 1) * hop]
    return window, window / np.tile(power, 4)


def declip(
    wave: np.ndarray,
    sample_rate: int,
    *,
    levels: ClipLevels | None = None,
    settings: DeclipSettings = DeclipSettings(),
) -> DeclipResult:
    """Restore the clipped runs of a signal.

    Args:
        wave: ``(C, N)`` or ``(N,)``, float or integer.
        sample_rate: its rate (restore at the file's own rate: resampling hides plateaus).
        levels: the clip levels (e.g. from ``ClipLevelMeter`` over a stream); by default
            ``estimate_clip_levels(wave)``.
    Returns:
        ``DeclipResult``; with no clipped side the wave is the input (as float).
    """
    x = np.asarray(wave)
    mono = x.ndim == 1
    x2 = x[None, :] if mono else x
    if levels is None:
        levels = estimate_clip_levels(x2, tolerance=settings.tolerance)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    out = x2.astype(out_dtype, copy=True)
    total = x2.shape[1]
    frame = settings.frame(sample_rate)
    hop = frame // 4
    region = settings.block_frames * hop
    runs, frames = [], 0
    if levels.any:
        for start in range(0, total, region):
            stop = min(start + region, total)
            lo, hi = max(start - frame, 0), min(stop + frame, total)
            restored, found, used = declip_region(
                x2[:, lo:hi], lo, start, stop, total, levels, sample_rate, settings)
            out[:, start:stop] = restored
            runs.append(found)
            frames += used
    result = out[0] if mono else out
    return DeclipResult(result, levels, Runs.concat(runs), frames)


def declip_region(
    window: np.ndarray,
    offset: int,
    start: int,
    stop: int,
    total: int,
    levels: ClipLevels,
    sample_rate: int,
    settings: DeclipSettings = DeclipSettings(),
) -> tuple[np.ndarray, Runs, int]:
    """Restore samples ``[start, stop)`` of a signal of ``total`` samples from a window.

    Args:
        window: ``(C, M)`` samples ``[offset, offset + M)`` of the signal; it must reach one
            frame past the region on each side, or the signal's end there.
        levels: the signal's clip levels.
    Returns:
        ``((C, stop - start) float64, runs restored in the region (global indices), frames
        restored)``.
    """
    frame = settings.frame(sample_rate)
    hop = frame // 4
    m = window.shape[1]
    if not (offset <= max(start - frame, 0) and min(stop + frame, total) <= offset + m):
        raise ValueError(f"window [{offset}, {offset + m}) must reach a frame ({frame}) past "
                         f"[{start}, {stop}) or the signal's ends (0, {total})")
    x = as_float_2d(window)
    positive, negative = clipped_masks(x, levels, tolerance=settings.tolerance,
                                       min_run=settings.min_run)
    a, b = start - offset, stop - offset
    out = x[:, a:b].copy()
    clipped = positive[:, a:b] | negative[:, a:b]
    runs = Runs.from_masks(clipped).shifted(start)
    used = 0
    for c in range(x.shape[0]):
        if not clipped[c].any():
            continue
        restored, count = _restore_channel(
            x[c], positive[c], negative[c], offset, start, stop, total,
            levels.positive[c], levels.negative[c], frame, hop, settings)
        row = out[c]
        row[clipped[c]] = restored[clipped[c]]
        if levels.positive[c] is not None:
            pick = positive[c, a:b]
            row[pick] = np.maximum(row[pick], levels.positive[c])
        if levels.negative[c] is not None:
            pick = negative[c, a:b]
            row[pick] = np.minimum(row[pick], -levels.negative[c])
        used += count
    return out, runs, used


def _restore_channel(
    x: np.ndarray, positive: np.ndarray, negative: np.ndarray, offset: int, start: int,
    stop: int, total: int, level_pos: float | None, level_neg: float | None, frame: int,
    hop: int, settings: DeclipSettings,
) -> tuple[np.ndarray, int]:
    """Overlap-add of the restored frames over ``[start, stop)`` of one channel ``(M,)``;
    only its clipped samples are meaningful. Returns it and the frames restored."""
    window, dual = analysis_window(frame)
    scale = 1.0 / max(v for v in (level_pos, level_neg) if v is not None)
    clipped = positive | negative
    # global frame starts j * hop covering [start, stop)
    first = (start - frame) // hop + 1
    last = (stop - 1) // hop
    starts = np.arange(first, last + 1) * hop
    counts = np.concatenate([[0], np.cumsum(clipped)])
    lo = np.clip(starts - offset, 0, x.size)
    hi = np.clip(starts + frame - offset, 0, x.size)
    starts = starts[counts[hi] - counts[lo] > 0]
    acc = np.zeros(stop - start)
    for i in range(0, starts.size, settings.batch_frames):
        chunk = starts[i:i + settings.batch_frames]
        observed, lower, upper = _frames(x, positive, negative, chunk - offset, frame, total,
                                         offset, level_pos, level_neg, window * scale)
        restored, _ = aspade(observed, lower, upper, redundancy=settings.redundancy,
                             step=settings.step, every=settings.every,
                             epsilon=settings.epsilon, max_iter=settings.max_iter)
        restored *= dual / scale  # window * dual sums to 1 over the covering frames
        for s, row in zip(chunk, restored, strict=True):
            a, b = max(s, start), min(s + frame, stop)
            acc[a - start:b - start] += row[a - s:b - s]
    return acc, int(starts.size)


def _frames(
    x: np.ndarray, positive: np.ndarray, negative: np.ndarray, starts: np.ndarray,
    frame: int, total: int, offset: int, level_pos: float | None, level_neg: float | None,
    window: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, frame)`` windowed observed samples and their consistent bounds (the clip
    levels windowed too) for frames starting at window indices ``starts`` (zeros, reliable,
    outside the signal)."""
    index = starts[:, None] + np.arange(frame)[None, :]
    inside = (index + offset >= 0) & (index + offset < total)
    safe = np.clip(index, 0, x.size - 1)
    observed = np.where(inside, x[safe], 0.0) * window
    lower = observed.copy()
    upper = observed.copy()
    gain = np.broadcast_to(window, observed.shape)
    if level_pos is not None:
        pos = inside & positive[safe]
        lower[pos] = level_pos * gain[pos]
        upper[pos] = np.inf
    if level_neg is not None:
        neg = inside & negative[safe]
        lower[neg] = -np.inf
        upper[neg] = -level_neg * gain[neg]
    return observed, lower, upper

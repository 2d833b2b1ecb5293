"""Where a recording was clipped: the clip level of each channel and sign, and the runs.

A hard-clipped signal sits on plateaus at its extremes: float files at the clip value itself,
integer files at the largest code (32767 and -32768 for 16-bit, asymmetric). The level is
taken from the data: the channel's largest positive value and its most negative value, each
kept only when enough samples sit at it in runs of ``min_run`` or more (a clean recording
reaches its extreme once, or in a lone pair by chance). Clipped samples are those within
``tolerance`` (relative) of the level, in runs of at least ``min_run``; a lone sample that
touches the level is left alone, as there is nothing to restore there.

The tolerance is 0 by default: hard clipping puts every clipped sample on the same value,
in float and integer files alike, and a gain applied afterwards keeps them equal. Any
tolerance also takes in the unclipped sample that happens to lie just under the level next
to a plateau (at 48 kHz, 1e-4 did so several times a second), and that sample would then be
changed. A positive tolerance is for plateaus that wobble (analogue or soft clipping).

Judge clipping at the file's own rate: resampling turns the plateaus into ringing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.repair.runs import Runs, find_runs, runs_mask

DEFAULT_TOLERANCE = 0.0  # relative; see the module docstring
DEFAULT_MIN_RUN = 2
DEFAULT_MIN_CLIPPED = 8  # samples on runs at the extreme before a level counts as clipping
TOP_KEPT = 64  # largest flat-run magnitudes kept per channel and sign while streaming
LEVEL_BLOCK = 1 << 20  # samples per block when measuring a whole array


@dataclass(frozen=True)
class ClipLevels:
    """Per channel: the positive clip level and the negative one (as a magnitude), ``None``
    where that side is not clipped."""

    positive: tuple[float | None, ...]
    negative: tuple[float | None, ...]

    @property
    def channels(self) -> int:
        return len(self.positive)

    @property
    def any(self) -> bool:
        """Whether any channel is clipped on either side."""
        return any(v is not None for v in self.positive + self.negative)


def as_float_2d(wave: np.ndarray) -> np.ndarray:
    """``(N,)`` or ``(C, N)`` of any real dtype -> ``(C, N)`` float64 (integers keep their
    units: a restored peak may lie beyond the integer range)."""
    wave = np.asarray(wave)
    if wave.ndim == 1:
        wave = wave[None, :]
    if wave.ndim != 2:
        raise ValueError(f"expected a (N,) or (C, N) signal, got shape {wave.shape}")
    if not np.issubdtype(wave.dtype, np.number) or np.iscomplexobj(wave):
        raise ValueError(f"expected a real signal, got dtype {wave.dtype}")
    return wave.astype(np.float64, copy=False)


class ClipLevelMeter:
    """Streaming clip levels of ``channels`` channels: ``update((C, n))`` blocks, then
    ``result()``. Keeps per channel and sign the extreme and the ``TOP_KEPT`` largest
    magnitudes of samples lying on flat pairs (same sign, within ``tolerance``), so the
    state is bounded whatever the length."""

    def __init__(self, channels: int, *, tolerance: float = DEFAULT_TOLERANCE,
                 min_clipped: int = DEFAULT_MIN_CLIPPED) -> None:
        if not 0 < min_clipped <= TOP_KEPT:
            raise ValueError(f"min_clipped must be in 1..{TOP_KEPT}, got {min_clipped}")
        self.channels = channels
        self.tolerance = tolerance
        self.min_clipped = min_clipped
        self._extreme = np.zeros((channels, 2))  # (C, sign): max x, max -x
        self._top = [[np.zeros(0), np.zeros(0)] for _ in range(channels)]
        self._last = np.full(channels, np.nan)  # previous block's last sample

    def update(self, block: np.ndarray) -> None:
        """Add a ``(C, n)`` (or ``(n,)`` mono) block."""
        block = as_float_2d(block)
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        if block.shape[1] == 0:
            return
        self._extreme[:, 0] = np.maximum(self._extreme[:, 0], block.max(axis=1))
        self._extreme[:, 1] = np.maximum(self._extreme[:, 1], -block.min(axis=1))
        x = np.concatenate([self._last[:, None], block], axis=1)
        self._last = block[:, -1].copy()
        with np.errstate(invalid="ignore"):
            magnitude = np.abs(x)
            pair = np.abs(np.diff(x, axis=1)) <= self.tolerance * np.maximum(
                magnitude[:, 1:], magnitude[:, :-1])
            pair &= x[:, 1:] * x[:, :-1] > 0
        flat = np.zeros(x.shape, dtype=bool)
        flat[:, 1:] |= pair
        flat[:, :-1] |= pair
        flat[:, 0] = False  # the carried sample was counted with its own block
        for c in range(self.channels):
            for sign, side in ((0, x[c] > 0), (1, x[c] < 0)):
                picked = magnitude[c][flat[c] & side]
                if picked.size:
                    self._keep_top(c, sign, picked)
        # a pair straddling blocks: the carried sample is in it too
        for c in range(self.channels):
            if pair[c, 0]:
                side = 0 if x[c, 0] > 0 else 1
                self._keep_top(c, side, np.abs(x[c, :1]))

    def _keep_top(self, channel: int, sign: int, values: np.ndarray) -> None:
        merged = np.concatenate([self._top[channel][sign], values])
        if merged.size > TOP_KEPT:
            merged = np.partition(merged, merged.size - TOP_KEPT)[-TOP_KEPT:]
        self._top[channel][sign] = merged

    def result(self) -> ClipLevels:
        """The clip levels found so far."""
        levels: list[list[float | None]] = [[], []]
        for c in range(self.channels):
            for sign in (0, 1):
                extreme = float(self._extreme[c, sign])
                near = self._top[c][sign] >= extreme * (1.0 - self.tolerance)
                clipped = extreme > 0 and int(near.sum()) >= self.min_clipped
                levels[sign].append(extreme if clipped else None)
        return ClipLevels(tuple(levels[0]), tuple(levels[1]))


def estimate_clip_levels(wave: np.ndarray, *, tolerance: float = DEFAULT_TOLERANCE,
                         min_clipped: int = DEFAULT_MIN_CLIPPED) -> ClipLevels:
    """``ClipLevelMeter`` over a whole ``(C, N)`` or ``(N,)`` signal (in blocks, so the
    float64 copies stay small)."""
    x = np.asarray(wave)
    x = x[None, :] if x.ndim == 1 else x
    meter = ClipLevelMeter(x.shape[0], tolerance=tolerance, min_clipped=min_clipped)
    for start in range(0, x.shape[-1], LEVEL_BLOCK):
        meter.update(x[:, start:start + LEVEL_BLOCK])
    return meter.result()


def clipped_masks(wave: np.ndarray, levels: ClipLevels, *,
                  tolerance: float = DEFAULT_TOLERANCE,
                  min_run: int = DEFAULT_MIN_RUN) -> tuple[np.ndarray, np.ndarray]:
    """Samples clipped at the positive and at the negative level.

    Args:
        wave: ``(C, N)``.
    Returns:
        ``(positive, negative)``, each ``(C, N)`` bool: samples within ``tolerance`` of that
        side's level, on runs of at least ``min_run``.
    """
    x = as_float_2d(wave)
    if levels.channels != x.shape[0]:
        raise ValueError(f"levels for {levels.channels} channels, signal has {x.shape[0]}")
    out = []
    for sign, side_levels in ((1.0, levels.positive), (-1.0, levels.negative)):
        mask = np.zeros(x.shape, dtype=bool)
        for c, level in enumerate(side_levels):
            if level is None:
                continue
            near = sign * x[c] >= level * (1.0 - tolerance)
            starts, stops = find_runs(near, min_run)
            mask[c] = runs_mask(starts, stops, x.shape[1])
        out.append(mask)
    return out[0], out[1]


def clipped_runs(positive: np.ndarray, negative: np.ndarray) -> Runs:
    """The runs of ``clipped_masks``' two masks together."""
    return Runs.from_masks(positive | negative)

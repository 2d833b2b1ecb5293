"""Clipping and digital silence: sample-domain runs, measured while streaming.

Clipping shows as plateaus: runs of at least ``min_run`` consecutive samples of (almost) the
same value at the channel's extreme. The extreme is only known at the end, so every sample
that lies on any flat run is added to a fine histogram of level (per sign, since clipping can
be asymmetric); at the end the runs at the channel's positive and negative extremes (or at
full scale) are counted. Measure it at the file's own rate: resampling turns a plateau into
ringing, and the runs are gone (docs/analysis.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.audio.io import SILENCE_THRESHOLD

CLIP_STEP_DB = 0.01
CLIP_LOWEST_DB = -60.0
CLIP_HIGHEST_DB = 12.0


@dataclass(frozen=True)
class ClipEstimate:
    clipped_fraction: float  # share of samples on flat runs at the extremes
    peak: float  # max |x|


class ClippingMeter:
    """Streaming clipped-run share of ``channels`` channels.

    Args:
        rel_tolerance: neighbours within this fraction of their magnitude count as flat.
        level_tolerance_db: plateaus this close to the extreme count as at it.
        full_scale: plateaus at or above this magnitude count too (clipping at +-1.0 in a
            file whose peak is higher elsewhere).
        min_peak_db: a channel whose extremes stay below this is not judged: at a few dozen
            quantisation steps, equal neighbours are common without any clipping.
    """

    def __init__(
        self, channels: int, *, min_run: int = 3, rel_tolerance: float = 1e-4,
        level_tolerance_db: float = 0.05, full_scale: float = 1.0, min_peak_db: float = -40.0,
    ) -> None:
        if min_run < 2:
            raise ValueError(f"min_run must be >= 2, got {min_run}")
        self.channels = channels
        self.min_run = min_run
        self.rel_tolerance = rel_tolerance
        self.level_tolerance_db = level_tolerance_db
        self.full_scale = full_scale
        self.min_peak = 10.0 ** (min_peak_db / 20.0)
        self._levels = int(round((CLIP_HIGHEST_DB - CLIP_LOWEST_DB) / CLIP_STEP_DB))
        self._hist = np.zeros((channels, 2, self._levels), dtype=np.int64)  # (C, sign, level)
        self._max = np.zeros((channels, 2))  # largest positive value, largest -negative
        # Samples kept back: ``min_run - 1`` already counted (context) + as many undecided.
        self._context = min_run - 1
        self._carry = np.full((channels, 2 * self._context), np.nan)
        self.samples = 0

    def update(self, block: np.ndarray) -> None:
        """Add ``(C, n)`` samples."""
        block = np.asarray(block, dtype=np.float64)
        if block.shape[1] == 0:
            return
        self.samples += block.shape[1]
        self._max[:, 0] = np.maximum(self._max[:, 0], block.max(axis=1))
        self._max[:, 1] = np.maximum(self._max[:, 1], -block.min(axis=1))
        self._carry = self._scan(np.concatenate([self._carry, block], axis=1), self._hist)

    def _scan(self, x: np.ndarray, hist: np.ndarray) -> np.ndarray:
        """Count the decided samples of ``x`` ``(C, m)`` (all but the first ``context``, which
        were counted before, and the last ``context``, whose right neighbours are not yet in);
        return the samples to carry."""
        k = self._context
        magnitude = np.abs(x)
        with np.errstate(invalid="ignore"):
            flat = np.abs(np.diff(x, axis=1)) <= self.rel_tolerance * np.maximum(
                magnitude[:, 1:], magnitude[:, :-1]
            )
            flat &= x[:, 1:] * x[:, :-1] > 0  # same sign, and not zero
        # A window of min_run samples is a plateau when its min_run - 1 links are all flat.
        windows = np.lib.stride_tricks.sliding_window_view(flat, k, axis=1).all(axis=2)
        member = np.zeros(x.shape, dtype=bool)
        for offset in range(k + 1):  # window w covers samples w .. w + k
            member[:, offset : offset + windows.shape[1]] |= windows
        decided = slice(k, x.shape[1] - k)
        values, members = x[:, decided], member[:, decided]
        for channel in range(self.channels):
            for sign, chosen in ((0, values[channel] > 0), (1, values[channel] < 0)):
                picked = np.abs(values[channel][members[channel] & chosen])
                if picked.size:
                    hist[channel, sign] += np.bincount(self._bin(picked), minlength=self._levels)
        return x[:, -2 * k :]

    def _bin(self, magnitude: np.ndarray) -> np.ndarray:
        level = 20.0 * np.log10(np.maximum(magnitude, 1e-30))
        index = np.floor((level - CLIP_LOWEST_DB) / CLIP_STEP_DB).astype(np.int64)
        return np.clip(index, 0, self._levels - 1)

    def result(self) -> list[ClipEstimate]:
        """One estimate per channel (the last samples are judged as if the signal ended)."""
        hist = self._hist.copy()
        pad = np.full((self.channels, self._context), np.nan)
        self._scan(np.concatenate([self._carry, pad], axis=1), hist)
        out = []
        for channel in range(self.channels):
            clipped = 0
            for sign in (0, 1):
                extreme = self._max[channel, sign]
                if extreme < self.min_peak:
                    continue
                lowest = 20.0 * np.log10(min(extreme, self.full_scale)) - self.level_tolerance_db
                start = max(int(np.floor((lowest - CLIP_LOWEST_DB) / CLIP_STEP_DB)), 0)
                clipped += int(hist[channel, sign, start:].sum())
            peak = float(self._max[channel].max())
            out.append(ClipEstimate(
                clipped_fraction=clipped / self.samples if self.samples else 0.0,
                peak=peak,
            ))
        return out


@dataclass(frozen=True)
class SilenceEstimate:
    silence_fraction: float  # share of samples in runs of digital silence
    silent: bool  # the whole channel is below the threshold


class SilenceMeter:
    """Streaming share of samples in runs of at least ``min_run`` samples with
    ``|x| < threshold``, per channel."""

    def __init__(self, channels: int, *, min_run: int, threshold: float = SILENCE_THRESHOLD
                 ) -> None:
        self.channels = channels
        self.min_run = max(int(min_run), 1)
        self.threshold = threshold
        self._run = np.zeros(channels, dtype=np.int64)  # current quiet run's length
        self._counted = np.zeros(channels, dtype=np.int64)
        self._loud = np.zeros(channels, dtype=bool)
        self.samples = 0

    def update(self, block: np.ndarray) -> None:
        """Add ``(C, n)`` samples."""
        if block.shape[1] == 0:
            return
        self.samples += block.shape[1]
        quiet = np.abs(block) < self.threshold
        self._loud |= ~quiet.all(axis=1)
        for channel in range(self.channels):
            q = quiet[channel]
            padded = np.concatenate([[False], q, [False]])
            starts = np.nonzero(padded[1:] & ~padded[:-1])[0]
            ends = np.nonzero(padded[:-1] & ~padded[1:])[0]  # exclusive
            lengths = ends - starts
            if lengths.size and starts[0] == 0:
                lengths[0] += self._run[channel]
            elif self._run[channel] >= self.min_run:
                self._counted[channel] += self._run[channel]
            if lengths.size and ends[-1] == q.size:
                self._run[channel] = lengths[-1]
                lengths = lengths[:-1]
            else:
                self._run[channel] = 0
            self._counted[channel] += int(lengths[lengths >= self.min_run].sum())

    def result(self) -> list[SilenceEstimate]:
        out = []
        for channel in range(self.channels):
            counted = self._counted[channel]
            if self._run[channel] >= self.min_run:
                counted += self._run[channel]
            out.append(SilenceEstimate(
                silence_fraction=float(counted / self.samples) if self.samples else 0.0,
                silent=not bool(self._loud[channel]),
            ))
        return out

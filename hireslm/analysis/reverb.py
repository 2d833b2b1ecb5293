"""Blind reverberation estimate from the free decays of sub-band envelopes.

After a speech sound stops, a band's level can fall no faster than the room lets it: dry
speech falls within tens of milliseconds, a room with RT60 0.6 s at 100 dB/s. Every run of
frames over which an octave band's level (250 Hz-4 kHz) keeps falling, frame after frame, for
at least ``min_frames`` frames (64 ms) and ``min_drop_db`` dB is a free decay; it is fitted
with a line and its slope turned into a decay time ``60 dB / slope``. The estimate is the
``percentile`` (default the median) of those times. Requiring an unbroken fall keeps out
sounds that merely get quieter while still sounding. It is an index rather than a measured
RT60: a decay mixes the direct sound's fall with the room's, so 0.5-0.6 s rooms read about
0.35 s and dry speech about 0.2 s (docs/analysis.md). Noise ends decays early and pulls the
reading down a little. Memory: a histogram of decay times plus one unfinished run per band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DECAY_BANDS_HZ: tuple[tuple[float, float], ...] = (
    (250.0, 500.0), (500.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0),
)
STEP_S = 0.01
MAX_DECAY_S = 5.0
# Below this a band is digital silence; its frames break a run instead of ending it in a plunge.
SILENT_BAND_POWER = 1e-20


@dataclass(frozen=True)
class DecayEstimate:
    rt60_s: float | None  # None: too few free decays to say
    decays: int  # free decays found (all bands)


class DecayMeter:
    """Streaming decay-time histogram of one channel.

    Args:
        freqs: ``(F,)`` bin frequencies of the frames fed to ``update``.
        frame_rate: frames per second.
    """

    def __init__(
        self, freqs: np.ndarray, frame_rate: float, *,
        bands: Sequence[tuple[float, float]] = DECAY_BANDS_HZ,
        min_frames: int = 6, min_drop_db: float = 8.0, percentile: float = 50.0,
        min_decays: int = 3, max_frames: int = 512,
    ) -> None:
        self.frame_rate = frame_rate
        self.min_frames = min_frames
        self.min_drop_db = min_drop_db
        self.percentile = percentile
        self.min_decays = min_decays
        self.max_frames = max_frames
        top = freqs[-1]
        self._bands = [
            (int(np.searchsorted(freqs, lo)), int(np.searchsorted(freqs, min(hi, top))))
            for lo, hi in bands if lo < top
        ]
        self._tails = [np.zeros(0) for _ in self._bands]
        self.histogram = np.zeros(int(round(MAX_DECAY_S / STEP_S)), dtype=np.int64)

    def update(self, power: np.ndarray) -> None:
        """Add frames: ``power`` ``(T, F)``."""
        if power.shape[0] == 0:
            return
        for index, (lo, hi) in enumerate(self._bands):
            band = power[:, lo:hi].sum(axis=1)
            with np.errstate(divide="ignore"):
                level = np.where(band > SILENT_BAND_POWER, 10.0 * np.log10(band), np.nan)
            levels = np.concatenate([self._tails[index], level])
            self._tails[index] = self._scan(levels, self.histogram)

    def _scan(self, levels: np.ndarray, histogram: np.ndarray, final: bool = False
              ) -> np.ndarray:
        """Record the finished falling runs in ``levels`` ``(T,)``; return the unfinished tail."""
        if levels.size < 2:
            return levels
        falling = levels[1:] < levels[:-1]  # NaN compares False: silence breaks a run
        padded = np.concatenate([[False], falling, [False]])
        starts = np.nonzero(padded[1:] & ~padded[:-1])[0]
        ends = np.nonzero(padded[:-1] & ~padded[1:])[0]  # run covers frames start..end
        tail = levels[-1:]
        if not final and falling[-1]:
            start = starts[-1]
            starts, ends = starts[:-1], ends[:-1]
            if levels.size - start <= self.max_frames:
                tail = levels[start:]
            else:  # a run too long to carry: close it here
                starts, ends = np.append(starts, start), np.append(ends, levels.size - 1)
        for start, end in zip(starts, ends, strict=True):
            self._record(levels[start : end + 1], histogram)
        return tail

    def _record(self, run: np.ndarray, histogram: np.ndarray) -> None:
        if run.size < self.min_frames or run[0] - run[-1] < self.min_drop_db:
            return
        t = np.arange(run.size) / self.frame_rate
        slope = np.polyfit(t, run, 1)[0]  # dB/s, negative
        if slope >= 0:
            return
        decay = 60.0 / -slope
        histogram[min(int(decay / STEP_S), histogram.size - 1)] += 1

    def result(self) -> DecayEstimate:
        """The estimate so far (runs still falling at the end count as finished)."""
        histogram = self.histogram.copy()
        for tail in self._tails:
            self._scan(tail, histogram, final=True)
        total = int(histogram.sum())
        if total < self.min_decays:
            return DecayEstimate(rt60_s=None, decays=total)
        rank = int(np.searchsorted(np.cumsum(histogram), total * self.percentile / 100.0))
        return DecayEstimate(rt60_s=(rank + 0.5) * STEP_S, decays=total)

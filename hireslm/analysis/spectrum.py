"""Long-term spectrum of the active frames, built while streaming: bandwidth, edge, holes.

"Active" means within ``active_db`` of the loudest frame, which is only known at the end. So
each frame's power spectrum is added to a bin of frame level (``level_step_db`` wide); at the
end the bins within ``active_db`` of the top one are summed. Memory: one spectrum per level
bin that occurs (at most ~200), whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Frames quieter than this (about -120 dBFS) are digital silence: no spectrum to speak of.
SILENT_FRAME_POWER = 1e-12
# Codec holes are counted per group of this many adjacent bins (~190 Hz at 48 kHz).
HOLE_GROUP_BINS = 8
# A bin group this far below its frame's total power is a hole: a band a codec zeroed.
HOLE_DEPTH_DB = 80.0


@dataclass(frozen=True)
class LongTermSpectrum:
    """The active frames' mean spectrum and what sits with it.

    ``power``: ``(F,)`` mean power per bin (mean-square units); ``hole_fraction``: ``(G,)``
    share of active frames in which each bin group was a hole; ``group_freqs``: ``(G,)``
    centre frequencies (Hz) of those groups.
    """

    freqs: np.ndarray
    power: np.ndarray
    hole_fraction: np.ndarray
    group_freqs: np.ndarray
    active_frames: int

    @property
    def level_db(self) -> np.ndarray:
        """``(F,)`` the spectrum in dB (power 0 reads -300 dB)."""
        return 10.0 * np.log10(self.power + 1e-30)


class SpectrumMeter:
    """Streaming long-term spectrum of one channel's active frames."""

    def __init__(
        self, sample_rate: int, n_fft: int, *, active_db: float = 30.0,
        level_step_db: float = 1.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.active_db = active_db
        self.level_step_db = level_step_db
        self.freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        self._groups = (n_fft // 2 + 1) // HOLE_GROUP_BINS
        self._hole_ratio = 10.0 ** (-HOLE_DEPTH_DB / 10.0)
        # level bin -> [frame count, summed power (F,), hole counts (G,)]
        self._bins: dict[int, list] = {}

    def update(self, power: np.ndarray, energy: np.ndarray) -> None:
        """Add frames: ``power`` ``(T, F)``, ``energy`` ``(T,)`` their mean squares."""
        keep = energy > SILENT_FRAME_POWER
        if not keep.any():
            return
        power, energy = power[keep], energy[keep]
        levels = np.floor(10.0 * np.log10(energy) / self.level_step_db).astype(np.int64)
        grouped = power[:, : self._groups * HOLE_GROUP_BINS]
        grouped = grouped.reshape(len(power), self._groups, HOLE_GROUP_BINS).sum(axis=2)
        holes = grouped < energy[:, None] * self._hole_ratio
        for level in np.unique(levels):
            rows = levels == level
            entry = self._bins.setdefault(
                int(level), [0, np.zeros(power.shape[1]), np.zeros(self._groups)]
            )
            entry[0] += int(rows.sum())
            entry[1] += power[rows].sum(axis=0)
            entry[2] += holes[rows].sum(axis=0)

    def result(self) -> LongTermSpectrum | None:
        """The active frames' spectrum; ``None`` when no frame was above digital silence."""
        if not self._bins:
            return None
        top = max(self._bins)
        lowest = top - int(round(self.active_db / self.level_step_db))
        count, power, holes = 0, np.zeros(self.freqs.size), np.zeros(self._groups)
        for level, (n, summed, hole_counts) in self._bins.items():
            if level >= lowest:
                count += n
                power += summed
                holes += hole_counts
        group_freqs = self.freqs[: self._groups * HOLE_GROUP_BINS]
        group_freqs = group_freqs.reshape(self._groups, HOLE_GROUP_BINS).mean(axis=1)
        return LongTermSpectrum(self.freqs, power / count, holes / count, group_freqs, count)

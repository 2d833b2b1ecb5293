"""Noise floor and SNR from the distribution of frame levels.

What it measures: the noise floor is a low percentile (default the 1st) of the levels of all
43 ms frames that are not digital silence; the SNR is ``10 log10((P - N) / N)`` with ``P`` the
mean power of those frames and ``N`` the floor, the same power ratio
``hireslm.data.degradations.noise`` mixes at (speech power over the whole clip, pauses
included). For stationary noise (hiss, hum, fans, rain) the quietest frames are noise alone:
white noise reads within about 1 dB from 0 to 20 dB SNR, pink 1-2 dB high, and 30 dB reads
2-5 dB low, where the quietest frames of a short clip still hold speech. Noise that comes and
goes (animals, tools, music, babble) is read in its gaps: the floor reads low and the SNR
high. A reverberant room's tail fills the pauses and reads as noise. A clip with no pause at
all reads its quietest speech. DC is left out of the frame levels by the caller.
Memory: one histogram of 0.5 dB bins, whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.analysis.spectrum import SILENT_FRAME_POWER

STEP_DB = 0.5
LOWEST_DB = -200.0
HIGHEST_DB = 20.0


@dataclass(frozen=True)
class NoiseEstimate:
    """Levels in dB re full scale (mean square: a full-scale sine reads -3 dB)."""

    noise_floor_db: float
    speech_level_db: float  # ``speech_percentile`` of the frame levels
    mean_level_db: float  # mean power of the frames that are not digital silence
    snr_db: float


def histogram_percentile(counts: np.ndarray, percentile: float) -> float:
    """Level (dB, bin centre) below which ``percentile`` % of the counted frames lie."""
    total = counts.sum()
    if total == 0:
        return float("-inf")
    index = int(np.searchsorted(np.cumsum(counts), total * percentile / 100.0))
    return LOWEST_DB + (min(index, counts.size - 1) + 0.5) * STEP_DB


class LevelMeter:
    """Streaming histogram of one channel's frame levels."""

    def __init__(self, *, noise_percentile: float = 1.0, speech_percentile: float = 95.0
                 ) -> None:
        self.noise_percentile = noise_percentile
        self.speech_percentile = speech_percentile
        self._levels = int(round((HIGHEST_DB - LOWEST_DB) / STEP_DB))
        self.histogram = np.zeros(self._levels, dtype=np.int64)
        self._power_sum = 0.0
        self._count = 0

    def update(self, energy: np.ndarray) -> None:
        """Add frames: ``energy`` ``(T,)``, their mean squares."""
        energy = energy[energy > SILENT_FRAME_POWER]
        if energy.size == 0:
            return
        level = 10.0 * np.log10(energy)
        index = np.clip(np.floor((level - LOWEST_DB) / STEP_DB).astype(np.int64),
                        0, self._levels - 1)
        self.histogram += np.bincount(index, minlength=self._levels)
        self._power_sum += float(energy.sum())
        self._count += int(energy.size)

    def result(self) -> NoiseEstimate | None:
        """``None`` when every frame was digital silence."""
        if self._count == 0:
            return None
        floor = histogram_percentile(self.histogram, self.noise_percentile)
        noise = 10.0 ** (floor / 10.0)
        mean = self._power_sum / self._count
        return NoiseEstimate(
            noise_floor_db=floor,
            speech_level_db=histogram_percentile(self.histogram, self.speech_percentile),
            mean_level_db=10.0 * np.log10(mean),
            snr_db=10.0 * np.log10(max(mean - noise, mean * 1e-6) / noise),
        )

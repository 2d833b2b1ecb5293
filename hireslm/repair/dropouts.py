"""Dropout repair of a whole signal: find the gaps, fill them by Janssen's AR interpolation.

``fill_dropouts`` finds short gaps in running speech (``dropout_detect``) and fills each
from both neighbours (``ar_fill``); every sample outside the gaps is the input's own, bit
for bit. The work is done in regions of ``region_seconds``, each from a window reaching
``radius(sample_rate)`` past it, so memory is bounded and a stream cut into blocks
(``hireslm.repair.stream``) gets the same output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hireslm.repair.ar_fill import fill_gaps_1d
from hireslm.repair.clip_detect import as_float_2d
from hireslm.repair.dropout_detect import DropoutSettings, detect_dropouts_1d
from hireslm.repair.runs import Runs

REFERENCE_RATE = 48000


@dataclass(frozen=True)
class FillSettings:
    """Janssen interpolation: AR ``order_48k`` and ``context_48k`` samples on each side at
    48 kHz (other rates keep the durations: 10.7 ms and 64 ms), ``iterations`` rounds."""

    order_48k: int = 512
    context_48k: int = 3072
    iterations: int = 5

    def order(self, sample_rate: int) -> int:
        return max(int(round(self.order_48k * sample_rate / REFERENCE_RATE)), 2)

    def context(self, sample_rate: int) -> int:
        return max(int(round(self.context_48k * sample_rate / REFERENCE_RATE)),
                   2 * self.order(sample_rate))


@dataclass(frozen=True)
class DropoutRepairSettings:
    """Detection and fill settings, and the region size that bounds the memory."""

    detect: DropoutSettings = field(default_factory=DropoutSettings)
    fill: FillSettings = field(default_factory=FillSettings)
    region_seconds: float = 10.0

    def radius(self, sample_rate: int) -> int:
        """Samples past a region that its result depends on."""
        longest = self.detect.samples(self.detect.max_ms, sample_rate)
        return self.detect.context(sample_rate) + self.fill.context(sample_rate) + longest


@dataclass(frozen=True)
class DropoutResult:
    """``wave``: repaired, shaped like the input (float; float64 for integer input).
    ``runs``: the gaps that were filled."""

    wave: np.ndarray
    runs: Runs


def fill_dropouts(
    wave: np.ndarray, sample_rate: int, *,
    settings: DropoutRepairSettings = DropoutRepairSettings(),
) -> DropoutResult:
    """Find and fill the dropouts of ``(C, N)`` or ``(N,)`` audio at ``sample_rate``."""
    x = np.asarray(wave)
    mono = x.ndim == 1
    x2 = x[None, :] if mono else x
    out = x2.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
    total = x2.shape[1]
    region = max(int(settings.region_seconds * sample_rate), 1)
    radius = settings.radius(sample_rate)
    runs = []
    for start in range(0, total, region):
        stop = min(start + region, total)
        lo, hi = max(start - radius, 0), min(stop + radius, total)
        repaired, found = fill_region(x2[:, lo:hi], lo, start, stop, sample_rate, settings)
        out[:, start:stop] = repaired
        runs.append(found)
    return DropoutResult(out[0] if mono else out, Runs.concat(runs))


def fill_region(
    window: np.ndarray, offset: int, start: int, stop: int, sample_rate: int,
    settings: DropoutRepairSettings = DropoutRepairSettings(),
) -> tuple[np.ndarray, Runs]:
    """Repair samples ``[start, stop)`` from a window ``(C, M)`` holding samples
    ``[offset, offset + M)``, which reaches ``settings.radius`` past the region on each
    side (or the signal's end there).

    Returns:
        ``((C, stop - start) float64, the gaps that overlap the region (global indices))``.
    """
    x = as_float_2d(window)
    a, b = start - offset, stop - offset
    out = x[:, a:b].copy()
    order = settings.fill.order(sample_rate)
    context = settings.fill.context(sample_rate)
    parts = []
    for c, row in enumerate(x):
        # Gaps near the window's ends may be misjudged there, but the radius keeps them out
        # of reach: a gap is filled from its own context, and the window holds the context
        # and everything its detection looked at for every gap that reaches the region.
        starts, stops = detect_dropouts_1d(row, sample_rate, settings.detect)
        mine = (stops > a) & (starts < b)
        if mine.any():
            filled = fill_gaps_1d(row, starts, stops, order=order, context=context,
                                  iterations=settings.fill.iterations, only=mine)
            out[c] = filled[a:b]
        parts.append(Runs(np.full(int(mine.sum()), c, dtype=np.int64),
                          starts[mine] + offset, stops[mine] + offset))
    return out, Runs.concat(parts)

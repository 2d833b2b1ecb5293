"""Where a recording dropped out: short runs of (near) silence inside speech.

Packet loss without concealment leaves digital zeros; tape damage and bad edits leave a
sudden, deep dip. Both are short (a few ms to a few tens of ms) and cut into running speech,
so a dropout is a maximal run of samples that are all far below the local speech level
(``depth_db`` under the RMS of the surrounding ``level_ms``), no shorter than ``min_ms`` and
no longer than ``max_ms``, with speech right at both edges: the ``side_ms`` just before and
just after it must each be within ``side_db`` of the local level, and the run's peak must
lie ``edge_db`` under the RMS of each side (a step down and back up, not a lull). A real
pause fails at least one test: it is longer, or the speech fades into it (the sides are
quiet), or it lies in room noise at the level of the pause itself (on 51 min of KLettres'
syllables, quiet stretches of Vorbis-coded near-silence passed every test but the last).
Every test looks at most ``context(sample_rate)`` samples away, so a stream cut into blocks
finds the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.repair.runs import Runs, find_runs


@dataclass(frozen=True)
class DropoutSettings:
    """What counts as a dropout (see the module docstring)."""

    min_ms: float = 1.5
    max_ms: float = 40.0
    depth_db: float = 40.0
    side_ms: float = 4.0
    side_db: float = 30.0
    edge_db: float = 20.0
    level_ms: float = 500.0

    def samples(self, ms: float, sample_rate: int) -> int:
        return max(int(round(ms * sample_rate / 1000.0)), 1)

    def context(self, sample_rate: int) -> int:
        """How far from a run its detection looks (samples)."""
        return self.samples(self.max_ms + self.side_ms + self.level_ms / 2, sample_rate) + 1


def local_rms(x: np.ndarray, width: int) -> np.ndarray:
    """RMS of ``x`` ``(N,)`` over a centred window of ``width`` samples (shorter at the
    ends, where only the samples inside count). Returns ``(N,)`` float64."""
    x = np.asarray(x, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(x * x)])
    n = x.size
    half = width // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + (width - half), 0, n)
    return np.sqrt(np.maximum(cum[hi] - cum[lo], 0.0) / np.maximum(hi - lo, 1))


def detect_dropouts_1d(
    x: np.ndarray, sample_rate: int, settings: DropoutSettings = DropoutSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """Dropouts of one channel.

    Args:
        x: ``(N,)``.
    Returns:
        ``(starts, stops)`` ``(R,)`` int64 each, ``stops`` exclusive.
    """
    x = np.asarray(x, dtype=np.float64)
    s = settings
    level = local_rms(x, s.samples(s.level_ms, sample_rate))
    quiet = np.abs(x) <= level * 10.0 ** (-s.depth_db / 20.0)
    starts, stops = find_runs(quiet, s.samples(s.min_ms, sample_rate))
    keep = stops - starts <= s.samples(s.max_ms, sample_rate)
    starts, stops = starts[keep], stops[keep]
    side = s.samples(s.side_ms, sample_rate)
    inside = (starts >= side) & (stops + side <= x.size)
    starts, stops = starts[inside], stops[inside]
    if starts.size == 0:
        return starts, stops
    cum = np.concatenate([[0.0], np.cumsum(x * x)])
    left = np.sqrt((cum[starts] - cum[starts - side]) / side)
    right = np.sqrt((cum[stops + side] - cum[stops]) / side)
    centre = level[(starts + stops) // 2]
    floor = centre * 10.0 ** (-s.side_db / 20.0)
    bounds = np.column_stack([starts, stops]).ravel()  # stops < N: the sides fit after
    peak = np.maximum.reduceat(np.abs(x), bounds)[::2]
    step = np.minimum(left, right) * 10.0 ** (-s.edge_db / 20.0)
    speech = (left >= floor) & (right >= floor) & (centre > 0) & (peak <= step)
    return starts[speech], stops[speech]


def detect_dropouts(
    wave: np.ndarray, sample_rate: int, settings: DropoutSettings = DropoutSettings()
) -> Runs:
    """``detect_dropouts_1d`` on every channel of ``(C, N)`` (or ``(N,)``)."""
    x = np.asarray(wave)
    x = x[None, :] if x.ndim == 1 else x
    parts = []
    for c, row in enumerate(x):
        starts, stops = detect_dropouts_1d(row, sample_rate, settings)
        parts.append(Runs(np.full(starts.size, c, dtype=np.int64), starts, stops))
    return Runs.concat(parts)

"""Runs of damaged samples: where a repair acted, kept as arrays for a report.

A run is ``[start, stop)`` in samples on one channel. Heavily clipped hour-long files hold
millions of runs, so they live in three int64 arrays rather than one object per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def find_runs(mask: np.ndarray, min_length: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Maximal runs of True in ``mask``.

    Args:
        mask: ``(N,)`` bool.
        min_length: shorter runs are left out.
    Returns:
        ``(starts, stops)``, each ``(R,)`` int64, ``stops`` exclusive, in order.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, stops = edges[0::2], edges[1::2]
    keep = stops - starts >= min_length
    return starts[keep].astype(np.int64), stops[keep].astype(np.int64)


def runs_mask(starts: np.ndarray, stops: np.ndarray, length: int) -> np.ndarray:
    """``(length,)`` bool, True inside every ``[start, stop)`` (clipped to ``[0, length)``)."""
    delta = np.zeros(length + 1, dtype=np.int64)
    np.add.at(delta, np.clip(starts, 0, length), 1)
    np.add.at(delta, np.clip(stops, 0, length), -1)
    return np.cumsum(delta[:-1]) > 0


@dataclass(frozen=True)
class Runs:
    """Runs on a ``(C, N)`` signal: ``channel``, ``start``, ``stop`` are ``(R,)`` int64,
    sorted by channel then start, ``stop`` exclusive."""

    channel: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stop: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def from_masks(cls, masks: np.ndarray, min_length: int = 1) -> Runs:
        """The runs of a ``(C, N)`` bool mask."""
        parts = []
        for c, row in enumerate(np.asarray(masks, dtype=bool)):
            starts, stops = find_runs(row, min_length)
            parts.append((np.full(starts.size, c, dtype=np.int64), starts, stops))
        return cls.concat([cls(*p) for p in parts])

    @classmethod
    def concat(cls, parts: Sequence[Runs]) -> Runs:
        """All runs of ``parts`` by channel then start; runs of a channel that overlap or
        touch become one (a run cut by a region border, or found by two regions)."""
        if not parts:
            return cls()
        channel = np.concatenate([p.channel for p in parts])
        start = np.concatenate([p.start for p in parts])
        stop = np.concatenate([p.stop for p in parts])
        order = np.lexsort((start, channel))
        channel, start, stop = channel[order], start[order], stop[order]
        if start.size < 2:
            return cls(channel, start, stop)
        out_c, out_a, out_b = [], [], []
        for c in np.unique(channel):
            pick = np.flatnonzero(channel == c)
            reach = np.maximum.accumulate(stop[pick])  # furthest stop so far
            heads = np.flatnonzero(np.concatenate([[True], start[pick][1:] > reach[:-1]]))
            tails = np.concatenate([heads[1:], [pick.size]]) - 1
            out_c.append(channel[pick][heads])
            out_a.append(start[pick][heads])
            out_b.append(reach[tails])
        return cls(np.concatenate(out_c), np.concatenate(out_a), np.concatenate(out_b))

    def shifted(self, offset: int) -> Runs:
        """The same runs ``offset`` samples later."""
        return Runs(self.channel, self.start + offset, self.stop + offset)

    def __len__(self) -> int:
        return int(self.start.size)

    @property
    def samples(self) -> int:
        """Samples inside the runs, all channels."""
        return int(np.sum(self.stop - self.start))

    def mask(self, channels: int, length: int) -> np.ndarray:
        """``(channels, length)`` bool, True inside the runs."""
        out = np.zeros((channels, length), dtype=bool)
        for c in range(channels):
            pick = self.channel == c
            out[c] = runs_mask(self.start[pick], self.stop[pick], length)
        return out

    def summary(self, sample_rate: int) -> dict[str, float | int]:
        """JSON-ready totals for a report: run count, samples, seconds, longest run in ms."""
        longest = int(np.max(self.stop - self.start)) if len(self) else 0
        return {
            "runs": len(self),
            "samples": self.samples,
            "seconds": self.samples / sample_rate,
            "longest_ms": 1000.0 * longest / sample_rate,
        }

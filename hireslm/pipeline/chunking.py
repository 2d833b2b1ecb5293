"""Fixed-size overlapping chunks and their crossfaded overlap-add, streaming.

Chunk ``k`` covers samples ``[k * step, k * step + size)`` with ``step = size - overlap``.
Neighbouring chunks crossfade over ``overlap`` samples with complementary raised-cosine
ramps (``sin^2`` in, ``cos^2`` out) that sum to exactly one, so a chunk boundary adds no
gain change. With a ``quantum`` the last chunk is only as long as what is left of the signal,
rounded up to a multiple of it, instead of a full ``size``: a 9 s file in 8 s chunks costs
9.5 s of model time, not 16.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkPlan:
    """How a signal of ``total`` samples is cut into chunks of ``size`` with ``overlap``.

    ``quantum``: if given, the last chunk is ``chunk_size(last)`` long, what is left of the
    signal rounded up to a multiple of ``quantum`` (the model's frame); else ``size``.
    """

    total: int
    size: int
    overlap: int
    quantum: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"need 0 <= overlap < size, got {self.overlap}, {self.size}")
        if self.total < 0:
            raise ValueError("total must be non-negative")
        if self.quantum is not None and (self.quantum < 1 or self.size % self.quantum):
            raise ValueError(f"quantum must divide size, got {self.quantum}, {self.size}")

    @classmethod
    def for_stream(cls, total: int, *, chunk_seconds: float, overlap_seconds: float,
                   frame: int, sample_rate: int) -> ChunkPlan:
        """The plan for a stream of ``total`` samples at ``sample_rate``, in chunks of about
        ``chunk_seconds`` made of whole model frames of ``frame`` samples (so chunk borders
        fall on frame borders), crossfaded over ``overlap_seconds``.

        A stream shorter than one chunk is one chunk of its own length (padding a 1 s clip
        to 8 s made short clips cost 8x), and the last chunk is only as long as what is left.
        """
        size = max(1, round(chunk_seconds * sample_rate / frame)) * frame
        size = min(size, max(1, math.ceil(total / frame)) * frame)
        overlap = min(round(overlap_seconds * sample_rate), size - 1)
        return cls(total=total, size=size, overlap=overlap, quantum=frame)

    @property
    def step(self) -> int:
        return self.size - self.overlap

    @property
    def num_chunks(self) -> int:
        if self.total <= self.size:
            return 1 if self.total > 0 else 0
        return 1 + math.ceil((self.total - self.size) / self.step)

    def start(self, index: int) -> int:
        return index * self.step

    def chunk_size(self, index: int) -> int:
        """Samples in chunk ``index``: ``size``, but see ``quantum`` for the last one."""
        if self.quantum is None or index < self.num_chunks - 1:
            return self.size
        left = self.total - self.start(index)
        return min(self.size, -(-left // self.quantum) * self.quantum)


def iter_chunks(
    blocks: Iterable[np.ndarray], plan: ChunkPlan, pad_mode: str = "constant"
) -> Iterator[np.ndarray]:
    """Cut a stream of ``(C, n)`` blocks into ``plan.num_chunks`` chunks ``(C, size)`` (the
    last ``(C, plan.chunk_size(last))``).

    The last chunk is padded to its size with ``np.pad``'s ``pad_mode``: zeros by default;
    ``"reflect"`` avoids a step where the signal ends, which a band split would smear back
    into the signal. Holds at most one chunk plus one block.
    """
    buffer: np.ndarray | None = None
    emitted = 0
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block], axis=1)
        while emitted < plan.num_chunks - 1 and buffer.shape[1] >= plan.size:
            yield buffer[:, : plan.size]
            buffer = buffer[:, plan.step :]
            emitted += 1
    if emitted < plan.num_chunks:
        if buffer is None:
            raise ValueError("no audio blocks to chunk")
        size = plan.chunk_size(plan.num_chunks - 1)
        last = buffer[:, :size]
        pad = ((0, 0), (0, size - last.shape[1]))
        yield np.pad(last, pad, mode=pad_mode if last.shape[1] > 1 else "constant")


class OverlapAdd:
    """Reassemble restored chunks, in order, into a stream of finished ``(C, n)`` blocks.

    ``add`` returns the samples that no later chunk can change any more, so memory holds one
    chunk whatever the signal's length; the blocks returned add up to exactly ``plan.total``.
    """

    def __init__(self, plan: ChunkPlan, channels: int) -> None:
        self.plan = plan
        self.channels = channels
        self._next_index = 0
        self._buffer = np.zeros((channels, plan.size), dtype=np.float32)
        self._buffer_start = 0  # absolute position of _buffer[:, 0]
        ramp = np.sin(0.5 * np.pi * (np.arange(plan.overlap) + 0.5) / max(plan.overlap, 1)) ** 2
        self._fade_in = ramp.astype(np.float32)
        self._fade_out = (1.0 - ramp).astype(np.float32)

    def add(self, chunk: np.ndarray) -> np.ndarray:
        """Add the next chunk ``(C, plan.chunk_size(index))``; return the finished samples
        ``(C, n)``."""
        plan, index = self.plan, self._next_index
        if index >= plan.num_chunks:
            raise ValueError("more chunks than the plan holds")
        size = plan.chunk_size(index)
        if chunk.shape != (self.channels, size):
            raise ValueError(f"chunk shape {chunk.shape} != {(self.channels, size)}")
        weighted = chunk.astype(np.float32, copy=True)
        if index > 0 and plan.overlap:
            weighted[:, : plan.overlap] *= self._fade_in
        is_last = index == plan.num_chunks - 1
        if not is_last and plan.overlap:
            weighted[:, size - plan.overlap :] *= self._fade_out
        offset = plan.start(index) - self._buffer_start
        self._buffer[:, offset : offset + size] += weighted
        self._next_index += 1
        final_until = plan.total if is_last else plan.start(index + 1)
        done = final_until - self._buffer_start
        finished = self._buffer[:, :done].copy()
        # Keep the overlap tail, with room for the next chunk.
        tail = self._buffer[:, done : offset + size]
        self._buffer = np.zeros((self.channels, plan.size), dtype=np.float32)
        self._buffer[:, : tail.shape[1]] = tail
        self._buffer_start = final_until
        return finished

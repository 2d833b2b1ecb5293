"""A stream of ``(C, n)`` float32 blocks kept for a second read, in bounded memory.

Recovery runs before the generative stages can start (the cutoff they use is measured on the
recovered signal), so its output is kept: in memory up to ``max_bytes`` (about 6 minutes of
mono 48 kHz audio at the default), then in a temporary file the system deletes with it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np


class BlockSpool:
    """Write ``(C, n)`` blocks, then read them back as blocks of at most ``block_frames``."""

    def __init__(self, channels: int, max_bytes: int = 64 << 20) -> None:
        self.channels = channels
        self.frames = 0
        self._file = tempfile.SpooledTemporaryFile(max_size=max_bytes, prefix="hireslm-")

    def write(self, block: np.ndarray) -> None:
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        self._file.write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())
        self.frames += block.shape[1]

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Everything written, from the start; the spool is closed once read to the end."""
        self._file.seek(0)
        frame_bytes = 4 * self.channels
        try:
            while True:
                data = self._file.read(block_frames * frame_bytes)
                if not data:
                    return
                yield np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels).T.copy()
        finally:
            self._file.close()

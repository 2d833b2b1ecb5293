"""Streams of ``(C, n)`` blocks at 48 kHz: resampling with an exact total length.

Every reading of an input (the first pass that measures it, the pass that restores it)
goes through ``stream_resampled``, so both see the same samples and a file of hours costs
memory of one block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import soxr

# Seconds of input decoded per block, at the input's own rate.
BLOCK_SECONDS = 10.0


def output_length(frames: int, sr_in: int, sr_out: int) -> int:
    """Samples at ``sr_out`` that span exactly the input's duration."""
    return int(round(frames * sr_out / sr_in))


def stream_resampled(
    blocks: Iterable[np.ndarray], sr_in: int, sr_out: int, channels: int, total_out: int
) -> Iterator[np.ndarray]:
    """Resample a stream of ``(C, n)`` blocks; the output adds up to exactly ``total_out``."""
    resampler = None if sr_in == sr_out else soxr.ResampleStream(
        sr_in, sr_out, channels, dtype="float32", quality="VHQ"
    )
    produced = 0
    pending = None
    for block in blocks:
        if pending is not None:
            produced += yield from _emit(pending, resampler, False, total_out - produced)
        pending = block
    if pending is not None:
        produced += yield from _emit(pending, resampler, True, total_out - produced)
    if produced < total_out:  # the resampler's flush can fall a sample short
        yield np.zeros((channels, total_out - produced), dtype=np.float32)


def _emit(block: np.ndarray, resampler, last: bool, room: int):
    out = block if resampler is None else resampler.resample_chunk(
        np.ascontiguousarray(block.T), last=last
    ).T
    out = np.ascontiguousarray(out[:, :room], dtype=np.float32)
    if out.shape[1]:
        yield out
    return out.shape[1]

"""What a restoration reads from: a file, or audio a caller holds in memory.

``as_source`` turns whatever a user has (a path, a NumPy array of any float or integer
dtype, a torch tensor; mono ``(N,)`` or ``(C, N)``) into an ``AudioSource``: its header
facts and a way to stream its samples, at its own rate, as ``(C, n)`` float32 blocks. The
pipeline reads every source the same way, so an array and the same audio in a file take
one path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hireslm.audio.io import audio_info, header_shortfall, iter_audio_blocks, stream_note
from hireslm.audio.stream import BLOCK_SECONDS, output_length, stream_resampled


@dataclass(frozen=True)
class SourceInfo:
    """A source's header facts; ``subtype`` is the file's sample format (None in memory)."""

    sample_rate: int
    channels: int
    frames: int
    subtype: str | None = None


class AudioSource(Protocol):
    """Something a restoration reads: ``name`` for messages, ``info``, and its samples."""

    name: str

    @property
    def info(self) -> SourceInfo: ...

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """The samples at the source's own rate, ``(C, n)`` float32 blocks of at most
        ``block_frames`` frames; may be called again to read from the start."""
        ...

    def warnings(self) -> tuple[str, ...]:
        """What the user should know about the source itself (a truncated file)."""
        ...


class FileSource:
    """An audio file, read in blocks (libsndfile, or FFmpeg through PyAV); ``stream`` picks
    one audio stream of a file that has several (0-based; None: ``audio_info``'s choice)."""

    def __init__(self, path: str | os.PathLike, stream: int | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.stream = stream
        self._header = None

    @property
    def header(self):
        """The file's ``audio_info`` (read once: for FFmpeg-read files it decodes the stream)."""
        if self._header is None:
            self._header = audio_info(self.path, stream=self.stream)
        return self._header

    @property
    def info(self) -> SourceInfo:
        header = self.header
        return SourceInfo(int(header.samplerate), int(header.channels), int(header.frames),
                          header.subtype)

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        return iter_audio_blocks(self.path, block_frames, stream=self.stream)

    def warnings(self) -> tuple[str, ...]:
        notes = (header_shortfall(self.header), stream_note(self.header))
        return tuple(note for note in notes if note is not None)


class ArraySource:
    """Audio held in memory: ``(N,)`` or ``(C, N)`` samples at ``sample_rate``.

    Integer samples are scaled to [-1, 1) by their type's range; floats are taken as they
    are (float64 becomes float32).
    """

    def __init__(self, wave: Any, sample_rate: int, name: str = "audio") -> None:
        self.name = name
        self.wave = _as_channels_first(wave, name)
        self.sample_rate = _rate(sample_rate, name)

    @property
    def info(self) -> SourceInfo:
        channels, frames = self.wave.shape
        return SourceInfo(self.sample_rate, channels, frames)

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        for start in range(0, self.wave.shape[1], block_frames):
            yield self.wave[:, start:start + block_frames]

    def warnings(self) -> tuple[str, ...]:
        return ()


def as_source(audio: Any, sample_rate: int | None = None) -> AudioSource:
    """An ``AudioSource`` for a path or in-memory samples (``sample_rate`` needed for those,
    refused for paths, whose header says it)."""
    if isinstance(audio, (FileSource, ArraySource)):
        return audio
    if isinstance(audio, (str, os.PathLike)):
        if sample_rate is not None:
            raise ValueError("sample_rate is for in-memory audio; a file's header gives its own")
        return FileSource(audio)
    if sample_rate is None:
        raise ValueError("in-memory audio needs its sample_rate")
    return ArraySource(audio, sample_rate)


def blocks_at(
    source: AudioSource, sample_rate: int,
    on_native_block: Callable[[np.ndarray], None] | None = None,
) -> Iterator[np.ndarray]:
    """Stream ``source`` as ``(C, n)`` float32 blocks at ``sample_rate``, exact total length
    (``output_length`` of its frames); ``on_native_block`` sees each block at the source's
    own rate first."""
    info = source.info
    total = output_length(info.frames, info.sample_rate, sample_rate)
    blocks = source.blocks(int(BLOCK_SECONDS * info.sample_rate))
    if on_native_block is not None:
        blocks = _observed(blocks, on_native_block)
    return stream_resampled(blocks, info.sample_rate, sample_rate, info.channels, total)


def _observed(blocks: Iterator[np.ndarray],
              observe: Callable[[np.ndarray], None]) -> Iterator[np.ndarray]:
    for block in blocks:
        observe(block)
        yield block


def _rate(sample_rate: Any, name: str) -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"{name}: sample_rate must be a positive whole number of Hz, "
                         f"got {sample_rate!r}")
    return int(sample_rate)


def _as_channels_first(wave: Any, name: str) -> np.ndarray:
    """``(C, N)`` float32 from a NumPy array or torch tensor of ``(N,)`` or ``(C, N)``."""
    if hasattr(wave, "detach") and hasattr(wave, "cpu"):  # a torch tensor, without importing torch
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(-np.iinfo(wave.dtype).min)
    elif not np.issubdtype(wave.dtype, np.floating):
        raise TypeError(f"{name}: samples must be floats or integers, got {wave.dtype}")
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise ValueError(f"{name}: expected (samples,) or (channels, samples), got shape "
                         f"{wave.shape}")
    if wave.shape[0] > wave.shape[1]:
        raise ValueError(f"{name}: shape {wave.shape} has more channels than samples: pass "
                         "(channels, samples), e.g. wave.T for what soundfile.read returns")
    return np.ascontiguousarray(wave, dtype=np.float32)

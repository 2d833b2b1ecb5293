"""Reading what libsndfile cannot (AAC/M4A, WMA, AMR, video soundtracks) through PyAV.

PyAV's wheels bundle FFmpeg's libraries, so nothing is installed beside it. The first audio
stream FFmpeg rates best is read, decoded to float32 ``(C, n)`` blocks at the stream's own
rate. Containers do not always know their exact length up front (and an AAC stream decodes
to whole 1024-sample frames), so ``av_info`` decodes the stream once to count its frames:
the count is then exactly what ``av_blocks`` yields, which the output length relies on.
Decoding AAC runs at about 1500x real time on one core.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from hireslm.audio.errors import UnreadableAudioError

# Integer sample formats and the value of full scale in each.
_FULL_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 2.0**63}


@dataclass(frozen=True)
class AvInfo:
    """Header information of an FFmpeg-read file; the fields of soundfile's info hireslm
    reads. ``subtype`` is FFmpeg's codec name in capitals (``AAC``, ``WMAV2``)."""

    samplerate: int
    channels: int
    frames: int
    format: str
    subtype: str
    extra_info: str = ""
    # The frame count the container announces, where it is known to count sample frames
    # (PCM in CAF: libsndfile refuses a cut CAF, FFmpeg reads what is there); else None.
    announced_frames: int | None = None

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def av_info(path: str | os.PathLike) -> AvInfo:
    """Rate, channels and the exact frame count (by decoding the stream once).

    The count is kept per (file, size, modification time): a restore asks for a file's info
    for its progress total, its analysis and its report thumbnail, and each answer would
    otherwise decode the whole stream again.

    Raises:
        UnreadableAudioError: FFmpeg cannot open it, it has no audio stream, or decoding fails.
    """
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise UnreadableAudioError(f"{path}: cannot be read ({exc.strerror})") from exc
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _INFO_CACHE:
        _INFO_CACHE[key] = _count(path)
        while len(_INFO_CACHE) > _INFO_CACHE_SIZE:
            _INFO_CACHE.popitem(last=False)
    return _INFO_CACHE[key]


_INFO_CACHE: OrderedDict[tuple[str, int, int], AvInfo] = OrderedDict()
_INFO_CACHE_SIZE = 1024


def _count(path: str | os.PathLike) -> AvInfo:
    """``av_info`` without the cache: one decoding pass."""
    frames = 0
    rate = channels = 0
    with _open(path) as (container, stream):
        for block in _decoded(path, container, stream):
            frames += block.shape[1]
            channels = block.shape[0]
        rate = stream.codec_context.sample_rate
        fmt = container.format.name.split(",")[0].upper()
        codec = stream.codec_context.name.upper()
        channels = channels or stream.codec_context.channels
        announced = _announced_frames(fmt, codec, stream)
    if rate <= 0 or channels <= 0:
        raise UnreadableAudioError(f"{path}: not readable audio: FFmpeg finds a {codec} stream "
                                   f"with no audio in it ({rate} Hz, {channels} channels)")
    return AvInfo(samplerate=int(rate), channels=int(channels), frames=frames, format=fmt,
                  subtype=codec, announced_frames=announced)


def _announced_frames(fmt: str, codec: str, stream: av.audio.stream.AudioStream) -> int | None:
    """The container's frame count where it counts sample frames: PCM in CAF (elsewhere
    FFmpeg's count is of packets, or absent)."""
    if fmt == "CAF" and codec.startswith("PCM_") and stream.frames > 0:
        return int(stream.frames)
    return None


def av_blocks(path: str | os.PathLike, block_frames: int,
              overlap_frames: int = 0) -> Iterator[np.ndarray]:
    """Stream ``(C, n)`` float32 blocks of ``block_frames`` (the last may be shorter),
    consecutive blocks sharing ``overlap_frames``, as soundfile's ``blocks`` does."""
    with _open(path) as (container, stream):
        pending: list[np.ndarray] = []
        held = 0
        yielded = False
        for piece in _decoded(path, container, stream):
            pending.append(piece)
            held += piece.shape[1]
            while held >= block_frames:
                joined = np.concatenate(pending, axis=1)
                yield np.ascontiguousarray(joined[:, :block_frames])
                yielded = True
                pending = [joined[:, block_frames - overlap_frames:]]
                held = pending[0].shape[1]
        if held > (overlap_frames if yielded else 0):
            yield np.ascontiguousarray(np.concatenate(pending, axis=1))


def av_read(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file: ``(C, N)`` float32 and the rate in Hz."""
    with _open(path) as (container, stream):
        pieces = list(_decoded(path, container, stream))
        rate = int(stream.codec_context.sample_rate)
    if not pieces:
        return np.zeros((max(1, stream.codec_context.channels), 0), np.float32), rate
    return np.ascontiguousarray(np.concatenate(pieces, axis=1)), rate


class _open:
    """``with _open(path) as (container, stream)``: the container and its best audio stream."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        try:
            self.container = av.open(str(path))
        except av.FFmpegError as exc:
            kind = f"{Path(path).suffix} " if Path(path).suffix else ""
            raise UnreadableAudioError(
                f"{path}: not readable audio: neither libsndfile nor FFmpeg recognises its "
                f"contents (damaged, or not {kind}audio; FFmpeg: {_strerror(exc)})") from exc

    def __enter__(self):
        if not self.container.streams.audio:
            kinds = sorted({s.type for s in self.container.streams}) or ["no"]
            self.container.close()
            raise UnreadableAudioError(
                f"{self.path}: no audio stream (FFmpeg finds {', '.join(kinds)} streams in "
                "it)")
        stream = self.container.streams.best("audio") or self.container.streams.audio[0]
        return self.container, stream

    def __exit__(self, *exc_info) -> None:
        self.container.close()


def _decoded(path, container, stream) -> Iterator[np.ndarray]:
    """The stream's frames as ``(C, n)`` float32; one rate and channel count throughout."""
    first: tuple[int, int] | None = None
    done = 0
    try:
        for frame in container.decode(stream):
            block = _to_float(frame)
            shape = (frame.sample_rate, block.shape[0])
            if first is None:
                first = shape
            elif shape != first:
                raise UnreadableAudioError(
                    f"{path}: the audio changes from {first[1]} channels at {first[0]} Hz to "
                    f"{shape[1]} at {shape[0]} Hz after {done / first[0]:.1f} s; split it "
                    "into parts of one format first")
            done += block.shape[1]
            if block.shape[1]:
                yield block
    except av.FFmpegError as exc:
        at = f" after {done / first[0]:.1f} s" if first else ""
        raise UnreadableAudioError(
            f"{path}: cannot decode its audio{at} ({_strerror(exc)}): damaged?") from exc


def _to_float(frame: av.AudioFrame) -> np.ndarray:
    """``(C, n)`` float32 from any of FFmpeg's sample formats, planar or packed."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:  # packed: (1, n * C), channels interleaved
        data = data.reshape(-1, channels).T
    name = frame.format.name.rstrip("p")
    if name in _FULL_SCALE:
        offset = 128.0 if name == "u8" else 0.0
        data = (data.astype(np.float64) - offset) / _FULL_SCALE[name]
    return np.ascontiguousarray(data, dtype=np.float32)


def _strerror(exc: av.FFmpegError) -> str:
    """FFmpeg's reason without the path PyAV appends to it."""
    return getattr(exc, "strerror", None) or str(exc)

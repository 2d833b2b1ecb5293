"""Reading what libsndfile cannot (AAC/M4A, WMA, AMR, video soundtracks) through PyAV.

PyAV's wheels bundle FFmpeg's libraries, so nothing is installed beside it. One audio stream
is read, decoded to float32 ``(C, n)`` blocks at the stream's own rate: the one asked for
(``stream=``, 0-based among the file's audio streams, as FFmpeg's ``-map 0:a:N``), else the
container's default stream, else the first with sound in it (a video's silent guide track
before its dialogue); ``AvInfo`` says which was read, why, and how many there are.
Containers do not always know their exact length up front (and an AAC stream decodes to
whole 1024-sample frames), so ``av_info`` decodes the stream once to count its frames: the
count is then exactly what ``av_blocks`` yields, which the output length relies on.
Decoding AAC runs at about 1500x real time on one core.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from hireslm.audio.errors import (
    SILENCE_THRESHOLD,
    AudioError,
    UnreadableAudioError,
    UnsupportedAudioError,
)
from hireslm.audio.filecache import FileCache

log = logging.getLogger(__name__)

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
    stream_index: int = 0  # the audio stream read, 0-based among the file's audio streams
    audio_streams: int = 1  # how many audio streams the file holds
    stream_choice: str = "the only audio stream"  # why that one was read

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def av_info(path: str | os.PathLike, *, stream: int | None = None) -> AvInfo:
    """Rate, channels and the exact frame count (by decoding the stream once), and which
    audio stream that is (``stream``: see the module's docstring).

    The count is kept per (file, size, modification time): a restore asks for a file's info
    for its progress total, its analysis and its report thumbnail, and each answer would
    otherwise decode the whole stream again.

    Raises:
        UnreadableAudioError: FFmpeg cannot open it, it has no audio stream, or decoding fails.
        UnsupportedAudioError: ``stream`` is not one of the file's audio streams.
    """
    try:
        return _INFO_CACHE.get(path, lambda: _count(path, stream), stream)
    except OSError as exc:
        raise UnreadableAudioError(f"{path}: cannot be read ({exc.strerror})") from exc


_INFO_CACHE: FileCache[AvInfo] = FileCache()


def _count(path: str | os.PathLike, asked: int | None) -> AvInfo:
    """``av_info`` without the cache: one decoding pass."""
    frames = 0
    rate = channels = 0
    with _open(path, asked) as (container, stream):
        choice = _choose(path, container, asked)
        for block in _decoded(path, container, stream):
            frames += block.shape[1]
            channels = block.shape[0]
        rate = stream.codec_context.sample_rate
        fmt = container.format.name.split(",")[0].upper()
        codec = _codec_name(stream.codec_context.name)
        channels = channels or stream.codec_context.channels
        announced = _announced_frames(fmt, codec, stream)
        streams = len(container.streams.audio)
    if rate <= 0 or channels <= 0:
        raise UnreadableAudioError(f"{path}: not readable audio: FFmpeg finds a {codec} stream "
                                   f"with no audio in it ({rate} Hz, {channels} channels)")
    return AvInfo(samplerate=int(rate), channels=int(channels), frames=frames, format=fmt,
                  subtype=codec, announced_frames=announced, stream_index=choice[0],
                  audio_streams=streams, stream_choice=choice[1])


def _codec_name(decoder: str) -> str:
    """The codec's name in capitals, not its decoder's (``mp3float`` decodes ``MP3``)."""
    name = decoder.upper()
    for suffix in ("FLOAT", "_FIXED"):
        if name.endswith(suffix) and name[: -len(suffix)] in _DECODED_AS:
            return name[: -len(suffix)]
    return name


_DECODED_AS = frozenset({"MP1", "MP2", "MP3", "AAC", "AC3", "EAC3"})


def _announced_frames(fmt: str, codec: str, stream: av.audio.stream.AudioStream) -> int | None:
    """The container's frame count where it counts sample frames: PCM in CAF (elsewhere
    FFmpeg's count is of packets, or absent)."""
    if fmt == "CAF" and codec.startswith("PCM_") and stream.frames > 0:
        return int(stream.frames)
    return None


def av_blocks(path: str | os.PathLike, block_frames: int, overlap_frames: int = 0, *,
              stream: int | None = None) -> Iterator[np.ndarray]:
    """Stream ``(C, n)`` float32 blocks of ``block_frames`` (the last may be shorter),
    consecutive blocks sharing ``overlap_frames``, as soundfile's ``blocks`` does; of the
    audio stream ``av_info`` describes for the same ``stream``."""
    with _open(path, stream) as (container, stream):
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


def av_read(path: str | os.PathLike, *, stream: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole file (the audio stream ``av_info`` describes for the same ``stream``):
    ``(C, N)`` float32 and the rate in Hz."""
    with _open(path, stream) as (container, stream):
        pieces = list(_decoded(path, container, stream))
        rate = int(stream.codec_context.sample_rate)
    if not pieces:
        return np.zeros((max(1, stream.codec_context.channels), 0), np.float32), rate
    return np.ascontiguousarray(np.concatenate(pieces, axis=1)), rate


class _open:
    """``with _open(path, stream) as (container, stream)``: the container and the audio stream
    to read (``_choose``)."""

    def __init__(self, path: str | os.PathLike, asked: int | None = None) -> None:
        self.path, self.asked = path, asked
        self.container = _container(path)

    def __enter__(self):
        try:
            index, _ = _choose(self.path, self.container, self.asked)
        except BaseException:
            self.container.close()
            raise
        return self.container, self.container.streams.audio[index]

    def __exit__(self, *exc_info) -> None:
        self.container.close()


def _container(path: str | os.PathLike) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        kind = f"{Path(path).suffix} " if Path(path).suffix else ""
        raise UnreadableAudioError(
            f"{path}: not readable audio: neither libsndfile nor FFmpeg recognises its "
            f"contents (damaged, or not {kind}audio; FFmpeg: {_strerror(exc)})") from exc


def _choose(path: str | os.PathLike, container: av.container.InputContainer,
            asked: int | None) -> tuple[int, str]:
    """Which audio stream to read (0-based among the audio streams) and why, kept per file."""
    audio = container.streams.audio
    if not audio:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        raise UnreadableAudioError(
            f"{path}: no audio stream (FFmpeg finds {', '.join(kinds)} streams in it)")
    if asked is not None:
        if not 0 <= asked < len(audio):
            raise UnsupportedAudioError(
                f"{path}: audio stream {asked} (0-based) was asked for, but the file holds "
                f"{len(audio)}")
        return asked, "the one asked for"
    if len(audio) == 1:
        return 0, "the only audio stream"
    try:
        return _CHOICES.get(path, lambda: _first_with_sound(path, audio))
    except OSError as exc:
        raise UnreadableAudioError(f"{path}: cannot be read ({exc.strerror})") from exc


_CHOICES: FileCache[tuple[int, str]] = FileCache()


def _first_with_sound(path: str | os.PathLike, audio) -> tuple[int, str]:
    """The container's default stream, else the first with sound; of the default streams
    (if any) first, so a default that is digital silence gives way to one with sound."""
    default = av.stream.Disposition.default
    defaults = [i for i, s in enumerate(audio) if s.disposition & default]
    order = defaults + [i for i in range(len(audio)) if i not in defaults]
    silent: list[int] = []
    for index in order:
        if _has_sound(path, index):
            break
        silent.append(index)
    else:
        return order[0], (f"every audio stream is digital silence; the "
                          f"{'default' if defaults else 'first'} one")
    if index in defaults:
        return index, "the container's default audio stream"
    skipped = ", ".join(str(i + 1) for i in sorted(silent))
    if defaults:
        return index, (f"the first with sound: the container's default (stream {skipped}) "
                       "is digital silence")
    return index, (f"the first with sound: stream {skipped} before it "
                   f"{'is' if len(silent) == 1 else 'are'} digital silence")


def _has_sound(path: str | os.PathLike, index: int) -> bool:
    """Whether audio stream ``index`` holds a sample above the silence threshold (decoded up
    to the first one). A stream that fails to decode counts as without sound."""
    try:
        with _open(path, index) as (container, stream):
            return any(float(np.abs(block).max()) >= SILENCE_THRESHOLD
                       for block in _decoded(path, container, stream))
    except AudioError as exc:
        log.debug("%s: audio stream %d not considered: %s", path, index, exc)
        return False


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

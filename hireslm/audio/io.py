"""Reading and writing audio files: float32, channels first, writes atomic.

Everything soundfile (libsndfile) decodes is read by it: WAV, FLAC, OGG/Vorbis, OGG/Opus,
MP3, AIFF and more; what it cannot open (M4A/AAC, WMA, AMR, video soundtracks, a cut CAF) is
read through PyAV's bundled FFmpeg (``hireslm.audio.av_io``), and so is an MP3 libsndfile
would stop short in. An MP3's length is counted, not taken from its header
(``hireslm.audio.sndfile``); ``header_shortfall`` and ``stream_note`` word what a report
should say of a file cut short and of one with several audio streams. Arrays are
``(C, N)`` float32 numpy arrays throughout hireslm. Errors name the file once and say what
is wrong in the user's terms (missing, empty, permission denied, not audio, no space left),
not libsndfile's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from hireslm.audio.av_io import AvInfo, av_blocks, av_info, av_read
from hireslm.audio.errors import (
    SILENCE_THRESHOLD,
    AudioWriteError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
    UnsupportedAudioError,
    unreadable_reason,
    write_reason,
)
from hireslm.audio.sndfile import (
    SoundInfo,
    check_mpeg,
    counted_info,
    is_mpeg,
    libsndfile_reason,
    sf_blocks,
    stops_short,
)
from hireslm.fileio import atomic_path

# File name suffixes treated as audio when walking folders (restore inputs, evaluation pairs).
# The second line is read through FFmpeg (PyAV): AAC, Apple lossless, WMA, AMR, AC-3, and
# the soundtracks of video files.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64",
     ".caf", ".au", ".snd",
     ".m4a", ".m4b", ".aac", ".mp4", ".wma", ".asf", ".amr", ".awb", ".3gp", ".3g2", ".ac3",
     ".mka", ".webm", ".mkv", ".mov", ".avi", ".wv", ".ape", ".mp2"}
)
# Sample rates hireslm restores from; outside them a header is more likely wrong than real
# (a 1 Hz header turns 20 frames into 20 s of output).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000

# soundfile subtypes by user-facing name.
SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


def audio_info(path: str | os.PathLike, *, stream: int | None = None) -> SoundInfo | AvInfo:
    """Header information (rate, channels, frames, format, subtype, and ``announced_frames``,
    ``stream_index``, ``audio_streams``, ``stream_choice``: see ``SoundInfo``).

    libsndfile reads it from the header, except an MPEG file's frame count, which is counted
    by decoding it once (its header's count can lie: ``hireslm.audio.sndfile``). FFmpeg reads
    a file only it can, and an MPEG file libsndfile would stop short in (joined files, VBR
    without a Xing tag), decoding the stream once to count its frames exactly
    (``hireslm.audio.av_io``). ``frames`` is then exactly what ``iter_audio_blocks`` yields,
    and ``header_shortfall`` says when that is less than the header announced.

    A file with several audio streams (only FFmpeg reads those) has one read: ``stream``
    (0-based among its audio streams) when given, else the container's default, else the
    first with sound; ``stream_note`` says so for a report. Pass the same ``stream`` to
    ``iter_audio_blocks`` and ``load_audio``.

    Raises:
        UnreadableAudioError: missing, empty, unreadable, or not audio (the message says which).
        UnsupportedAudioError: an MPEG file whose rate or channel count changes mid-stream;
            ``stream`` is not one of the file's audio streams.
    """
    _check_can_read(path)
    try:
        info = SoundInfo(path)
    except Exception:  # noqa: BLE001 - libsndfile raises several types; FFmpeg may read it
        return av_info(path, stream=stream)
    _check_one_stream(path, stream)
    if stops_short(path, info):
        return av_info(path)
    return counted_info(path, info)


def stream_note(info: SoundInfo | AvInfo) -> str | None:
    """What a report should say of a file with several audio streams (which one was read,
    why, and that the others were not), or None for a file with one."""
    streams = getattr(info, "audio_streams", 1)
    if streams <= 1:
        return None
    others = "the other was" if streams == 2 else f"the other {streams - 1} were"
    return (f"audio stream {info.stream_index + 1} of {streams} read "
            f"({info.stream_choice}); {others} not restored")


def _check_one_stream(path: str | os.PathLike, stream: int | None) -> None:
    """A file libsndfile reads holds one audio stream: ``stream`` may only ask for it."""
    if stream not in (None, 0):
        raise UnsupportedAudioError(
            f"{path}: audio stream {stream} (0-based) was asked for, but the file holds 1")


def _check_can_read(path: str | os.PathLike) -> None:
    reason = unreadable_reason(path)
    if reason is not None:
        raise UnreadableAudioError(f"{path}: {reason}")


def check_sample_rate(sample_rate: int, *, source: str = "audio") -> None:
    """Raise ``UnsupportedAudioError`` for a rate outside 8-192 kHz."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedAudioError(
            f"{source}: sample rate {sample_rate} Hz is outside the {MIN_SAMPLE_RATE}-"
            f"{MAX_SAMPLE_RATE} Hz hireslm restores (a damaged header?)")


def header_shortfall(info: SoundInfo | AvInfo | sf._SoundFileInfo) -> str | None:
    """Why a file holds less audio than its header announces (a copy cut short), or None.

    Where ``frames`` was counted by decoding (MPEG; PCM in CAF, which FFmpeg reads), it is
    compared with the header's ``announced_frames``. Otherwise libsndfile reads what is
    there and notes the shortfall in its log, which is where it is found: the audio chunk's
    size (WAV ``data : 144000 (should be 71978)``, AIFF ``SSND``, AU ``Data Size``), or for
    W64 and RF64, whose audio chunk it does not check, the whole file's.
    """
    announced = getattr(info, "announced_frames", None)
    if announced and info.frames < announced:
        return _shortfall(info.frames, announced, "frames")
    log = getattr(info, "extra_info", "") or ""
    match = _AUDIO_SHOULD_BE.search(log)
    unit = "audio bytes"
    if match is None and getattr(info, "format", None) in ("W64", "RF64"):
        match, unit = _FILE_SHOULD_BE.search(log), "bytes"
    if match is None:
        return None
    announced, present = int(match.group(1)), int(match.group(2))
    return None if present >= announced else _shortfall(present, announced, unit)


def _shortfall(present: int, announced: int, unit: str) -> str:
    return (f"the file holds {present} of the {announced} {unit} its header announces "
            f"({100 * present / announced:.0f}%): a truncated copy? Only what is there was "
            "restored")


_AUDIO_SHOULD_BE = re.compile(
    r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_FILE_SHOULD_BE = re.compile(
    r"^\s*(?:riff|Riff size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def load_audio(path: str | os.PathLike, *, check: bool = True,
               stream: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole file (of several audio streams, the one ``audio_info`` describes for
    the same ``stream``).

    Returns:
        wave: ``(C, N)`` float32, channels kept.
        sample_rate: the file's rate in Hz.

    Raises:
        UnreadableAudioError, EmptyAudioError, NonFiniteAudioError (when ``check``).
    """
    path = Path(path)
    _check_can_read(path)
    try:
        handle = sf.SoundFile(os.fsencode(path))  # bytes: any name the file system holds
    except Exception:  # noqa: BLE001 - not for libsndfile: FFmpeg may read it
        wave, sample_rate = av_read(path, stream=stream)
    else:
        with handle:
            _check_one_stream(path, stream)
            if stops_short(path, handle):
                wave, sample_rate = av_read(path)
            else:
                wave, sample_rate = _sf_read(path, handle), handle.samplerate
    if check:
        check_audio(wave, source=str(path))
    return wave, int(sample_rate)


def _sf_read(path: Path, handle: sf.SoundFile) -> np.ndarray:
    """The whole of an open libsndfile file as ``(C, N)`` float32.

    An MPEG file is read in blocks: the one read of its announced length would allocate what
    a damaged header says (hours), not what is there.
    """
    mpeg = is_mpeg(handle)
    if mpeg:
        check_mpeg(path)
    try:
        if not mpeg:
            return np.ascontiguousarray(handle.read(dtype="float32", always_2d=True).T)
        blocks = list(sf_blocks(handle, _MPEG_READ_FRAMES, 0))
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise UnreadableAudioError(
            f"{path}: cannot decode its audio ({libsndfile_reason(exc)}): damaged?") from exc
    if not blocks:
        return np.zeros((handle.channels, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1))


_MPEG_READ_FRAMES = 1 << 20


def iter_audio_blocks(
    path: str | os.PathLike, block_frames: int, overlap_frames: int = 0, *,
    stream: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream a file in blocks of ``block_frames`` (the last may be shorter).

    Consecutive blocks share ``overlap_frames`` samples. Memory stays bounded by one block,
    whatever the file's length. Yields ``(C, n)`` float32 arrays, ``audio_info(path,
    stream=stream).frames`` in all, of the audio stream that describes.
    """
    if overlap_frames >= block_frames:
        raise ValueError("overlap_frames must be smaller than block_frames")
    _check_can_read(path)
    try:
        handle = sf.SoundFile(os.fsencode(path))  # bytes: any name the file system holds
    except Exception:  # noqa: BLE001 - not for libsndfile: FFmpeg may read it
        yield from av_blocks(path, block_frames, overlap_frames, stream=stream)
        return
    try:
        with handle:
            _check_one_stream(path, stream)
            if stops_short(path, handle):
                yield from av_blocks(path, block_frames, overlap_frames)
                return
            yield from sf_blocks(handle, block_frames, overlap_frames)
    except sf.LibsndfileError as exc:
        raise UnreadableAudioError(
            f"{path}: cannot decode its audio ({libsndfile_reason(exc)}): damaged?") from exc


def check_audio(wave: np.ndarray, *, source: str = "audio", allow_silent: bool = True) -> None:
    """Raise a clear error for empty or non-finite audio (and silent, unless allowed).

    Args:
        wave: ``(C, N)`` or ``(N,)`` samples.
    """
    if wave.size == 0:
        raise EmptyAudioError(f"{source}: no samples")
    if not np.isfinite(wave).all():
        bad = int((~np.isfinite(wave)).sum())
        raise NonFiniteAudioError(f"{source}: {bad} NaN or infinite samples")
    if not allow_silent and is_silent(wave):
        raise SilentAudioError(f"{source}: digital silence")


def is_silent(wave: np.ndarray, threshold: float = SILENCE_THRESHOLD) -> bool:
    """True when no sample's magnitude reaches ``threshold``."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < threshold


def save_audio(
    path: str | os.PathLike,
    wave: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
    format: str | None = None,
) -> Path:
    """Write ``(C, N)`` or ``(N,)`` audio atomically (see ``atomic_audio_writer``).

    ``subtype`` is a soundfile subtype ("PCM_24", "VORBIS", ...) or a key of ``SUBTYPES``.
    """
    channels = 1 if wave.ndim == 1 else wave.shape[0]
    with atomic_audio_writer(path, sample_rate, channels, subtype=subtype, format=format) as out:
        out.write(wave if wave.ndim == 1 else wave.T)
    return Path(path)


@contextmanager
def atomic_audio_writer(
    path: str | os.PathLike,
    sample_rate: int,
    channels: int,
    *,
    subtype: str | None = None,
    format: str | None = None,
    comment: str | None = None,
) -> Iterator[sf.SoundFile]:
    """Open a ``soundfile.SoundFile`` on a temp file beside ``path``; rename it into place
    when the block exits cleanly, delete it otherwise.

    A reader never sees a half-written file, and a killed writer leaves nothing at ``path``.
    Write ``(n, C)`` frames to the yielded handle. ``comment`` fills the file's comment tag
    (WAV, FLAC, OGG; set before any audio, as FLAC requires).
    """
    path = Path(path)
    subtype = SUBTYPES.get(subtype, subtype) if subtype else None
    if subtype is None and path.suffix.lower() == ".opus":
        subtype = "OPUS"
    fmt = format or _format_from_suffix(path)
    with ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(atomic_path(path))
        except OSError as exc:
            reason = write_reason(path, exc.errno, exc.strerror or str(exc))
            raise AudioWriteError(f"{path}: cannot write: {reason}", exc.errno) from exc
        try:
            handle = sf.SoundFile(
                os.fsencode(tmp), "w", samplerate=sample_rate, channels=channels,
                subtype=subtype, format=fmt)
        except sf.LibsndfileError as exc:
            raise _write_error(path, exc) from exc
        try:
            with handle:
                if comment is not None:
                    handle.comment = comment
                try:
                    yield handle
                except sf.LibsndfileError as exc:
                    raise _write_error(path, exc) from exc
        except sf.LibsndfileError as exc:  # flushing at close
            raise _write_error(path, exc) from exc


def _write_error(path: Path, exc: sf.LibsndfileError) -> AudioWriteError:
    """libsndfile's "System error." in the user's terms; its C errno says which (read at
    once, before another C call can change it)."""
    code = getattr(getattr(sf, "_ffi", None), "errno", None) or None
    reason = write_reason(path, code, libsndfile_reason(exc))
    return AudioWriteError(f"{path}: cannot write: {reason}", code)


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "opus": "OGG", "mp3": "MP3",
               "aif": "AIFF", "aiff": "AIFF"}
    if suffix not in formats:
        raise ValueError(f"{path}: unsupported output format '.{suffix}'")
    return formats[suffix]

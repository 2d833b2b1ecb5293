"""Reading through libsndfile what its header may misstate: only decoded frames are passed
on, and an MPEG file's length is counted, not taken from its header.

An MP3's length comes from its first frame's Xing/Info tag, which a cut copy still carries
whole (or which a damaged one misstates: a 1 s file announcing an hour). libsndfile then
reads fewer frames than it reported, and soundfile's ``blocks`` filled the rest of each block
with whatever its buffer held before. So ``sf_blocks`` yields only what was read, and
``SoundInfo.frames`` of an MPEG file is what decodes (about 3000x real time on one core,
kept per file), with the tag's count kept in ``announced_frames``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from hireslm.audio.errors import UnreadableAudioError, UnsupportedAudioError
from hireslm.audio.filecache import FileCache
from hireslm.audio.mpeg import MpegScan, scan_mpeg

_COUNT_FRAMES = 1 << 16


class SoundInfo(sf._SoundFileInfo):
    """soundfile's header information, with the fields hireslm adds to every info
    (``hireslm.audio.av_io.AvInfo`` has them too).

    Attributes added:
        announced_frames: the frame count the header announces where ``frames`` was counted
            by decoding (MPEG with a Xing/Info/VBRI tag); None where none is announced or
            ``frames`` is the header's own count.
        stream_index: which audio stream was read, 0-based (always 0: one stream).
        audio_streams: how many audio streams the file holds (always 1).
        stream_choice: why that stream was read.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        # bytes: a name that is not UTF-8 (a Latin-1 archive) opens as the file system holds it
        super().__init__(os.fsencode(path), verbose=False)
        self.name = str(path)
        self.announced_frames: int | None = None
        self.stream_index = 0
        self.audio_streams = 1
        self.stream_choice = "the only audio stream"

    def count_frames(self, frames: int, announced: int | None) -> None:
        """Set ``frames`` to a decoded count (and ``duration`` with it)."""
        self.frames, self.announced_frames = frames, announced
        self.duration = frames / self.samplerate


def is_mpeg(handle: sf.SoundFile | sf._SoundFileInfo) -> bool:
    """Whether libsndfile reads it as MPEG audio (MP3, MP2): its header count can lie."""
    return handle.format == "MP3"


def counted_info(path: str | os.PathLike, info: SoundInfo) -> SoundInfo:
    """``info`` with ``frames`` counted by decoding where the header may misstate it (MPEG).

    Raises:
        UnsupportedAudioError: the rate or channel count changes mid-stream.
        UnreadableAudioError: decoding fails.
    """
    if not is_mpeg(info):
        return info
    scan = check_mpeg(path)
    frames = _COUNTS.get(path, lambda: _count(path))
    info.count_frames(frames, info.frames if scan.tagged else None)
    return info


_COUNTS: FileCache[int] = FileCache()
_SCANS: FileCache[MpegScan] = FileCache()


def check_mpeg(path: str | os.PathLike) -> MpegScan:
    """The frame headers' account of an MPEG file (kept per file); refuses a format change.

    Raises:
        UnsupportedAudioError: the rate or channel count changes mid-stream; libmpg123 would
            decode the later part at the first part's rate (at the wrong speed).
    """
    try:
        scan = _SCANS.get(path, lambda: scan_mpeg(path))
    except OSError as exc:
        raise UnreadableAudioError(f"{path}: cannot be read ({exc.strerror})") from exc
    change = scan.format_change()
    if change is not None:
        raise UnsupportedAudioError(
            f"{path}: {change}; split it into parts of one format first")
    return scan


def stops_short(path: str | os.PathLike, handle: sf.SoundFile | sf._SoundFileInfo) -> bool:
    """Whether libsndfile would stop reading well before an MPEG file's last frame.

    It reads no further than the length it takes from the first frame's tag, or guesses
    from the file's size without one: two files joined keep only the first one's tag, and
    a VBR file without a tag is guessed short (half of one here). FFmpeg reads those to the
    last frame. A frame-header total above libsndfile's length by more than the tag frame,
    the codec's delay and padding (``3 * frame + 2304`` samples) is such a file.

    Raises:
        UnsupportedAudioError: the rate or channel count changes mid-stream.
    """
    if not is_mpeg(handle):
        return False
    scan = check_mpeg(path)
    if not scan.runs:
        return False
    total = sum(run.samples for run in scan.runs)
    frame = max(run.samples // run.frames for run in scan.runs)
    return total - handle.frames > 3 * frame + 2304


def _count(path: str | os.PathLike) -> int:
    buffer = None
    frames = 0
    try:
        with sf.SoundFile(os.fsencode(path)) as handle:
            buffer = np.empty((_COUNT_FRAMES, handle.channels), dtype=np.float32)
            while got := read_into(handle, buffer):
                frames += got
    except sf.LibsndfileError as exc:
        raise UnreadableAudioError(
            f"{path}: cannot decode its audio ({libsndfile_reason(exc)}): damaged?") from exc
    return frames


def sf_blocks(handle: sf.SoundFile, block_frames: int,
              overlap_frames: int) -> Iterator[np.ndarray]:
    """``(C, n)`` float32 blocks as soundfile's ``blocks`` makes them, of decoded frames only.

    soundfile's own ``blocks`` yields its whole buffer after a short read, so a file that
    holds less than its header announces (a cut MP3) came out padded with whatever that
    memory held before (an earlier block, another file's samples, 1e20s).
    """
    buffer = np.empty((block_frames, handle.channels), dtype=np.float32)
    held = 0  # frames at the buffer's start carried over from the previous block
    while True:
        filled = held + read_into(handle, buffer[held:])
        if filled > held:
            yield buffer[:filled].T.copy()  # C order; the buffer is reused
        if filled < block_frames:
            return
        if overlap_frames:
            buffer[:overlap_frames] = buffer[block_frames - overlap_frames:]
        held = overlap_frames


def read_into(handle: sf.SoundFile, out: np.ndarray) -> int:
    """Fill ``out`` from ``handle``; the frames read (fewer only at the end of what decodes)."""
    done = 0
    while done < len(out):
        got = len(handle.read(len(out) - done, dtype="float32", out=out[done:]))
        if got == 0:
            break
        done += got
    return done


def libsndfile_reason(exc: Exception) -> str:
    """libsndfile's reason without the "Error opening 'PATH': " it prefixes."""
    return getattr(exc, "error_string", None) or str(exc)

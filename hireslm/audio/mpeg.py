"""Walking an MPEG audio file's frame headers (MP3, MP2): what libmpg123 leaves unsaid.

libsndfile decodes MPEG audio through libmpg123 at the rate and channel count of the first
frame, and takes the length from the first frame's Xing/Info tag (or, without one, guesses
it from the file's size). Reading the 4-byte header of every frame (nothing is decoded;
about 0.3 s for an hour) finds what it does not say:

* a change of rate or channels mid-stream (two files joined): libmpg123 goes on decoding
  the later frames as if they had the first one's rate, so that part plays at the wrong
  speed (16 kHz frames read as 48 kHz play three times too fast);
* whether the length libsndfile reports was announced by a tag (a cut copy then holds less
  than announced) or guessed.

A frame is taken for one only where the next frames follow it at the offsets its header
gives (``_CHAIN`` in a row), so stray 0xFF bytes in a tag or in damage are not frames.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

# Frames in a row (same version, layer and rate) that make a sync, and the fewest frames of
# another rate or channel count that make a change (shorter runs are damage, not audio).
_CHAIN = 3
_MIN_RUN = 3

# version bits -> rates; 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5 (1 is reserved)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
# (MPEG-1?, layer) -> kbit/s by bitrate index (0 is free format, 15 invalid)
_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# What may follow the last frame: tags, or the next joined file's ID3v2 tag.
_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICS", b"ID3")


@dataclass(frozen=True)
class MpegRun:
    """Consecutive frames of one rate and channel count."""

    sample_rate: int
    channels: int
    frames: int  # MPEG frames
    samples: int  # sample frames they hold (before a decoder trims its delay and padding)


@dataclass(frozen=True)
class MpegScan:
    """What the frame headers of an MPEG audio file say."""

    runs: tuple[MpegRun, ...]
    tagged: bool  # the first frame is a Xing/Info/VBRI tag that announces the length

    def format_change(self) -> str | None:
        """Where the rate or channel count changes, in words, or None when it does not."""
        runs = [run for run in self.runs if run.frames >= _MIN_RUN] or list(self.runs[:1])
        seconds = 0.0
        for before, after in zip(runs, runs[1:], strict=False):
            seconds += before.samples / before.sample_rate
            if (before.sample_rate, before.channels) != (after.sample_rate, after.channels):
                return (f"the audio changes from {_channels(before.channels)} at "
                        f"{before.sample_rate} Hz to {_channels(after.channels)} at "
                        f"{after.sample_rate} Hz after about {seconds:.1f} s (MPEG frames of two "
                        "kinds: files joined together?)")
        return None


def _channels(count: int) -> str:
    return "1 channel" if count == 1 else f"{count} channels"


@dataclass(frozen=True)
class _Header:
    key: tuple[int, int, int]  # version, layer, rate: what stays put within one stream
    length: int  # bytes
    sample_rate: int
    channels: int
    samples: int


def scan_mpeg(path: str | os.PathLike) -> MpegScan:
    """Walk every frame header of ``path``. Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return MpegScan((), False)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _walk(data)


def _walk(data: mmap.mmap) -> MpegScan:
    size = len(data)
    runs: list[list[int]] = []  # [rate, channels, frames, samples]
    tagged: bool | None = None
    pos = _after_id3v2(data, 0)
    while (pos := _sync(data, pos)) >= 0:
        while (head := _header(data, pos)) is not None and pos + head.length <= size:
            if tagged is None:
                tagged = _has_length_tag(data, pos, head.length)
            if runs and runs[-1][:2] == [head.sample_rate, head.channels]:
                runs[-1][2] += 1
                runs[-1][3] += head.samples
            else:
                runs.append([head.sample_rate, head.channels, 1, head.samples])
            pos += head.length
        pos = _after_id3v2(data, pos) if data[pos:pos + 3] == b"ID3" else pos + 1
    return MpegScan(tuple(MpegRun(*run) for run in runs), bool(tagged))


def _sync(data: mmap.mmap, pos: int) -> int:
    """The first offset from ``pos`` where ``_CHAIN`` frames follow one another, or -1."""
    while (pos := data.find(b"\xff", pos)) >= 0:
        if _chained(data, pos):
            return pos
        pos += 1
    return -1


def _chained(data: mmap.mmap, pos: int) -> bool:
    key = None
    for _ in range(_CHAIN):
        if key is not None and (pos == len(data) or data[pos:pos + 8].startswith(_TRAILERS)):
            return True  # a short file's last frame
        head = _header(data, pos)
        if head is None or (key is not None and head.key != key):
            return False
        key, pos = head.key, pos + head.length
    return True


def _header(data: mmap.mmap, pos: int) -> _Header | None:
    """The frame header at ``pos``, or None where there is none (or a free-format one)."""
    raw = data[pos:pos + 4]
    if len(raw) < 4 or raw[0] != 0xFF or raw[1] & 0xE0 != 0xE0:
        return None
    version, layer = (raw[1] >> 3) & 3, 4 - ((raw[1] >> 1) & 3)
    bitrate_index, rate_index = raw[2] >> 4, (raw[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    if raw[3] & 3 == 2:  # reserved emphasis
        return None
    mpeg1 = version == 3
    rate = _RATES[version][rate_index]
    bitrate = 1000 * _KBPS[(mpeg1, layer)][bitrate_index]
    padding = (raw[2] >> 1) & 1
    if layer == 1:
        length, samples = (12 * bitrate // rate + padding) * 4, 384
    elif layer == 2 or mpeg1:
        length, samples = 144 * bitrate // rate + padding, 1152
    else:
        length, samples = 72 * bitrate // rate + padding, 576
    channels = 1 if raw[3] >> 6 == 3 else 2
    return _Header((version, layer, rate), length, rate, channels, samples)


def _has_length_tag(data: mmap.mmap, pos: int, length: int) -> bool:
    """Whether the frame at ``pos`` is a Xing/Info tag with a frame count, or a VBRI tag."""
    frame = data[pos:pos + min(length, 64)]
    for name in (b"Xing", b"Info"):
        at = frame.find(name, 4, 40)
        if at >= 0 and len(frame) >= at + 8:
            return bool(frame[at + 7] & 1)  # flags, big-endian: bit 0 = frame count present
    return frame[36:40] == b"VBRI"


def _after_id3v2(data: mmap.mmap, pos: int) -> int:
    """The offset past an ID3v2 tag at ``pos`` (``pos`` itself when there is none)."""
    head = data[pos:pos + 10]
    if len(head) < 10 or head[:3] != b"ID3" or any(b & 0x80 for b in head[6:10]):
        return pos
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    footer = 10 if head[5] & 0x10 else 0
    return pos + 10 + size + footer

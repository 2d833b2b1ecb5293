"""Spectrogram thumbnails for the restore report page: small PNGs, made once per file.

A thumbnail shows at most the first ``THUMB_SECONDS`` of a file, mixed to mono, on a linear
0-24 kHz axis whatever the file's rate (so an 8 kHz input shows its empty upper band next to
its restored output), as power per hertz (so rates compare), 80 dB of range.

An input and its output are drawn on ONE scale, the input's: 80 dB below the input's peak
(``ensure_pair``). An output that came out 39 dB quieter than its input looks 39 dB darker,
not like a normal picture scaled to its own peak. A tiny indexed-PNG encoder (zlib, numpy)
writes them, so restoring needs no plotting library; each is named by a hash of the file's
path, size and modification time (an output's also by its input's, whose peak sets its
scale): a rerun reuses it, a replaced file gets a new one.

The folder they go to (``OUT/.report``) is hireslm's own or it is not used: made by it, with
a manifest (``hireslm-thumbnails.json``) of every thumbnail written there, or refused
(``claim_folder``) when it is a link, not a folder, another user's, or holds files hireslm
did not write. Only thumbnails named in the manifest (and their temp files) are ever
deleted (``prune``), never through a link.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hireslm.audio import audio_info, iter_audio_blocks
from hireslm.audio.io import check_sample_rate
from hireslm.fileio import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

THUMB_SECONDS = 30.0
WIDTH, HEIGHT = 240, 64
TOP_HZ = 24000.0
RANGE_DB = 80.0
SCALE = "v2: density, the pair on the input's scale"  # in the names: a new scale, new files
SILENT_DB = -280.0  # a spectrogram peak below this is digital silence
LEVELS = 32  # colours: few enough to keep a thumbnail near 5 KB
# A dark-to-bright colour ramp (close to matplotlib's "magma"): silence reads as black.
MANIFEST_NAME = "hireslm-thumbnails.json"
# The names hireslm gives thumbnails, and their temp files (hireslm.fileio.atomic_path).
THUMB_NAME = re.compile(r"[0-9a-f]{24}\.png")
THUMB_PART = re.compile(r"\.([0-9a-f]{24}\.png)\.[0-9a-f]{8}\.part")
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def thumbnail_name(path: str | os.PathLike,
                   reference: str | os.PathLike | None = None) -> str | None:
    """The cache name of ``path``'s thumbnail (path, size and mtime; and those of the
    ``reference`` whose scale it is drawn on), None when it is gone."""
    key = _file_key(path)
    if key is None:
        return None
    if reference is not None:
        key += "\0on the scale of\0" + (_file_key(reference) or "nothing")
    digest = hashlib.sha256(f"{SCALE}\0{key}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24] + ".png"


def _file_key(path: str | os.PathLike) -> str | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return f"{Path(path).resolve()}\0{info.st_size}\0{info.st_mtime_ns}"


def ensure_thumbnail(path: str | os.PathLike, folder: str | os.PathLike) -> Path | None:
    """``folder/<name>.png`` for audio file ``path`` on its own scale, made if not there yet.

    Returns None when the file is gone or cannot be read (the page then shows no picture).
    """
    made, _ = ensure_pair(path, None, folder)
    return made


def ensure_pair(source: str | os.PathLike | None, output: str | os.PathLike | None,
                folder: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """The thumbnails of an input and of its output, both on the input's scale (80 dB below
    the input's peak), made if not there yet; None for a file that is absent or unreadable.

    An output whose input cannot be read (or is digital silence) is drawn on its own scale.
    """
    folder = Path(folder)
    source_name = thumbnail_name(source) if source is not None else None
    output_name = thumbnail_name(output, reference=source) if output is not None else None
    targets = [None if name is None else folder / name for name in (source_name, output_name)]
    missing = [target is not None and not _is_regular(target) for target in targets]
    if not any(missing):
        return targets[0], targets[1]
    source_db = _spectrogram_db(source) if source_name is not None else None
    if source_db is None:
        targets[0] = None
    elif missing[0]:
        _write(targets[0], scale_db(source_db, float(source_db.max())))
    if missing[1]:
        output_db = _spectrogram_db(output)
        if output_db is None:
            targets[1] = None
        else:
            peak = None if source_db is None else float(source_db.max())
            if peak is None or peak < SILENT_DB:
                peak = float(output_db.max())
            _write(targets[1], scale_db(output_db, peak))
    return targets[0], targets[1]


def _spectrogram_db(path: str | os.PathLike) -> np.ndarray | None:
    try:
        wave, rate = read_head(path, THUMB_SECONDS)
    except Exception as exc:  # any unreadable file: the page says so, the run goes on
        logger.debug("%s: no thumbnail (%s)", path, exc)
        return None
    return spectrogram_db(wave, rate)


def _write(target: Path, image: np.ndarray) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(encode_png(quantize(image), palette()))


def claim_folder(folder: str | os.PathLike) -> str | None:
    """Make ``folder`` hireslm's thumbnail folder, or say why it cannot be: None when it is
    (made now, or made by hireslm before), else the reason, one line.

    A folder holding only thumbnail-named files and no manifest (made by an earlier hireslm)
    is taken over: its files are entered in a new manifest.
    """
    folder = Path(folder)
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        try:
            folder.mkdir()
        except FileExistsError:
            return claim_folder(folder)  # made meanwhile: look again
        write_manifest(folder, ())
        return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link; hireslm writes and deletes nothing through one"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    manifest = folder / MANIFEST_NAME
    if os.path.lexists(manifest):
        return None if read_manifest(folder) is not None else (
            f"its {MANIFEST_NAME} is not hireslm's manifest (not a file of thumbnail names)")
    entries = os.listdir(folder)
    foreign = [name for name in entries
               if not (THUMB_NAME.fullmatch(name) or THUMB_PART.fullmatch(name))]
    if foreign:
        return (f"holds files hireslm did not write ({foreign[0]!r}"
                f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''})")
    write_manifest(folder, [name for name in entries if THUMB_NAME.fullmatch(name)])
    return None


def read_manifest(folder: str | os.PathLike) -> set[str] | None:
    """The thumbnail names in ``folder``'s manifest; None when it is absent, a link, not
    hireslm's, or damaged."""
    path = Path(folder) / MANIFEST_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, encoding="utf-8") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            found = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    names = found.get("thumbnails") if isinstance(found, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return {name for name in names if THUMB_NAME.fullmatch(name)}


def write_manifest(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Record ``names`` as the thumbnails hireslm wrote (or is about to write) in ``folder``."""
    write_json_atomic(Path(folder) / MANIFEST_NAME,
                      {"written_by": "hireslm restore (its report page's thumbnails)",
                       "thumbnails": sorted(set(names))})


def prune(folder: str | os.PathLike, keep: set[str]) -> None:
    """Delete the thumbnails of the manifest not in ``keep``, and temp files a killed run
    left of the manifest's thumbnails; the manifest then names what is left of ``keep``.
    Nothing else in ``folder`` is touched, and a link is never followed."""
    folder = Path(folder)
    listed = read_manifest(folder) or set()
    for name in os.listdir(folder):
        part = THUMB_PART.fullmatch(name)
        owned = name in listed and name not in keep
        if (owned or (part and part.group(1) in listed | keep)) and _is_regular(folder / name):
            (folder / name).unlink(missing_ok=True)
    write_manifest(folder, {name for name in keep if _is_regular(folder / name)})


def _is_regular(path: Path) -> bool:
    """A regular file, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_head(path: str | os.PathLike, seconds: float) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of ``path`` as mono ``(N,)`` float32, and its rate.

    Raises ``UnsupportedAudioError`` for a rate outside 8-192 kHz: the block read and the FFT
    are sized by the rate, and a damaged 2 GHz header asked for hundreds of GB.
    """
    info = audio_info(path)
    rate = int(info.samplerate)
    check_sample_rate(rate, source=str(path))
    frames = max(1, min(int(seconds * rate), int(info.frames)))
    for block in iter_audio_blocks(path, frames):
        return block.mean(axis=0), rate
    return np.zeros(0, dtype=np.float32), rate


def spectrogram_image(wave: np.ndarray, sample_rate: int, width: int = WIDTH,
                      height: int = HEIGHT, top_hz: float = TOP_HZ,
                      range_db: float = RANGE_DB) -> np.ndarray:
    """Mono ``(N,)`` -> ``(height, width)`` values in [0, 1] on its own scale (``range_db``
    below its peak), low frequencies at the bottom; all 0 for digital silence."""
    db = spectrogram_db(wave, sample_rate, width, height, top_hz)
    return scale_db(db, float(db.max()), range_db)


def scale_db(db: np.ndarray, peak_db: float, range_db: float = RANGE_DB) -> np.ndarray:
    """dB ``(H, W)`` -> [0, 1]: ``peak_db`` is 1, ``range_db`` below it 0 (all 0 when the
    reference is digital silence)."""
    if peak_db < SILENT_DB:
        return np.zeros_like(db)
    return np.clip((db - (peak_db - range_db)) / range_db, 0.0, 1.0)


def spectrogram_db(wave: np.ndarray, sample_rate: int, width: int = WIDTH,
                   height: int = HEIGHT, top_hz: float = TOP_HZ) -> np.ndarray:
    """Mono ``(N,)`` -> ``(height, width)`` power per hertz in dB, low frequencies at the
    bottom: the same sound at any rate gives the same values.

    Rows cover 0..``top_hz`` linearly; rows above the file's Nyquist hold no power. Each
    column averages the power of the STFT frames that fall in it.
    """
    # ~10 ms frames (bins of ~100 Hz: a row spans several) and at most 4 frames a column:
    # a 30 s file costs a few milliseconds, whatever its rate.
    n_fft = int(2 ** round(np.log2(max(sample_rate, 8000) * 0.01)))
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    hop = max(n_fft // 2, wave.size // (4 * width))
    count = 1 + (wave.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop][:count]
    frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
    window = np.hanning(n_fft)
    # Power spectral density (per hertz): bins of another width, the same level.
    power = np.abs(np.fft.rfft(frames * window.astype(np.float32), axis=1)) ** 2 / (
        sample_rate * float(np.sum(window ** 2)))
    # Columns: average the frames in each; a short file repeats its frames.
    edges = np.linspace(0, count, width + 1)
    starts = np.minimum(edges[:-1].astype(int), count - 1)
    stops = np.maximum(edges[1:].astype(int), starts + 1)
    cumulative = np.vstack([np.zeros((1, power.shape[1])), np.cumsum(power, axis=0)])
    columns = (cumulative[stops] - cumulative[starts]) / (stops - starts)[:, None]  # (W, F)
    # Rows: average the bins in each band of the 0..top_hz axis.
    bin_hz = sample_rate / n_fft
    row_edges = np.linspace(0.0, top_hz, height + 1) / bin_hz
    nyquist_bin = power.shape[1] - 1
    lo = np.minimum(row_edges[:-1].astype(int), nyquist_bin)
    hi = np.minimum(np.maximum(row_edges[1:].astype(int), lo + 1), nyquist_bin + 1)
    cum_f = np.hstack([np.zeros((width, 1)), np.cumsum(columns, axis=1)])
    rows = (cum_f[:, hi] - cum_f[:, lo]) / (hi - lo)[None, :]  # (W, H)
    rows[:, row_edges[:-1] > nyquist_bin] = 0.0
    return (10.0 * np.log10(np.maximum(rows, 0.0) + 1e-30)).T[::-1]


def palette(levels: int = LEVELS) -> np.ndarray:
    """``(levels, 3)`` uint8 colours along the ramp, dark (index 0) to bright."""
    position = np.linspace(0.0, len(_RAMP) - 1, levels)
    index = np.minimum(position.astype(int), len(_RAMP) - 2)
    frac = (position - index)[:, None]
    return np.round(_RAMP[index] * (1.0 - frac) + _RAMP[index + 1] * frac).astype(np.uint8)


def quantize(image: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Values ``(H, W)`` in [0, 1] -> palette indices ``(H, W)`` uint8."""
    return np.round(np.clip(image, 0.0, 1.0) * (levels - 1)).astype(np.uint8)


def encode_png(indices: np.ndarray, colours: np.ndarray) -> bytes:
    """Palette indices ``(H, W)`` uint8 and colours ``(K, 3)`` uint8 -> an indexed PNG."""
    height, width = indices.shape
    raw = np.hstack([np.zeros((height, 1), np.uint8), indices.astype(np.uint8)])

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"PLTE", colours.astype(np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))

"""Spectrogram thumbnails for the restore report page: small PNGs, made once per file.

A thumbnail shows at most the first ``THUMB_SECONDS`` of a file, mixed to mono, on a linear
0-24 kHz axis whatever the file's rate (so an 8 kHz input shows its empty upper band next to
its restored output), 80 dB of range below the image's own peak. A tiny indexed-PNG encoder
(zlib, numpy) writes it, so restoring needs no plotting library; it is named by a hash of the
file's path, size and modification time: a rerun reuses it, a replaced file gets a new one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from hireslm.audio import audio_info, iter_audio_blocks
from hireslm.audio.io import check_sample_rate
from hireslm.fileio import atomic_path

logger = logging.getLogger(__name__)

THUMB_SECONDS = 30.0
WIDTH, HEIGHT = 240, 64
TOP_HZ = 24000.0
RANGE_DB = 80.0
LEVELS = 32  # colours: few enough to keep a thumbnail near 5 KB
# A dark-to-bright colour ramp (close to matplotlib's "magma"): silence reads as black.
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def thumbnail_name(path: str | os.PathLike) -> str | None:
    """The cache name of ``path``'s thumbnail (path, size and mtime), None when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".png"


def ensure_thumbnail(path: str | os.PathLike, folder: str | os.PathLike) -> Path | None:
    """``folder/<name>.png`` for audio file ``path``, made if not there yet.

    Returns None when the file is gone or cannot be read (the page then shows no picture).
    """
    name = thumbnail_name(path)
    if name is None:
        return None
    target = Path(folder) / name
    if target.is_file():
        return target
    try:
        wave, rate = read_head(path, THUMB_SECONDS)
    except Exception as exc:  # any unreadable file: the page says so, the run goes on
        logger.debug("%s: no thumbnail (%s)", path, exc)
        return None
    with atomic_path(target) as tmp:
        tmp.write_bytes(encode_png(quantize(spectrogram_image(wave, rate)), palette()))
    return target


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
    """Mono ``(N,)`` -> ``(height, width)`` values in [0, 1], low frequencies at the bottom.

    Rows cover 0..``top_hz`` linearly; rows above the file's Nyquist are 0. Each column
    averages the power of the STFT frames that fall in it.
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
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2
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
    db = 10.0 * np.log10(rows + 1e-20)
    peak = db.max()
    if peak < -180.0:  # digital silence
        return np.zeros((height, width))
    scaled = np.clip((db - (peak - range_db)) / range_db, 0.0, 1.0)
    return scaled.T[::-1]


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

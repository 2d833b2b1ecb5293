"""Lossy codecs through soundfile (libsndfile + LAME/mpg123, libopus, libvorbis), in memory.

Output is sample-aligned with the input and of the same length. Measured with libsndfile
1.2.2 (table in docs/degradations.md): libsndfile removes the Opus pre-skip, and Vorbis comes
back without delay. MP3 comes back without delay while LAME writes its gapless-info (Info/LAME)
tag; at low bitrates (<= 56 kbps at 48 kHz, the MPEG-2/2.5 rates at <= 24 kbps), consistent
with the tag not fitting into one frame, the decoder instead returns ``MP3_UNTAGGED_DELAY``
extra leading samples (576 encoder + 529 decoder delay) and frame padding. Low-bitrate Opus
(hybrid/SILK modes) leaves a residual of -2..+4 samples at 48 kHz. So: the known MP3 delay is
removed when the decoded length shows it, then a cross-correlation search within +-1 ms
(shorter than any pitch period, so it cannot lock onto the wrong cycle) removes what is left.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from scipy import signal

from hireslm.audio.resample import resample
from hireslm.data.degradations._common import check_wave
from hireslm.data.degradations.registry import DegradationEntry, Draw, Prepared, draw_each

MP3_UNTAGGED_DELAY = 1105
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MP3_BITRATES_MPEG1 = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
MP3_BITRATES_MPEG2 = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_KBPS_RANGE = (6.0, 256.0)
ALIGN_MAX_SECONDS = 0.001


def mp3_bitrates(codec_rate: int) -> tuple[int, ...]:
    """Constant bitrates (kbps) libsndfile can ask LAME for at ``codec_rate``."""
    if codec_rate >= 32000:
        return MP3_BITRATES_MPEG1
    if codec_rate >= 16000:
        return MP3_BITRATES_MPEG2
    return tuple(b for b in MP3_BITRATES_MPEG2 if b <= 64)


def _mp3_compression_level(bitrate_kbps: int, codec_rate: int) -> float:
    """libsndfile maps compression level c to ``int(hi - c * (hi - lo))`` kbps; invert it with
    half a kbps of margin so the truncation lands exactly on ``bitrate_kbps``."""
    table = mp3_bitrates(codec_rate)
    low, high = table[0], table[-1]
    level = (high - bitrate_kbps - 0.5) / (high - low)
    return float(np.clip(level, 0.0, 1.0))


def _roundtrip(
    wave: np.ndarray, rate: int, fmt: str, subtype: str, **options: object
) -> np.ndarray:
    """Encode ``(C, N)`` into an in-memory file and decode it back: ``(C, M)``, M >= N or so."""
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(wave.T), rate, format=fmt, subtype=subtype, **options)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32", always_2d=True)
    return np.ascontiguousarray(decoded.T)


def _fix_length(wave: np.ndarray, length: int) -> np.ndarray:
    if wave.shape[-1] < length:
        wave = np.pad(wave, ((0, 0), (0, length - wave.shape[-1])))
    return wave[:, :length]


def best_lag(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> int:
    """Lag (samples, >0: ``decoded`` is late) maximising the cross-correlation of the channel
    means within ``[-max_lag, max_lag]``. 0 when either side is silent."""
    ref = reference.mean(axis=0).astype(np.float64)
    dec = decoded.mean(axis=0).astype(np.float64)
    if not ref.any() or not dec.any():
        return 0
    corr = signal.correlate(dec, ref, mode="full", method="fft")
    centre = ref.size - 1
    window = corr[centre - max_lag : centre + max_lag + 1]
    return int(np.argmax(window)) - max_lag


def shift(wave: np.ndarray, lag: int) -> np.ndarray:
    """Move ``(C, N)`` earlier by ``lag`` samples (later if negative), zero-filled, same N."""
    if lag == 0:
        return wave
    out = np.zeros_like(wave)
    if lag > 0:
        out[:, :-lag] = wave[:, lag:]
    else:
        out[:, -lag:] = wave[:, :lag]
    return out


def _codec(
    wave: np.ndarray,
    sample_rate: int,
    codec_rate: int,
    fmt: str,
    subtype: str,
    untagged_delay: int = 0,
    **options: object,
) -> np.ndarray:
    """Resample to ``codec_rate``, round-trip, undo delays, resample back, align, same length."""
    coded_in = resample(wave, sample_rate, codec_rate)
    length = coded_in.shape[-1]
    # LAME and libopus take at most two channels; code wider audio one channel at a time.
    groups = [coded_in] if coded_in.shape[0] <= 2 else [ch[None] for ch in coded_in]
    decoded_groups = []
    for group in groups:
        decoded = _roundtrip(group, codec_rate, fmt, subtype, **options)
        if untagged_delay and decoded.shape[-1] > length:
            decoded = decoded[:, untagged_delay:]
        decoded_groups.append(_fix_length(decoded, length))
    decoded = np.concatenate(decoded_groups, axis=0)
    out = _fix_length(resample(decoded, codec_rate, sample_rate), wave.shape[-1])
    max_lag = max(1, int(round(ALIGN_MAX_SECONDS * sample_rate)))
    out = shift(out, best_lag(wave, out, max_lag))
    return np.ascontiguousarray(out, dtype=np.float32)


def mp3(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    bitrate_kbps: int = 64,
    codec_sample_rate: int | None = None,
) -> np.ndarray:
    """MP3 (LAME, constant bitrate) round trip; ``(C, N)`` -> ``(C, N)``, aligned.

    ``codec_sample_rate`` ``None``: the highest MP3 rate not above the input's rate that offers
    ``bitrate_kbps`` (low bitrates need MPEG-2 rates <= 24 kHz, as real low-rate MP3s have).
    LAME adds its own bitrate-dependent low-pass. ``rng`` is unused (the codec is deterministic).
    """
    wave = check_wave(wave, sample_rate, "mp3")
    bitrate_kbps = int(bitrate_kbps)
    if codec_sample_rate is None:
        fits = [r for r in MP3_RATES if r <= max(sample_rate, 8000)
                and bitrate_kbps in mp3_bitrates(r)]
        if not fits:
            raise ValueError(f"mp3: no sample rate offers {bitrate_kbps} kbps")
        codec_sample_rate = fits[-1]
    if codec_sample_rate not in MP3_RATES:
        raise ValueError(f"mp3: codec_sample_rate must be one of {MP3_RATES}")
    if bitrate_kbps not in mp3_bitrates(codec_sample_rate):
        raise ValueError(
            f"mp3: {bitrate_kbps} kbps is not available at {codec_sample_rate} Hz; "
            f"choose from {mp3_bitrates(codec_sample_rate)}"
        )
    level = _mp3_compression_level(bitrate_kbps, codec_sample_rate)
    return _codec(
        wave, sample_rate, codec_sample_rate, "MP3", "MPEG_LAYER_III",
        untagged_delay=MP3_UNTAGGED_DELAY, compression_level=level, bitrate_mode="CONSTANT",
    )


def opus(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    bitrate_kbps: float = 24.0,
    codec_sample_rate: int | None = None,
) -> np.ndarray:
    """Ogg/Opus round trip at ``bitrate_kbps`` (6-256, per mono channel); aligned, same length.

    Opus runs only at 8/12/16/24/48 kHz; ``None`` picks the lowest of those at or above the
    input's rate (48 kHz for 44.1 kHz input) and resamples around the codec. libsndfile maps
    compression level c to about ``6 + 250 * (1 - c)`` kbps (measured). ``rng`` is unused.
    """
    wave = check_wave(wave, sample_rate, "opus")
    low, high = OPUS_KBPS_RANGE
    if not low <= bitrate_kbps <= high:
        raise ValueError(f"opus: bitrate_kbps must be in [{low:g}, {high:g}], got {bitrate_kbps}")
    if codec_sample_rate is None:
        codec_sample_rate = next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])
    if codec_sample_rate not in OPUS_RATES:
        raise ValueError(f"opus: codec_sample_rate must be one of {OPUS_RATES}")
    level = 1.0 - (float(bitrate_kbps) - low) / (high - low)
    return _codec(
        wave, sample_rate, codec_sample_rate, "OGG", "OPUS", compression_level=level
    )


def vorbis(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    quality: float = 0.0,
    codec_sample_rate: int | None = None,
) -> np.ndarray:
    """Ogg/Vorbis (VBR) round trip at libvorbis ``quality`` in [0, 1]; aligned, same length.

    Quality 0 is about 35-41 kbps for mono 48 kHz speech and 27-29 kbps at 16 kHz (measured);
    lower rates through ``codec_sample_rate`` (default: the input's rate). ``rng`` is unused.
    """
    wave = check_wave(wave, sample_rate, "vorbis")
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"vorbis: quality must be in [0, 1], got {quality}")
    codec_sample_rate = int(codec_sample_rate or sample_rate)
    if not 8000 <= codec_sample_rate <= 192000:
        raise ValueError("vorbis: codec_sample_rate must be in [8000, 192000]")
    return _codec(
        wave, sample_rate, codec_sample_rate, "OGG", "VORBIS", compression_level=1.0 - quality
    )


def prepare_vorbis(spec: dict, draw: Draw) -> Prepared | None:
    """Drawn parameters, the codec's rate kept at or below the input's."""
    kwargs, _ = draw_each(spec, draw)
    if kwargs.get("codec_sample_rate"):
        # Coding above the input's rate would only add bandwidth the input never had.
        kwargs["codec_sample_rate"] = min(kwargs["codec_sample_rate"], draw.sample_rate)
    return kwargs, dict(kwargs)


VORBIS_ENTRY = DegradationEntry(vorbis, prepare_vorbis)

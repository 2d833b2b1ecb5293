"""Additive noise at a given SNR: recorded noise, synthetic coloured noise, or babble."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hireslm.audio.resample import resample
from hireslm.data.degradations._common import check_wave, fit_length, match_channels, power
from hireslm.data.degradations.registry import (
    DegradationEntry,
    Draw,
    Prepared,
    Resources,
    required,
    sample_param,
)

# Spectral exponent alpha of 1/f^alpha power spectra by name.
NOISE_COLORS: dict[str, float] = {
    "white": 0.0,
    "pink": 1.0,
    "brown": 2.0,
    "blue": -1.0,
    "violet": -2.0,
}

# A recorded-noise crop below this mean power (-120 dBFS) counts as silent.
SILENCE_POWER = 1e-12
SILENT_CROP_RETRIES = 4


def colored_noise(
    channels: int, length: int, sample_rate: int, rng: np.random.Generator, alpha: float = 0.0
) -> np.ndarray:
    """Gaussian noise with power spectrum ``~ 1 / f**alpha``, unit RMS, ``(channels, length)``.

    White Gaussian noise is shaped in the frequency domain; the DC bin is zeroed and bins below
    20 Hz are held at the 20 Hz level so brown noise does not turn into a slow drift.
    """
    if length <= 0 or channels <= 0:
        raise ValueError(f"need positive channels and length, got {channels}, {length}")
    white = rng.standard_normal((channels, length))
    spectrum = np.fft.rfft(white, axis=-1)
    freqs = np.fft.rfftfreq(length, d=1.0 / sample_rate)
    shape = np.maximum(freqs, 20.0) ** (-alpha / 2.0)
    if length > 1:  # a single sample is all DC
        shape[0] = 0.0
    shaped = np.fft.irfft(spectrum * shape, n=length, axis=-1)
    rms = np.sqrt(np.mean(shaped**2, axis=-1, keepdims=True))
    return (shaped / np.maximum(rms, 1e-12)).astype(np.float32)


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave + g * noise`` with ``g`` such that ``10 log10(P_wave / P_(g*noise)) == snr_db``.

    Powers are means over all channels and samples. A silent ``wave`` has no defined SNR and
    is returned unchanged; a silent ``noise`` cannot reach any SNR and raises.
    """
    signal_power = power(wave)
    if signal_power == 0.0:
        return wave.copy()
    noise_power = power(noise)
    if noise_power == 0.0:
        raise ValueError("noise is silent: no gain reaches the requested SNR")
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (wave.astype(np.float64) + gain * noise).astype(np.float32)


def noise(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    snr_db: float,
    noise: np.ndarray | None = None,
    noise_sample_rate: int | None = None,
    color: str | float = "white",
) -> np.ndarray:
    """Add noise at ``snr_db``.

    Args:
        wave: ``(C, N)`` float32.
        noise: a recorded noise ``(C', M)`` or ``(M,)``; looped/cropped at a random offset and
            resampled from ``noise_sample_rate`` (default ``sample_rate``). A crop that is
            digital silence (noise files often have silent stretches) is redrawn at another
            offset, up to ``SILENT_CROP_RETRIES`` times, then replaced by synthetic noise of
            ``color``. ``None``: synthetic noise of ``color`` (a name in ``NOISE_COLORS`` or
            the exponent alpha itself).
    Returns:
        ``(C, N)`` float32.
    """
    wave = check_wave(wave, sample_rate, "noise")
    channels, length = wave.shape
    if isinstance(color, str) and color not in NOISE_COLORS:
        raise ValueError(f"unknown noise color {color!r}; known: {sorted(NOISE_COLORS)}")
    if noise is not None:
        for _ in range(1 + SILENT_CROP_RETRIES):
            crop = fit_length(noise, noise_sample_rate or sample_rate, length, sample_rate, rng)
            if power(crop) > SILENCE_POWER:
                return mix_at_snr(wave, match_channels(crop, channels), snr_db)
    alpha = NOISE_COLORS[color] if isinstance(color, str) else float(color)
    return mix_at_snr(wave, colored_noise(channels, length, sample_rate, rng, alpha), snr_db)


def babble(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    snr_db: float,
    talkers: Sequence[np.ndarray],
    talkers_sample_rate: int | None = None,
) -> np.ndarray:
    """Add babble: the sum of several speech signals, each at equal level, at ``snr_db``.

    Args:
        wave: ``(C, N)`` float32.
        talkers: speech signals ``(C', M)`` or ``(M,)``, all at ``talkers_sample_rate``
            (default ``sample_rate``); each is looped/cropped at its own random offset.
    """
    wave = check_wave(wave, sample_rate, "babble")
    if len(talkers) == 0:
        raise ValueError("babble needs at least one talker")
    channels, length = wave.shape
    mixture = np.zeros((channels, length), dtype=np.float64)
    for talker in talkers:
        piece = fit_length(talker, talkers_sample_rate or sample_rate, length, sample_rate, rng)
        piece = match_channels(piece, channels)
        level = power(piece)
        if level > 0.0:
            mixture += piece / np.sqrt(level)
    if not mixture.any():
        raise ValueError("babble: every talker is silent")
    return mix_at_snr(wave, mixture, snr_db)


def prepare_noise(spec: dict, draw: Draw) -> Prepared:
    """Recorded noise (a file from the chain's noise files, with ``file_prob``, or a fixed
    ``noise_file``) or synthetic coloured noise, at a drawn SNR."""
    file_prob = float(spec.pop("file_prob", 1.0))
    path = spec.pop("noise_file", None)
    snr_db = float(sample_param(required(spec, "snr_db", "noise"), draw.rng))
    color = spec.pop("color", "white")
    if spec:
        raise ValueError(f"noise: unknown parameters {sorted(spec)}")
    files = draw.resources.noise_files
    use_file = path is not None or (
        bool(files) and "color" not in draw.fixed and draw.rng.random() < file_prob
    )
    if use_file:
        if path is None:
            path = files[int(draw.rng.integers(0, len(files)))]
        noise_wave, noise_rate = draw.resources.load(Path(path))
        kwargs = {"snr_db": snr_db, "noise": noise_wave, "noise_sample_rate": noise_rate}
        return kwargs, {"snr_db": snr_db, "noise_file": str(path)}
    color = sample_param(color, draw.rng)
    return {"snr_db": snr_db, "color": color}, {"snr_db": snr_db, "color": color}


def prepare_babble(spec: dict, draw: Draw) -> Prepared:
    """``n_talkers`` drawn from the chain's babble (speech) files, at a drawn SNR."""
    files = draw.resources.babble_files
    if not files:
        raise ValueError("babble needs babble (speech) files")
    snr_db = float(sample_param(required(spec, "snr_db", "babble"), draw.rng))
    n_talkers = int(sample_param(spec.pop("n_talkers", 4), draw.rng))
    picks = draw.rng.integers(0, len(files), size=n_talkers)
    paths = [files[int(i)] for i in picks]
    loaded = [draw.resources.load(p) for p in paths]
    rate = loaded[0][1]
    # babble() takes talkers at one rate: bring all to the first file's.
    talkers = [resample(w, r, rate) for w, r in loaded]
    kwargs = {"snr_db": snr_db, "talkers": talkers, "talkers_sample_rate": rate}
    return kwargs, {"snr_db": snr_db, "talker_files": [str(p) for p in paths]}


def _has_talkers(resources: Resources, sample_rate: int) -> bool:
    return bool(resources.babble_files)


NOISE_ENTRY = DegradationEntry(noise, prepare_noise,
                               chain_keys=frozenset({"file_prob", "noise_file"}))
BABBLE_ENTRY = DegradationEntry(babble, prepare_babble, available=_has_talkers,
                                chain_keys=frozenset({"n_talkers"}))

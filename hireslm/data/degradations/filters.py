"""Band-limitation (IIR low-pass families, resampling through a lower rate) and EQ coloration.

Every filter here runs zero-phase (``sosfiltfilt``), so nothing is delayed and the output
stays sample-aligned with the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import signal

from hireslm.audio.resample import resample
from hireslm.data.degradations._common import check_wave
from hireslm.data.degradations.registry import (
    DegradationEntry,
    Draw,
    Prepared,
    Resources,
    draw_each,
    sample_param,
)

# name -> (scipy ftype, design kwargs). Ripple/attenuation values are typical of real
# anti-aliasing filters: 1 dB pass-band ripple, 40 dB stop-band.
FILTER_FAMILIES: dict[str, tuple[str, dict[str, float]]] = {
    "butterworth": ("butter", {}),
    "chebyshev1": ("cheby1", {"rp": 1.0}),
    "chebyshev2": ("cheby2", {"rs": 40.0}),
    "elliptic": ("ellip", {"rp": 1.0, "rs": 40.0}),
    "bessel": ("bessel", {}),
}
# Attenuation one filter pass reaches at the cutoff; zero-phase filtering doubles it to 60 dB,
# the same floor ``hireslm.audio.estimate_bandwidth`` uses to find a recording's band edge.
STOPBAND_DB_PER_PASS = 30.0
EQ_BAND_TYPES = ("peaking", "lowshelf", "highshelf")


def _stop_ratio(ftype: str, order: int, design: Mapping[str, float]) -> float:
    """For the analog prototype with edge 1 rad/s: the frequency beyond which the response
    stays below ``-STOPBAND_DB_PER_PASS`` dB."""
    zeros, poles, gain = signal.iirfilter(
        order, 1.0, btype="low", analog=True, ftype=ftype, output="zpk", **design
    )
    omega = np.logspace(-2, 4, 24000)
    _, response = signal.freqs_zpk(zeros, poles, gain, worN=omega)
    level_db = 20 * np.log10(np.abs(response) + 1e-300)
    above = np.nonzero(level_db > -STOPBAND_DB_PER_PASS)[0]
    if above.size == 0:
        return float(omega[0])
    if above[-1] + 1 >= omega.size:
        raise ValueError(f"{ftype} order {order} never reaches -{STOPBAND_DB_PER_PASS} dB")
    return float(omega[above[-1] + 1])


def lowpass_sos(cutoff_hz: float, sample_rate: int, family: str, order: int) -> np.ndarray:
    """Second-order sections of a low-pass whose zero-phase response is -60 dB at ``cutoff_hz``.

    ``cutoff_hz`` is where the band *ends* (as a bandwidth estimate would see it), so every
    family and order removes what lies above it; low orders and gentle families reach that
    by starting their roll-off earlier. The design edge is found on the analog prototype and
    moved through the bilinear transform's frequency warping, which ``iirfilter`` pre-warps.

    Returns:
        ``(n_sections, 6)`` float64.
    """
    if family not in FILTER_FAMILIES:
        raise ValueError(f"unknown filter family {family!r}; known: {sorted(FILTER_FAMILIES)}")
    if not 1 <= int(order) <= 24:
        raise ValueError(f"filter order must be in 1..24, got {order}")
    nyquist = sample_rate / 2.0
    if not 0.0 < cutoff_hz < nyquist:
        raise ValueError(f"cutoff_hz must be in (0, {nyquist:g}) at {sample_rate} Hz")
    ftype, design = FILTER_FAMILIES[family]
    ratio = _stop_ratio(ftype, int(order), design)
    warped = np.tan(np.pi * cutoff_hz / sample_rate) / ratio
    edge_hz = sample_rate / np.pi * np.arctan(warped)
    edge_hz = min(edge_hz, 0.999 * nyquist)
    return signal.iirfilter(
        int(order), edge_hz, btype="low", ftype=ftype, output="sos", fs=sample_rate, **design
    )


def lowpass(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    cutoff_hz: float,
    family: str = "butterworth",
    order: int = 8,
) -> np.ndarray:
    """Zero-phase IIR low-pass ending at ``cutoff_hz`` (-60 dB there); ``(C, N)`` -> ``(C, N)``.

    ``rng`` is unused: the filter is fully set by its parameters.
    """
    wave = check_wave(wave, sample_rate, "lowpass")
    sos = lowpass_sos(cutoff_hz, sample_rate, family, order)
    return zero_phase(sos, wave)


def zero_phase(sos: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """``sosfiltfilt`` along the last axis of ``(C, N)``, float32 out; short inputs get a
    shorter edge padding instead of an error."""
    padlen = min(3 * (2 * len(sos) + 1), wave.shape[-1] - 1)
    out = signal.sosfiltfilt(sos, wave.astype(np.float64), axis=-1, padlen=padlen)
    return out.astype(np.float32)


def resample_through(
    wave: np.ndarray, sample_rate: int, rng: np.random.Generator, *, low_rate: int
) -> np.ndarray:
    """Down-sample to ``low_rate`` and back (soxr, linear phase, no delay): a steep band edge
    just below ``low_rate / 2``, as a file once stored at that rate has. ``(C, N)`` -> ``(C, N)``.
    """
    wave = check_wave(wave, sample_rate, "resample")
    if not 0 < int(low_rate) < sample_rate:
        raise ValueError(f"low_rate must be in (0, {sample_rate}), got {low_rate}")
    length = wave.shape[-1]
    out = resample(resample(wave, sample_rate, int(low_rate)), int(low_rate), sample_rate)
    if out.shape[-1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[-1])))
    return np.ascontiguousarray(out[:, :length], dtype=np.float32)


def biquad_sos(
    kind: str, freq_hz: float, gain_db: float, q: float, sample_rate: int
) -> np.ndarray:
    """One RBJ-cookbook biquad (peaking or shelving) as a ``(1, 6)`` second-order section."""
    if kind not in EQ_BAND_TYPES:
        raise ValueError(f"unknown EQ band type {kind!r}; known: {EQ_BAND_TYPES}")
    if not 0.0 < freq_hz < sample_rate / 2.0 or q <= 0.0:
        raise ValueError(f"EQ band needs 0 < freq_hz < {sample_rate / 2:g} and q > 0")
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq_hz / sample_rate
    cos_w0, alpha = np.cos(w0), np.sin(w0) / (2.0 * q)
    if kind == "peaking":
        b = [1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp]
    else:
        sign = 1.0 if kind == "lowshelf" else -1.0
        root = 2.0 * np.sqrt(amp) * alpha
        b = [
            amp * ((amp + 1) - sign * (amp - 1) * cos_w0 + root),
            sign * 2 * amp * ((amp - 1) - sign * (amp + 1) * cos_w0),
            amp * ((amp + 1) - sign * (amp - 1) * cos_w0 - root),
        ]
        a = [
            (amp + 1) + sign * (amp - 1) * cos_w0 + root,
            -sign * 2 * ((amp - 1) + sign * (amp + 1) * cos_w0),
            (amp + 1) + sign * (amp - 1) * cos_w0 - root,
        ]
    b_arr, a_arr = np.asarray(b) / a[0], np.asarray(a) / a[0]
    return np.concatenate([b_arr, a_arr])[None, :]


def random_eq_bands(
    sample_rate: int,
    rng: np.random.Generator,
    n_bands: int = 3,
    max_gain_db: float = 9.0,
    min_freq_hz: float = 60.0,
    max_freq_hz: float = 12000.0,
) -> list[dict]:
    """Draw ``n_bands`` bands: type, log-uniform frequency, uniform gain, log-uniform Q."""
    top = min(max_freq_hz, 0.45 * sample_rate)
    bands = []
    for _ in range(int(n_bands)):
        bands.append({
            "type": str(rng.choice(EQ_BAND_TYPES)),
            "freq_hz": float(np.exp(rng.uniform(np.log(min_freq_hz), np.log(top)))),
            "gain_db": float(rng.uniform(-max_gain_db, max_gain_db)),
            "q": float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
        })
    return bands


def eq(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    bands: Sequence[Mapping] | None = None,
    n_bands: int = 3,
    max_gain_db: float = 9.0,
) -> np.ndarray:
    """Microphone/room coloration by a cascade of peaking and shelving biquads, zero-phase.

    Args:
        wave: ``(C, N)`` float32.
        bands: ``[{"type", "freq_hz", "gain_db", "q"}, ...]``; ``None`` draws ``n_bands`` random
            bands of at most ``max_gain_db`` from ``rng``.
    Each band's ``gain_db`` is the gain of the zero-phase result: the biquads are designed with
    half of it, since filtering forward and backward squares the response.
    """
    wave = check_wave(wave, sample_rate, "eq")
    if bands is None:
        bands = random_eq_bands(sample_rate, rng, n_bands, max_gain_db)
    if len(bands) == 0:
        return wave.copy()
    sos = np.concatenate([
        biquad_sos(b["type"], b["freq_hz"], b["gain_db"] / 2.0, b["q"], sample_rate)
        for b in bands
    ])
    return zero_phase(sos, wave)


# The band edge must stay clear of Nyquist for a filter to mean anything.
MAX_CUTOFF_FRACTION = 0.45


def prepare_eq(spec: dict, draw: Draw) -> Prepared:
    """Fixed ``bands``, or ``n_bands`` random ones of up to ``max_gain_db``."""
    n_bands = sample_param(spec.pop("n_bands", 3), draw.rng)
    max_gain_db = sample_param(spec.pop("max_gain_db", 9.0), draw.rng)
    bands = spec.pop("bands", None) or random_eq_bands(draw.sample_rate, draw.rng, n_bands,
                                                       max_gain_db)
    return {"bands": bands}, {"bands": bands}


def prepare_lowpass(spec: dict, draw: Draw) -> Prepared | None:
    """Drawn parameters, the cutoff kept below ``MAX_CUTOFF_FRACTION`` of the rate."""
    kwargs, _ = draw_each(spec, draw)
    if "cutoff_hz" in kwargs:
        kwargs["cutoff_hz"] = min(kwargs["cutoff_hz"], MAX_CUTOFF_FRACTION * draw.sample_rate)
    return kwargs, dict(kwargs)


def prepare_resample(spec: dict, draw: Draw) -> Prepared | None:
    """Drawn parameters; None when the drawn rate is not below the input's."""
    prepared = draw_each(spec, draw)
    return None if prepared[0].get("low_rate", 0) >= draw.sample_rate else prepared


def _above_8k(resources: Resources, sample_rate: int) -> bool:
    return sample_rate > 8000


EQ_ENTRY = DegradationEntry(eq, prepare_eq)
LOWPASS_ENTRY = DegradationEntry(lowpass, prepare_lowpass)
RESAMPLE_ENTRY = DegradationEntry(resample_through, prepare_resample, available=_above_8k)

"""Intrusive quality metrics of a restored signal against its clean reference.

Every function takes sample-aligned mono signals of equal length, ``(N,)`` float arrays, and
returns a float. Where a metric is undefined for the inputs (silence, too little speech) it
raises ``MetricUndefined`` with the reason; callers record NaN and that reason.

- ``log_spectral_distance``: at the signals' own rate (48 kHz here), so it sees the whole band.
- ``bwe_log_spectral_distances``: LSD, LSD-HF and LSD-LF split at a cutoff, as the speech
  band-extension papers compute them (NU-Wave 2, AP-BWE: n_fft 2048, hop 512).
- ``si_sdr``: scale-invariant SDR (Le Roux et al., 2019), in dB.
- ``pesq_wb``: ITU-T P.862.2 wide-band PESQ (``pesq`` package), 16 kHz input only.
- ``estoi``: extended STOI (``pystoi``), computed at 16 kHz here (pystoi works at 10 kHz).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from hireslm.audio.io import is_silent

PESQ_RATE = 16000
LSD_N_FFT = 2048  # the project's front end: n_fft 2048, hop 480 at 48 kHz
LSD_HOP = 480
LSD_EPS = 1e-8  # on |STFT|^2 of unnormalised Hann frames: below a 16-bit noise floor
BWE_N_FFT = 2048  # NU-Wave 2 and AP-BWE at 48 kHz
BWE_HOP = 512
SI_SDR_EPS = 1e-12


class MetricUndefined(ValueError):
    """A metric has no meaningful value for these signals; the message says why."""


def check_pair(reference: np.ndarray, estimate: np.ndarray) -> None:
    """Raise ``ValueError`` unless both are 1-D and of equal length,
    ``MetricUndefined`` when either is digital silence."""
    if reference.ndim != 1 or estimate.ndim != 1:
        raise ValueError(
            f"metrics take mono (N,) signals, got {reference.shape} and {estimate.shape}"
        )
    if reference.shape != estimate.shape:
        raise ValueError(
            f"signals must be sample-aligned and equally long: {reference.size} reference "
            f"samples vs {estimate.size} estimate samples"
        )
    if is_silent(reference):
        raise MetricUndefined("reference is digital silence")
    if is_silent(estimate):
        raise MetricUndefined("estimate is digital silence")


def log_power_spectrogram(
    wave: np.ndarray, n_fft: int = LSD_N_FFT, hop: int = LSD_HOP, *, clamp: bool = False
) -> np.ndarray:
    """``log10(|STFT|^2 + eps)`` of a Hann-windowed, centred (reflect-padded) STFT.

    The periodic Hann window, centring and reflect padding of ``torch.stft``'s defaults.

    Args:
        wave: ``(N,)``.
        clamp: ``log10(max(|STFT|^2, eps))`` instead (the band-extension papers' floor).
    Returns:
        ``(n_fft // 2 + 1, T)`` float64, ``T = 1 + N // hop``.
    """
    wave = np.asarray(wave, dtype=np.float64)
    pad = n_fft // 2
    mode = "reflect" if wave.size > pad else "constant"
    padded = np.pad(wave, (pad, pad), mode=mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spectrum = np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=-1)
    power = np.abs(spectrum.T) ** 2
    return np.log10(np.maximum(power, LSD_EPS) if clamp else power + LSD_EPS)


def log_spectral_distance(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    *,
    min_hz: float = 0.0,
    n_fft: int = LSD_N_FFT,
    hop: int = LSD_HOP,
) -> float:
    """LSD = mean over frames of ``sqrt(mean over bins of (log10 P_ref - log10 P_est)^2)``.

    Bins from ``min_hz`` up to Nyquist count (``min_hz=4000`` gives the high-band LSD). Every
    frame counts, silent ones too (as in the speech super-resolution literature). 0 for
    identical signals; lower is better.

    Args:
        reference, estimate: ``(N,)`` at ``sample_rate``.
    """
    return log_spectral_distances(reference, estimate, sample_rate, (min_hz,), n_fft, hop)[0]


def log_spectral_distances(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    min_hz: Sequence[float],
    n_fft: int = LSD_N_FFT,
    hop: int = LSD_HOP,
) -> tuple[float, ...]:
    """``log_spectral_distance`` for several lower band edges from one pair of STFTs."""
    check_pair(reference, estimate)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    diff = log_power_spectrogram(reference, n_fft, hop) - log_power_spectrogram(
        estimate, n_fft, hop
    )
    distances = []
    for edge in min_hz:
        band = freqs >= edge
        if not band.any():
            raise ValueError(f"min_hz {edge} is above Nyquist ({sample_rate / 2} Hz)")
        distances.append(float(np.mean(np.sqrt(np.mean(diff[band] ** 2, axis=0)))))
    return tuple(distances)


def bwe_split_bin(cutoff_hz: float, sample_rate: int, n_fft: int = BWE_N_FFT) -> int:
    """The first bin of the high band: ``int((n_fft // 2 + 1) * 2 * cutoff_hz / sample_rate)``,
    NU-Wave 2's ``hf = int(1025 * (sr / 48000))`` for an input at rate ``sr``
    (bin 341, 7992 Hz, for an 8 kHz cutoff at 48 kHz)."""
    split = int((n_fft // 2 + 1) * 2 * cutoff_hz / sample_rate)
    if not 0 < split < n_fft // 2 + 1:
        raise ValueError(f"cutoff {cutoff_hz} Hz leaves no bins on one side of the split "
                         f"(0 < cutoff < {sample_rate / 2:g} Hz)")
    return split


def bwe_log_spectral_distances(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    cutoff_hz: float | None = None,
    *,
    n_fft: int = BWE_N_FFT,
    hop: int = BWE_HOP,
) -> tuple[float, float, float]:
    """LSD, LSD-HF and LSD-LF as NU-Wave 2 (Han & Lee 2022) and AP-BWE (Lu et al. 2024)
    compute them at 48 kHz.

    ``L = log10(max(|STFT|^2, 1e-8))`` (periodic Hann, n_fft 2048, hop 512, centred,
    reflect-padded); LSD = mean over frames of ``sqrt(mean over bins of (L_ref - L_est)^2)``,
    every frame counted. LSD-HF takes the bins from ``bwe_split_bin(cutoff_hz)`` up, LSD-LF
    those below. 0 for identical signals; lower is better.

    Args:
        reference, estimate: ``(N,)`` at ``sample_rate``.
        cutoff_hz: the input's cutoff; None gives ``(LSD, nan, nan)``.
    Raises:
        MetricUndefined: silence. ValueError: a cutoff outside (0, Nyquist).
    """
    check_pair(reference, estimate)
    split = None if cutoff_hz is None else bwe_split_bin(cutoff_hz, sample_rate, n_fft)
    diff = (log_power_spectrogram(reference, n_fft, hop, clamp=True)
            - log_power_spectrogram(estimate, n_fft, hop, clamp=True)) ** 2  # (F, T)

    def distance(bins: slice) -> float:
        return float(np.mean(np.sqrt(np.mean(diff[bins], axis=0))))

    if split is None:
        return distance(slice(None)), float("nan"), float("nan")
    return distance(slice(None)), distance(slice(split, None)), distance(slice(None, split))


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (both signals made zero-mean).

    Invariant to the estimate's gain; very high (> 100 dB) for identical signals.

    Args:
        reference, estimate: ``(N,)``.
    """
    check_pair(reference, estimate)
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    ref, est = ref - ref.mean(), est - est.mean()
    scale = np.dot(est, ref) / (np.dot(ref, ref) + SI_SDR_EPS)
    target = scale * ref
    error = est - target
    return float(10 * np.log10((np.dot(target, target) + SI_SDR_EPS)
                               / (np.dot(error, error) + SI_SDR_EPS)))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = PESQ_RATE) -> float:
    """Wide-band PESQ MOS-LQO (about 1.0 to 4.64), from 16 kHz signals.

    Args:
        reference, estimate: ``(N,)`` at 16 kHz.
    Raises:
        MetricUndefined: silence, or PESQ found no utterance / too short a signal.
    """
    from pesq import PesqError, pesq

    if sample_rate != PESQ_RATE:
        raise ValueError(f"PESQ-WB takes {PESQ_RATE} Hz signals, got {sample_rate} Hz")
    check_pair(reference, estimate)
    try:
        return float(pesq(PESQ_RATE, reference.astype(np.float32), estimate.astype(np.float32),
                          "wb"))
    except PesqError as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise MetricUndefined(f"PESQ failed: {detail}") from exc


def estoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = PESQ_RATE) -> float:
    """Extended STOI (0..1, higher is better).

    pystoi drops the reference's silent frames and needs 30 frames (384 ms) of speech left;
    with fewer it would return 1e-5, which is reported here as undefined instead.

    Args:
        reference, estimate: ``(N,)`` at ``sample_rate``.
    """
    from pystoi import stoi

    check_pair(reference, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference.astype(np.float64), estimate.astype(np.float64),
                           sample_rate, extended=True))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise MetricUndefined("ESTOI needs at least 384 ms of non-silent reference speech")
    return value

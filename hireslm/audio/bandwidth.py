"""Effective bandwidth: the highest frequency that carries speech energy."""

from __future__ import annotations

import numpy as np


def estimate_bandwidth(
    wave: np.ndarray,
    sample_rate: int,
    *,
    floor_db: float = 60.0,
    n_fft: int = 2048,
    active_db: float = 30.0,
) -> float:
    """Highest frequency (Hz) whose averaged spectrum of active frames is within ``floor_db``
    of the spectrum's peak.

    A 99%-energy frequency cannot tell full-band from band-limited speech (speech energy sits
    below 10 kHz either way); the -60 dB edge of the long-term spectrum can, since low-pass
    filters and codecs leave a steep cliff there. Only frames within ``active_db`` of the
    loudest frame are averaged, so pauses and noise floors do not blur the edge.

    Args:
        wave: ``(C, N)`` or ``(N,)``; channels are averaged.
    Returns:
        bandwidth in Hz (0.0 for silence).
    """
    mono = wave.mean(axis=0) if wave.ndim == 2 else wave
    mono = mono.astype(np.float64)
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    from scipy import signal  # here: importing it takes ~0.9 s

    freqs, _, spec = signal.stft(mono, fs=sample_rate, nperseg=n_fft, noverlap=n_fft * 3 // 4)
    power = np.abs(spec) ** 2  # (F, T)
    frame_energy = power.sum(axis=0)
    if frame_energy.max() <= 0:
        return 0.0
    active = frame_energy >= frame_energy.max() * 10 ** (-active_db / 10)
    spectrum = power[:, active].mean(axis=1)
    spectrum_db = 10 * np.log10(spectrum + 1e-30)
    # Ignore DC and the lowest bins, where hum or offsets can dominate the peak.
    usable = freqs >= 50.0
    peak_db = spectrum_db[usable].max()
    above = np.nonzero(usable & (spectrum_db >= peak_db - floor_db))[0]
    return float(freqs[above[-1]]) if above.size else 0.0

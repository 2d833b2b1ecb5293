"""Streaming STFT framing: blocks of any size in, power spectra of whole frames out.

Only frames that lie entirely inside the signal are taken (no zero padding at the ends):
recordings often start or end mid-sound, and a zero-padded edge frame turns that step into
broadband energy that would read as full bandwidth. Samples that do not yet fill a frame are
carried over to the next block, so the frames do not depend on how the stream is cut.
"""

from __future__ import annotations

import numpy as np

# At 48 kHz: 2048-point frames (43 ms), hop 512 (10.7 ms); other rates keep the durations.
REFERENCE_RATE = 48000
REFERENCE_N_FFT = 2048
# Frames are transformed this many at a time, so one huge block does not need a huge buffer.
FRAMES_PER_CHUNK = 128


def frame_settings(sample_rate: int) -> tuple[int, int]:
    """``(n_fft, hop)`` for ``sample_rate``: frames of 2048 samples' duration at 48 kHz
    (even, not necessarily a power of two, so every rate sees the same 43 ms), hop a quarter.
    """
    n_fft = max(2 * int(round(REFERENCE_N_FFT / 2 * sample_rate / REFERENCE_RATE)), 64)
    return n_fft, n_fft // 4


def power_weights(n_fft: int, window: np.ndarray) -> np.ndarray:
    """Per-bin weights that turn ``|rfft(x * w)|**2`` into a split of the frame's
    window-weighted mean square: the weighted bins sum to ``sum((x w)^2) / sum(w^2)``.

    Returns:
        ``(n_fft // 2 + 1,)`` float64.
    """
    weights = np.full(n_fft // 2 + 1, 2.0)
    weights[0] = 1.0
    weights[-1] = 1.0  # n_fft is even: the last bin is Nyquist, counted once
    return weights / (n_fft * float(np.sum(window**2)))


class Framer:
    """Cuts a ``(C, n)`` stream into Hann-windowed frames and returns their power spectra.

    ``push(block)`` returns the power of every frame completed by the block,
    ``(C, T, F)`` float64 with ``F = n_fft // 2 + 1``, calibrated so that a frame's bins sum
    to its mean square (``power_weights``). ``finish()`` returns the one short frame of a
    signal shorter than ``n_fft`` (windowed with its own length), else nothing.
    """

    def __init__(self, channels: int, n_fft: int, hop: int) -> None:
        self.channels = channels
        self.n_fft = n_fft
        self.hop = hop
        self.window = periodic_hann(n_fft)
        self.weights = power_weights(n_fft, self.window)
        self._carry = np.zeros((channels, 0))
        self.frames = 0

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add ``(C, n)`` samples; returns ``(C, T, F)`` power of the frames now complete."""
        buffer = np.concatenate([self._carry, block.astype(np.float64)], axis=1)
        if buffer.shape[1] < self.n_fft:
            self._carry = buffer
            return np.zeros((self.channels, 0, self.bins))
        count = (buffer.shape[1] - self.n_fft) // self.hop + 1
        pieces = []
        for start in range(0, count, FRAMES_PER_CHUNK):
            stop = min(start + FRAMES_PER_CHUNK, count)
            segment = buffer[:, start * self.hop : (stop - 1) * self.hop + self.n_fft]
            frames = np.lib.stride_tricks.sliding_window_view(segment, self.n_fft, axis=1)
            spectra = np.fft.rfft(frames[:, :: self.hop] * self.window, axis=-1)
            pieces.append((spectra.real**2 + spectra.imag**2) * self.weights)
        self._carry = buffer[:, count * self.hop :]
        self.frames += count
        return np.concatenate(pieces, axis=1)

    def finish(self) -> np.ndarray:
        """``(C, 0 or 1, F)``: a frame for a signal too short to fill one, else none."""
        length = self._carry.shape[1]
        if self.frames > 0 or length < 2:
            return np.zeros((self.channels, 0, self.bins))
        window = periodic_hann(length)
        spectra = np.fft.rfft(self._carry * window, n=self.n_fft, axis=-1)
        self.frames = 1
        power = (spectra.real**2 + spectra.imag**2) * power_weights(self.n_fft, window)
        return power[:, None, :]


def periodic_hann(n: int) -> np.ndarray:
    """The periodic ("DFT-even") Hann window ``(n,)``, as ``scipy.signal.get_window("hann", n)``
    gives it, without importing scipy.signal (about a second of start-up)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)

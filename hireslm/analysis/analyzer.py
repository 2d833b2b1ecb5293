"""``SignalAnalyzer``: per-channel measurements of a recording, streamed in bounded memory."""

from __future__ import annotations

import numpy as np

from hireslm.analysis.clipping import ClippingMeter, SilenceMeter
from hireslm.analysis.diagnose import DiagnosisThresholds, with_flags
from hireslm.analysis.edges import cutoff_hz, edge_drop_db, hole_share, is_perceptual_codec
from hireslm.analysis.framing import Framer, frame_settings
from hireslm.analysis.levels import LevelMeter
from hireslm.analysis.result import ChannelAnalysis
from hireslm.analysis.reverb import DecayMeter
from hireslm.analysis.spectrum import SpectrumMeter
from hireslm.audio.errors import NonFiniteAudioError

SILENCE_RUN_S = 0.005  # shorter near-zero runs are zero crossings and quiet samples
# Frame levels leave out the bins below this: a DC offset (common in cheap recorders) would
# otherwise read as a noise floor. Hann leakage of DC reaches one bin only.
LEVEL_LOW_HZ = 40.0
# A cliff above this share of the native Nyquist is the file's own rate limit (resamplers'
# anti-alias filters pass 0.91-0.95 of it), not a codec's cut.
NATIVE_EDGE_RATIO = 0.9


class SignalAnalyzer:
    """Feed ``(C, n)`` float blocks of any size with ``update``; read ``result()`` at the end.

    The result does not depend on how the stream is cut into blocks. Spectral measures
    (bandwidth, edge, codec holes, noise, reverberation) use the ``sample_rate`` stream.
    Clipping and digital silence are sample-domain measures that resampling blurs (a plateau
    rings), so with ``native_samples=True`` they take only the blocks given to
    ``update_native``: the file's own samples at ``native_sample_rate``.

    Args:
        native_sample_rate: the file's own rate (default ``sample_rate``); a cliff at its
            Nyquist is the rate's limit, not a codec's cut.
        subtype: the file's soundfile subtype (``info.subtype``), evidence of a codec.
        active_db: frames within this of the loudest make the long-term spectrum.
        floor_db: the bandwidth is where that spectrum falls this far below its peak.
        cliff_db: an edge falling at least this far across 1/3 octave is a cliff.
        codec_holes: a cliff with at least this share of in-band holes is a codec's cut.
    """

    def __init__(
        self, sample_rate: int, channels: int, *, native_sample_rate: int | None = None,
        subtype: str | None = None, native_samples: bool = False, active_db: float = 30.0,
        floor_db: float = 60.0, cliff_db: float = 15.0, codec_holes: float = 0.03,
    ) -> None:
        if channels < 1 or sample_rate <= 0:
            raise ValueError(f"need channels >= 1 and a positive rate, got {channels}, "
                             f"{sample_rate}")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.native_sample_rate = int(native_sample_rate or sample_rate)
        self.subtype = subtype
        self.native_samples = native_samples
        self.floor_db = floor_db
        self.cliff_db = cliff_db
        self.codec_holes = codec_holes
        n_fft, hop = frame_settings(self.sample_rate)
        self._framer = Framer(self.channels, n_fft, hop)
        freqs = np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate)
        self._level_bin = max(2, int(np.searchsorted(freqs, LEVEL_LOW_HZ)))
        self._spectra = [SpectrumMeter(self.sample_rate, n_fft, active_db=active_db)
                         for _ in range(self.channels)]
        self._levels = [LevelMeter() for _ in range(self.channels)]
        self._decays = [DecayMeter(freqs, self.sample_rate / hop) for _ in range(self.channels)]
        sample_rate_of_samples = self.native_sample_rate if native_samples else self.sample_rate
        self._clipping = ClippingMeter(self.channels)
        self._silence = SilenceMeter(
            self.channels, min_run=int(round(SILENCE_RUN_S * sample_rate_of_samples))
        )
        self.samples = 0

    def _check(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim == 1:
            block = block[None, :]
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, n) blocks, got {block.shape}")
        if not np.isfinite(block).all():
            raise NonFiniteAudioError("NaN or infinite samples")
        return block

    def update(self, block: np.ndarray) -> None:
        """Add ``(C, n)`` samples at ``sample_rate`` (``(n,)`` for one channel)."""
        block = self._check(block)
        self.samples += block.shape[1]
        self._frames(self._framer.push(block))
        if not self.native_samples:
            self._sample_meters(block)

    def update_native(self, block: np.ndarray) -> None:
        """Add ``(C, n)`` samples at ``native_sample_rate`` (used with ``native_samples``)."""
        if not self.native_samples:
            raise RuntimeError("update_native needs SignalAnalyzer(..., native_samples=True)")
        self._sample_meters(self._check(block))

    def _sample_meters(self, block: np.ndarray) -> None:
        self._clipping.update(block)
        self._silence.update(block)

    def _frames(self, power: np.ndarray) -> None:
        """``power`` ``(C, T, F)``."""
        if power.shape[1] == 0:
            return
        energy = power[:, :, self._level_bin :].sum(axis=2)  # (C, T) mean squares, DC left out
        for channel in range(self.channels):
            self._spectra[channel].update(power[channel], energy[channel])
            self._levels[channel].update(energy[channel])
            self._decays[channel].update(power[channel])

    def result(self, thresholds: DiagnosisThresholds | None = None) -> list[ChannelAnalysis]:
        """One ``ChannelAnalysis`` per channel, flags set with ``thresholds``. Can be called
        more than once; the short frame of a signal shorter than one frame is added here."""
        tail = self._framer.finish()
        if tail.shape[1]:
            self._frames(tail)
        clips, silences = self._clipping.result(), self._silence.result()
        return [with_flags(self._channel(c, clips[c], silences[c]), thresholds)
                for c in range(self.channels)]

    def _channel(self, channel: int, clip, silence) -> ChannelAnalysis:
        spectrum = self._spectra[channel].result()
        noise = self._levels[channel].result()
        decay = self._decays[channel].result()
        bandwidth, edge, drop, codec_cut, holes = 0.0, None, None, None, 0.0
        lossy = is_perceptual_codec(self.subtype)
        if spectrum is not None:
            bandwidth = cutoff_hz(spectrum, floor_db=self.floor_db)
            drop = edge_drop_db(spectrum, bandwidth, nyquist=self.sample_rate / 2)
            if drop is not None:
                edge = "cliff" if drop >= self.cliff_db else "gradual"
            holes = hole_share(spectrum, bandwidth)
            below_native = bandwidth < NATIVE_EDGE_RATIO * self.native_sample_rate / 2
            if edge == "cliff" and below_native and (lossy or holes >= self.codec_holes):
                codec_cut = bandwidth
        return ChannelAnalysis(
            channel=channel,
            peak=clip.peak,
            bandwidth_hz=bandwidth,
            edge=edge,
            edge_drop_db=drop,
            codec_cutoff_hz=codec_cut,
            codec_holes=holes,
            lossy_format=lossy,
            noise_floor_db=None if noise is None else noise.noise_floor_db,
            speech_level_db=None if noise is None else noise.speech_level_db,
            snr_db=None if noise is None else noise.snr_db,
            clipped_fraction=clip.clipped_fraction,
            rt60_s=decay.rt60_s,
            decays=decay.decays,
            silence_fraction=silence.silence_fraction,
            silent=silence.silent,
        )


def analyse_wave(wave: np.ndarray, sample_rate: int, **kwargs) -> list[ChannelAnalysis]:
    """Analyse a whole ``(C, N)`` or ``(N,)`` wave; ``kwargs`` go to ``SignalAnalyzer``."""
    wave = np.asarray(wave)
    if wave.ndim == 1:
        wave = wave[None, :]
    analyzer = SignalAnalyzer(sample_rate, wave.shape[0], **kwargs)
    analyzer.update(wave)
    return analyzer.result()

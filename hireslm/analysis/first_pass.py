"""The first pass over an input: decode it once, check it and measure it.

Length at 48 kHz, loudness, peak, finiteness, and each channel's analysis (bandwidth,
noise, room, clipping, codec, silence). It streams, so memory is bounded by a block
whatever the input's length, and an input that is corrupt halfway through fails before any
output is written. Restoration and ``hireslm analyze`` both start here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hireslm.analysis.analyzer import SignalAnalyzer
from hireslm.analysis.diagnose import DiagnosisThresholds
from hireslm.analysis.result import ChannelAnalysis
from hireslm.audio.errors import EmptyAudioError, NonFiniteAudioError, UnsupportedAudioError
from hireslm.audio.io import SILENCE_THRESHOLD, check_sample_rate
from hireslm.audio.loudness import LoudnessMeter
from hireslm.audio.source import AudioSource, blocks_at
from hireslm.repair import ClipLevelMeter, ClipLevels, detect_dropouts

# Float files may go past full scale, but not by 60 dB: such samples are a mistake (a wrong
# scale factor), and restoring them would overflow the level arithmetic.
MAX_PEAK = 1000.0


@dataclass(frozen=True)
class InputAnalysis:
    """What the first pass learns about an input."""

    sample_rate: int
    channels: int
    frames: int
    frames_48k: int
    loudness_lufs: float
    peak: float
    subtype: str | None = None
    channel_analysis: tuple[ChannelAnalysis, ...] = ()
    warnings: tuple[str, ...] = ()  # what the user should know about the file itself
    clip_levels: ClipLevels | None = None  # per channel and sign, on the file's own samples
    dropouts: int = 0  # short gaps inside speech found (``hireslm.repair``), all channels

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def is_silent(self) -> bool:
        return self.peak < SILENCE_THRESHOLD


def analyse_source(
    source: AudioSource, sample_rate: int = 48000,
    thresholds: DiagnosisThresholds | None = None,
) -> InputAnalysis:
    """Decode the whole source once, in blocks, and measure it (each channel's damage flagged
    by ``thresholds``, default ``DiagnosisThresholds()``).

    Raises:
        UnreadableAudioError (corrupt, unsupported), EmptyAudioError, NonFiniteAudioError,
        UnsupportedAudioError (a rate outside 8-192 kHz, samples 60 dB past full scale).
    """
    name, info = source.name, source.info
    check_sample_rate(info.sample_rate, source=name)
    if info.frames <= 0:
        raise EmptyAudioError(f"{name}: no samples")
    meter = LoudnessMeter(sample_rate, info.channels)
    # Clipping and digital silence are read off the file's own samples: resampling turns a
    # clipped plateau into ringing that no longer looks clipped.
    analyzer = SignalAnalyzer(sample_rate, info.channels, native_sample_rate=info.sample_rate,
                              subtype=info.subtype, native_samples=True)
    clip_meter = ClipLevelMeter(info.channels)
    dropouts = 0

    def check_native(block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            raise NonFiniteAudioError(f"{name}: NaN or infinite samples")
        if block.size and float(np.abs(block).max()) > MAX_PEAK:
            raise UnsupportedAudioError(
                f"{name}: samples reach {float(np.abs(block).max()):.3g}, over 60 dB past full "
                "scale: not a recording's level (a wrong scale factor?); rescale the file")
        analyzer.update_native(block)
        clip_meter.update(block)
        nonlocal dropouts  # a gap across two blocks is missed: this only says whether to look
        dropouts += len(detect_dropouts(block, info.sample_rate).start)

    peak = 0.0
    count = 0
    for block in blocks_at(source, sample_rate, on_native_block=check_native):
        meter.update(block)
        analyzer.update(block)
        peak = max(peak, float(np.abs(block).max()))
        count += block.shape[1]
    return InputAnalysis(
        sample_rate=info.sample_rate,
        channels=info.channels,
        frames=info.frames,
        frames_48k=count,
        loudness_lufs=meter.integrated(),
        peak=peak,
        subtype=info.subtype,
        channel_analysis=tuple(analyzer.result(thresholds)),
        warnings=source.warnings(),
        clip_levels=clip_meter.result(),
        dropouts=dropouts,
    )

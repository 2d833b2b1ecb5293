"""Reading an input as a stream of 48 kHz blocks, and the first pass that checks it.

A file is read twice: once to measure it (length at 48 kHz, loudness, peak, finiteness, and
each channel's analysis: bandwidth, noise, room, clipping, codec, silence) and once to
restore it. Both passes stream, so memory is bounded by a block whatever the file's
length, and a file that is corrupt halfway through fails before any output is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import soxr

from hireslm.analysis import ChannelAnalysis, DiagnosisThresholds, SignalAnalyzer
from hireslm.audio import LoudnessMeter, audio_info, iter_audio_blocks
from hireslm.audio.errors import EmptyAudioError, NonFiniteAudioError, UnsupportedAudioError
from hireslm.audio.io import SILENCE_THRESHOLD, check_sample_rate, header_shortfall

BLOCK_SECONDS = 10.0
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

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def is_silent(self) -> bool:
        return self.peak < SILENCE_THRESHOLD


def output_length(frames: int, sr_in: int, sr_out: int) -> int:
    """Samples at ``sr_out`` that span exactly the input's duration."""
    return int(round(frames * sr_out / sr_in))


def stream_resampled(
    blocks: Iterator[np.ndarray], sr_in: int, sr_out: int, channels: int, total_out: int
) -> Iterator[np.ndarray]:
    """Resample a stream of ``(C, n)`` blocks; the output adds up to exactly ``total_out``."""
    resampler = None if sr_in == sr_out else soxr.ResampleStream(
        sr_in, sr_out, channels, dtype="float32", quality="VHQ"
    )
    produced = 0
    pending = None
    for block in blocks:
        if pending is not None:
            produced += yield from _emit(pending, resampler, False, total_out - produced)
        pending = block
    if pending is not None:
        produced += yield from _emit(pending, resampler, True, total_out - produced)
    if produced < total_out:  # the resampler's flush can fall a sample short
        yield np.zeros((channels, total_out - produced), dtype=np.float32)


def _emit(block: np.ndarray, resampler, last: bool, room: int):
    out = block if resampler is None else resampler.resample_chunk(
        np.ascontiguousarray(block.T), last=last
    ).T
    out = np.ascontiguousarray(out[:, :room], dtype=np.float32)
    if out.shape[1]:
        yield out
    return out.shape[1]


def file_blocks_48k(
    path: str | os.PathLike, sample_rate: int = 48000,
    on_native_block: Callable[[np.ndarray], None] | None = None, info=None,
) -> Iterator[np.ndarray]:
    """Stream a file as ``(C, n)`` float32 blocks at ``sample_rate``, exact total length.

    ``on_native_block`` sees each decoded ``(C, n)`` block at the file's own rate first.
    ``info`` is the file's ``audio_info`` when the caller has it (for a file FFmpeg reads,
    finding it decodes the whole stream).
    """
    info = audio_info(path) if info is None else info
    total = output_length(info.frames, info.samplerate, sample_rate)
    blocks = iter_audio_blocks(path, int(BLOCK_SECONDS * info.samplerate))
    if on_native_block is not None:
        blocks = _observed(blocks, on_native_block)
    return stream_resampled(blocks, info.samplerate, sample_rate, info.channels, total)


def _observed(blocks: Iterator[np.ndarray],
              observe: Callable[[np.ndarray], None]) -> Iterator[np.ndarray]:
    for block in blocks:
        observe(block)
        yield block


def analyse_file(
    path: str | os.PathLike, sample_rate: int = 48000,
    thresholds: DiagnosisThresholds | None = None,
) -> InputAnalysis:
    """First pass: decode the whole file once, in blocks, and measure it (each channel's
    damage flagged by ``thresholds``, default ``DiagnosisThresholds()``).

    Raises:
        UnreadableAudioError (corrupt, unsupported), EmptyAudioError, NonFiniteAudioError,
        UnsupportedAudioError (a rate outside 8-192 kHz, samples 60 dB past full scale).
    """
    info = audio_info(path)
    check_sample_rate(info.samplerate, source=str(path))
    if info.frames <= 0:
        raise EmptyAudioError(f"{path}: no samples")
    meter = LoudnessMeter(sample_rate, info.channels)
    # Clipping and digital silence are read off the file's own samples: resampling turns a
    # clipped plateau into ringing that no longer looks clipped.
    analyzer = SignalAnalyzer(sample_rate, info.channels, native_sample_rate=info.samplerate,
                              subtype=info.subtype, native_samples=True)

    def check_native(block: np.ndarray) -> None:
        if not np.isfinite(block).all():
            raise NonFiniteAudioError(f"{path}: NaN or infinite samples")
        if block.size and float(np.abs(block).max()) > MAX_PEAK:
            raise UnsupportedAudioError(
                f"{path}: samples reach {float(np.abs(block).max()):.3g}, over 60 dB past full "
                "scale: not a recording's level (a wrong scale factor?); rescale the file")
        analyzer.update_native(block)

    peak = 0.0
    count = 0
    shortfall = header_shortfall(info)
    for block in file_blocks_48k(path, sample_rate, on_native_block=check_native, info=info):
        meter.update(block)
        analyzer.update(block)
        peak = max(peak, float(np.abs(block).max()))
        count += block.shape[1]
    return InputAnalysis(
        sample_rate=info.samplerate,
        channels=info.channels,
        frames=info.frames,
        frames_48k=count,
        loudness_lufs=meter.integrated(),
        peak=peak,
        subtype=info.subtype,
        channel_analysis=tuple(analyzer.result(thresholds)),
        warnings=() if shortfall is None else (shortfall,),
    )

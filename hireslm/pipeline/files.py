"""Restoring one file to another, streaming, atomically."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hireslm.audio import atomic_audio_writer, audio_info, loudness_gain_db
from hireslm.audio.errors import AudioError
from hireslm.pipeline.gate import GateStats
from hireslm.pipeline.options import DEFAULT_OPTIONS, RestoreOptions
from hireslm.pipeline.output_check import OutputCheck
from hireslm.pipeline.pipeline import RestorationPipeline
from hireslm.pipeline.source import BLOCK_SECONDS, analyse_file, file_blocks_48k


@dataclass
class RestoredFile:
    """What restoring one file did; becomes a line of the batch report."""

    input_sample_rate: int
    channels: int
    duration_s: float
    output_frames: int
    gain_db: float
    seconds: float
    silent: bool = False
    warnings: list[str] = field(default_factory=list)
    analysis: list[dict[str, Any]] = field(default_factory=list)
    treatment: dict[str, Any] | None = None

    @property
    def real_time_factor(self) -> float:
        return self.seconds / self.duration_s if self.duration_s > 0 else float("nan")


def restore_file(
    pipeline: RestorationPipeline,
    input_path: str | Path,
    output_path: str | Path,
    options: RestoreOptions = DEFAULT_OPTIONS,
    *,
    subtype: str = "PCM_24",
    on_progress: Callable[[float], None] | None = None,
    comment: str | None = None,
) -> RestoredFile:
    """Restore ``input_path`` into ``output_path`` (48 kHz, channels kept, exact duration).

    The input is read twice in blocks (analysis, then restoration) and the output written
    through a temp file renamed into place at the end, so memory does not grow with the
    file's length and an interrupted run leaves no partial output. Digital silence is
    written as silence with a warning. ``on_progress(seconds)`` reports input seconds done,
    adding up to the file's duration, also when it fails (the rest is credited then, so a
    progress bar over many files still ends at 100%); ``comment`` goes into the output's
    comment tag (what made it).

    Raises:
        UnreadableAudioError, EmptyAudioError, NonFiniteAudioError, UnsupportedAudioError:
            before anything is written.
        BadOutputError: the models' output is not finite or not at a sane level; nothing is
            written.
        ValueError: when the output would overwrite the input.
    """
    if on_progress is None:
        return _restore_file(pipeline, Path(input_path), Path(output_path), options, subtype,
                             None, comment)
    credited = 0.0

    def counted(seconds: float) -> None:
        nonlocal credited
        credited += seconds
        on_progress(seconds)

    try:
        return _restore_file(pipeline, Path(input_path), Path(output_path), options, subtype,
                             counted, comment)
    except Exception:
        rest = _duration(input_path) - credited
        if rest > 0:
            on_progress(rest)
        raise


def _duration(path: str | Path) -> float:
    """The input's duration from its header; 0 when even that cannot be read."""
    try:
        return float(audio_info(path).duration)
    except AudioError:
        return 0.0


def _restore_file(pipeline: RestorationPipeline, input_path: Path, output_path: Path,
                  options: RestoreOptions, subtype: str,
                  on_progress: Callable[[float], None] | None,
                  comment: str | None) -> RestoredFile:
    if output_path.resolve() == input_path.resolve():
        raise ValueError(f"{output_path}: refusing to overwrite the input")
    start = time.perf_counter()
    sr = pipeline.audio.sample_rate
    analysis = analyse_file(input_path, sr)
    warnings = list(analysis.warnings)
    gain_db = loudness_gain_db(analysis.loudness_lufs, options.target_lufs)
    report = (lambda n: on_progress(n / sr)) if on_progress else None
    treatment = None
    gate = GateStats()
    with atomic_audio_writer(output_path, sr, analysis.channels, subtype=subtype,
                             comment=comment) as out:
        if analysis.is_silent:
            warnings.append("input is digital silence; wrote silence")
            for start_frame in range(0, analysis.frames_48k, int(BLOCK_SECONDS * sr)):
                n = min(int(BLOCK_SECONDS * sr), analysis.frames_48k - start_frame)
                out.write(np.zeros((n, analysis.channels), dtype=np.float32))
                if report:
                    report(n)
        else:
            treatment = pipeline.decide(list(analysis.channel_analysis), options,
                                        frames=analysis.frames_48k)
            check = OutputCheck()
            blocks = pipeline.restore_stream(
                check.watch_input(file_blocks_48k(input_path, sr)), analysis.frames_48k,
                analysis.channels, gain_db, options, treatment, on_chunk=report,
                gate_stats=gate,
            )
            for block in check.watch_output(blocks, sr):
                out.write(block.T)
            check.finish()
    return RestoredFile(
        input_sample_rate=analysis.sample_rate,
        channels=analysis.channels,
        duration_s=analysis.duration_s,
        output_frames=analysis.frames_48k,
        gain_db=gain_db,
        seconds=time.perf_counter() - start,
        silent=analysis.is_silent,
        warnings=warnings,
        analysis=[channel.to_dict() for channel in analysis.channel_analysis],
        treatment=None if treatment is None
        else treatment.to_dict(pipeline.recovery_name, sr / 2,
                               gate.recovered_share() if treatment.recover else None),
    )

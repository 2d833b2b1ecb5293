"""Restoring one file into another, streaming, atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hireslm.audio.errors import AudioError
from hireslm.audio.io import atomic_audio_writer, audio_info
from hireslm.audio.source import FileSource
from hireslm.options import DEFAULT_OPTIONS, RestoreOptions

if TYPE_CHECKING:  # the signal level brings torch; a job imports it only to restore
    from hireslm.pipeline import RestorationAccount, RestorationPipeline


def restore_file(
    pipeline: RestorationPipeline,
    input_path: str | Path,
    output_path: str | Path,
    options: RestoreOptions = DEFAULT_OPTIONS,
    *,
    subtype: str = "PCM_24",
    on_progress: Callable[[float], None] | None = None,
    comment: str | None = None,
    stream: int | None = None,
) -> RestorationAccount:
    """Restore ``input_path`` into ``output_path`` (48 kHz, channels kept, exact duration).

    ``pipeline.stream`` reads the input twice in blocks (its first pass, then restoration),
    and the output is written through a temp file renamed into place at the end, so memory
    does not grow with the file's length and an interrupted run leaves no partial output.
    ``on_progress(seconds)`` reports input seconds done, adding up to the file's duration,
    also when it fails (the rest is credited then, so a progress bar over many files still
    ends at 100%); ``comment`` goes into the output's comment tag (what made it); ``stream``
    picks the audio stream of a file that has several (0-based; None: the file's default
    stream, else the first with sound).

    Raises:
        AudioError: the input cannot be read, is empty, not finite or out of range; nothing
            is written.
        BadOutputError: the models' output is not finite or not at a sane level; nothing is
            written.
        ValueError: when the output would overwrite the input.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.resolve() == input_path.resolve():
        raise ValueError(f"{output_path}: refusing to overwrite the input")
    credited = 0.0

    def counted(seconds: float) -> None:
        nonlocal credited
        credited += seconds
        on_progress(seconds)

    try:
        restoration = pipeline.stream(FileSource(input_path, stream), options,
                                      on_progress=None if on_progress is None else counted)
        with atomic_audio_writer(output_path, restoration.sample_rate, restoration.channels,
                                 subtype=subtype, comment=comment) as out:
            for block in restoration:
                out.write(block.T)
    except Exception:
        if on_progress is not None:
            rest = _duration(input_path) - credited
            if rest > 0:
                on_progress(rest)
        raise
    return restoration.account


def _duration(path: Path) -> float:
    """The input's duration from its header; 0 when even that cannot be read."""
    try:
        return float(audio_info(path).duration)
    except AudioError:
        return 0.0

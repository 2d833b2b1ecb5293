"""``run(inputs, output, options)``: restore files and folder trees into an output folder.

The job level's one call, made by ``hireslm restore``, the benchmarks and library users
alike. It plans every input once (``hireslm.jobs.plan``), takes the output folder's lock,
splits the files between processes (``RANK``/``WORLD_SIZE`` under ``accelerate launch`` or
torchrun), restores this process's share one file at a time (``hireslm.jobs.worklist``),
waits for the other processes, merges one report and writes the page. Nothing here imports
torch: the signal level (``hireslm.pipeline``) loads once there is a file to restore.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hireslm.audio.errors import AudioError
from hireslm.audio.io import audio_info
from hireslm.jobs.jsonl_report import REPORT_NAME, ReportWriter, merge_reports, part_name
from hireslm.jobs.lock import OutputFolderLock
from hireslm.jobs.overrides import Overrides
from hireslm.jobs.page import write_html_report
from hireslm.jobs.plan import Job, Plan, plan_jobs, shard_jobs
from hireslm.jobs.provenance import make_provenance
from hireslm.jobs.worklist import JobSettings, existing_outputs, report_unplanned, run_jobs
from hireslm.options import DEFAULT_OPTIONS, RestoreOptions
from hireslm.resources import default_release, missing_release_message

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {"wav": ".wav", "flac": ".flac"}
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


class RunError(Exception):
    """A run that cannot start (bad inputs, a held output folder, a broken release); the
    message is one line for the user, ``exit_code`` what a command should return."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunSettings:
    """How a run handles files (``RestoreOptions`` say how each is restored).

    ``release``: the release folder (None: the shipped one); ``device``: where the models run
    (None: this process's GPU if any, else the CPU); ``output_format`` and ``bit_depth``: the
    files written (``OUTPUT_FORMATS``, ``SUBTYPES``); ``force``: redo outputs that exist,
    also those made otherwise; ``progress``: a progress bar; ``html``: the report page;
    ``overrides``: a file of per-file options (``hireslm.jobs.overrides``); ``stream``: the
    audio stream restored of files that have several (0-based; None: each file's default
    stream, else its first with sound; the report says which was read).
    """

    release: Path | None = None
    device: str | None = None
    output_format: str = "wav"
    bit_depth: str = "24"
    force: bool = False
    progress: bool = True
    html: bool = True
    overrides: Path | None = None
    stream: int | None = None

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {sorted(OUTPUT_FORMATS)}, got "
                             f"{self.output_format!r}")
        if self.bit_depth not in SUBTYPES:
            raise ValueError(f"bit_depth must be one of {sorted(SUBTYPES)}, got "
                             f"{self.bit_depth!r}")
        if self.stream is not None and self.stream < 0:
            raise ValueError(f"stream counts from 0, got {self.stream}")
        if self.output_format == "flac" and self.bit_depth == "float":
            raise ValueError("FLAC holds integer samples only: choose bit depth 16 or 24 "
                             "for FLAC, or WAV for 32-bit float")

    @property
    def release_dir(self) -> Path:
        return default_release() if self.release is None else Path(self.release)


@dataclass(frozen=True)
class RunSummary:
    """What a run did: files by status (``ok``, ``silent``, ``failed``, ``skipped``, ``other``)
    over all processes on process 0, this process's own elsewhere."""

    counts: Counter
    report: Path

    @property
    def exit_code(self) -> int:
        return 1 if self.counts["failed"] else 0

    def describe(self) -> str:
        """``"5 ok, 1 failed, 2 skipped (done before, ...)"``, in a fixed order."""
        labels = {"ok": "ok", "silent": "silent", "failed": "failed",
                  "skipped": "skipped (done before, or taken under another name)",
                  "other": "kept (made otherwise; --force redoes them)"}
        return ", ".join(f"{self.counts[k]} {label}" for k, label in labels.items()
                         if self.counts[k]) or "nothing to do"


def plan(inputs: Sequence[str | Path], output: str | Path,
         settings: RunSettings = RunSettings()) -> Plan:
    """Every input's output path, or why it gets none; ``RunError`` for unusable inputs."""
    try:
        found = plan_jobs(inputs, output, suffix=OUTPUT_FORMATS[settings.output_format])
    except (FileNotFoundError, ValueError) as exc:
        raise RunError(str(exc)) from exc
    if not found.jobs and not found.unplanned:
        raise RunError(f"no audio files found in {[str(p) for p in inputs]}", exit_code=1)
    return found


def dry_run(inputs: Sequence[str | Path], output: str | Path,
            settings: RunSettings = RunSettings()) -> list[str]:
    """What ``run`` would do, a tab-separated line per input (only presence is checked:
    a dry run reads no release to compare outputs with)."""
    found = plan(inputs, output, settings)
    lines = [f"{item.status}\t{item.input}\t{item.reason}" for item in found.unplanned]
    for job in found.jobs:
        action = "skip (exists)" if job.output.exists() and not settings.force else "restore"
        lines.append(f"{action}\t{job.input}\t{job.output}")
    return lines


def run(inputs: Sequence[str | Path], output: str | Path,
        options: RestoreOptions = DEFAULT_OPTIONS,
        settings: RunSettings = RunSettings()) -> RunSummary:
    """Restore ``inputs`` (files and folders, searched recursively) into ``output``.

    Process 0 returns the whole run's summary (the others return theirs once done, so a
    launcher never stops a process that is still working).

    Raises:
        RunError: nothing can be restored: an input is missing, the output folder is unusable
            or held by another run, the release is missing or broken, the device is unknown
            or absent (or fp16 asked of the CPU), the options do not fit the release.
    """
    from hireslm.jobs.lock import OutputFolderLockedError

    found = plan(inputs, output, settings)
    release = settings.release_dir
    if not release.is_dir():
        raise RunError(missing_release_message() if settings.release is None
                       else f"{release}: no such release folder")
    device = _check_device(settings, options)
    try:
        overrides = Overrides.load(settings.overrides) if settings.overrides else Overrides()
    except (OSError, ValueError) as exc:
        raise RunError(f"--overrides: {exc}") from exc
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        with OutputFolderLock(output, rank) as lock:
            return _restore(found, Path(output), options, overrides, settings, lock,
                            world_size, device)
    except OutputFolderLockedError as exc:
        raise RunError(str(exc)) from exc


def _check_device(settings: RunSettings, options: RestoreOptions) -> str | None:
    """The device this run's generative stages will use, checked before anything loads;
    ``RunError`` for a device this process does not have, and for fp16 on the CPU (its fp16
    arithmetic is slow and not what the option is for). None (no device asked for, and no
    fp16): this process's GPU if any, else the CPU, found when the stages load; asking torch
    now would load it for runs that need none of it."""
    if settings.device is None and options.precision != "fp16":
        return None
    from hireslm.release import check_device  # torch: a device or fp16 was asked for

    device = settings.device or _default_device()
    try:
        kind = check_device(device).type
    except ValueError as exc:
        raise RunError(str(exc)) from exc
    if options.precision == "fp16" and kind == "cpu":
        raise RunError("precision fp16 is for GPUs; on the CPU use fp32 (the default) or bf16")
    return device


def _restore(found: Plan, output: Path, options: RestoreOptions, overrides: Overrides,
             settings: RunSettings, lock: OutputFolderLock, world_size: int,
             device: str | None) -> RunSummary:
    """Restore this process's share of ``found``; merge the report on process 0."""
    # The signal level loads only now, and its generative stages (torch) on the first file
    # that needs a band generated: planning, and files that need only recovery, need neither.
    from hireslm.pipeline import RestorationPipeline
    from hireslm.release import ReleaseError, release_hash

    rank = lock.rank
    try:
        pipeline = RestorationPipeline.from_pretrained(settings.release_dir, device=device,
                                                       lazy=True)
        options = pipeline.resolve(options)
    except (ReleaseError, ValueError) as exc:
        raise RunError(str(exc)) from exc
    subtype = SUBTYPES[settings.bit_depth]
    release = release_hash(settings.release_dir)
    mine = shard_jobs(found.jobs, rank, world_size)
    per_job = {}
    for job in mine:
        try:
            chosen = pipeline.resolve(overrides.options_for(job.input, options))
        except ValueError as exc:
            raise RunError(f"{job.input}: {exc}") from exc
        per_job[job] = JobSettings(chosen, make_provenance(release, chosen, subtype=subtype))
    report = ReportWriter(output / (REPORT_NAME if world_size == 1 else part_name(rank)))
    logger.info("process %d/%d: %d of %d files, checkpoint %s, device %s",
                rank, world_size, len(mine), len(found.jobs), settings.release_dir,
                device or "auto (a GPU if any, else the CPU)")
    counts = report_unplanned(found.unplanned, report, rank) if rank == 0 else Counter()
    existing = existing_outputs(mine, per_job, settings.force)
    todo = [job for job in mine if existing[job].state in ("missing", "redo")]
    with _ProgressBar(todo, rank, enabled=settings.progress and rank == 0) as on_progress:
        counts += run_jobs(pipeline, mine, report, settings=per_job, existing=existing,
                           subtype=subtype, process_index=rank, on_progress=on_progress,
                           stream=settings.stream)
    if world_size > 1:
        lock.mark_done(rank, counts)
        if rank != 0:
            logger.info("process %d: %s", rank, dict(counts))
            return RunSummary(counts, report.path)
        counts = lock.wait_for_ranks(world_size)
    merge_reports(output)  # also the parts an earlier, killed multi-process run left
    if settings.html:  # process 0 only: the others returned above
        write_html_report(output)  # never raises: a page must not fail a run
    return RunSummary(counts, output / REPORT_NAME)


# Speed in seconds of audio per second of wall time, always that way round: tqdm's rate_fmt
# flips to wall seconds per audio second below real time, both printed "s/s".
PROGRESS_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio "
                   "[{elapsed}<{remaining}, {rate_noinv_fmt} (audio s per s)]")


class _ProgressBar:
    """A tqdm bar over the audio seconds of ``jobs``; yields the ``on_progress`` callback."""

    def __init__(self, jobs: Sequence[Job], rank: int, *, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=_total_seconds(jobs), unit="s", desc=f"restoring [{rank}]",
                        bar_format=PROGRESS_FORMAT, disable=not enabled, dynamic_ncols=True)

    def __enter__(self) -> Callable[[float], None]:
        bar = self.bar
        # Header durations can be a little short (MP3): never run past the total.
        return lambda seconds: bar.update(min(seconds, bar.total - bar.n))

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _total_seconds(jobs: Sequence[Job]) -> float:
    total = 0.0
    for job in jobs:
        try:
            total += audio_info(job.input).duration
        except AudioError:
            pass  # reported when its turn comes
    return total


def _default_device() -> str:
    """This process's GPU (``LOCAL_RANK`` under a launcher) if there is one, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"

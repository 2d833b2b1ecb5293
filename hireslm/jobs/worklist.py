"""A process's share of a run: its jobs one by one, each to its own output, each reported.

Nothing is lost: outputs go to a separate tree (``hireslm.jobs.plan``), each is written
atomically and carries what made it (``hireslm.jobs.provenance``), a finished output is
skipped on reruns, and a bad file is reported and skipped without stopping the batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hireslm.audio.errors import AudioError
from hireslm.audio.io import audio_info
from hireslm.fileio import part_glob
from hireslm.jobs.jsonl_report import ReportWriter
from hireslm.jobs.plan import Job, Unplanned
from hireslm.jobs.provenance import (
    ExistingOutput,
    input_fingerprint,
    inspect_output,
    provenance_comment,
    with_input,
)
from hireslm.jobs.restore_one import restore_file
from hireslm.options import RestoreOptions

if TYPE_CHECKING:  # the signal level brings torch; a job imports it only to restore
    from hireslm.pipeline import RestorationPipeline

logger = logging.getLogger(__name__)

# Above this many channels a file is said to be slow before its turn starts: every channel is
# a row of the models' batches, so time grows with the count (256 channels of 0.5 s take
# minutes on a CPU).
MANY_CHANNELS = 16


@dataclass(frozen=True)
class JobSettings:
    """How one job is restored: its resolved ``options`` and the ``provenance`` its output
    carries (the same for every file of a run but those ``--overrides`` changes)."""

    options: RestoreOptions
    provenance: dict[str, Any]


def existing_outputs(jobs: Sequence[Job], settings: Mapping[Job, JobSettings],
                     force: bool) -> dict[Job, ExistingOutput]:
    """What is already at each job's output (``force``: treat all as missing)."""
    if force:
        return {job: ExistingOutput("missing") for job in jobs}
    return {job: inspect_output(job.input, job.output, settings[job].provenance)
            for job in jobs}


def report_unplanned(unplanned: Sequence[Unplanned], report: ReportWriter,
                     process_index: int = 0) -> Counter:
    """A report line for each input that got no job; counts by status."""
    counts: Counter = Counter()
    for item in unplanned:
        logger.log(logging.ERROR if item.status == "failed" else logging.INFO,
                   "%s: %s", item.input, item.reason)
        report.write({"input": str(item.input), "output": None, "status": item.status,
                      "error" if item.status == "failed" else "reason": item.reason,
                      "process": process_index, "time": _now()})
        counts[item.status] += 1
    return counts


def run_jobs(
    pipeline: RestorationPipeline,
    jobs: Sequence[Job],
    report: ReportWriter,
    *,
    settings: Mapping[Job, JobSettings],
    existing: dict[Job, ExistingOutput] | None = None,
    subtype: str = "PCM_24",
    process_index: int = 0,
    on_progress: Callable[[float], None] | None = None,
    stream: int | None = None,
) -> Counter:
    """Restore ``jobs`` one by one; returns counts by status.

    Statuses: ``ok``, ``silent`` (digital silence, written as such), ``skipped`` (done by an
    earlier run), ``other`` (an output made otherwise is in the way and kept), ``failed``.
    ``existing`` is what ``existing_outputs`` found (computed here when None). Audio problems
    and other per-file errors are recorded in the report and the batch goes on; an interrupt
    stops it.
    """
    existing = existing if existing is not None else existing_outputs(jobs, settings, False)
    counts: Counter = Counter()
    for job in jobs:
        found = existing[job]
        options, provenance = settings[job].options, settings[job].provenance
        if found.state == "done":
            counts["skipped"] += 1
            continue
        record: dict[str, Any] = {
            "input": str(job.input), "output": str(job.output),
            "checkpoint": provenance["release"], "settings": provenance["settings"],
            "process": process_index,
        }
        if found.state == "other":
            logger.warning("%s: %s", job.output, found.reason)
            record.update(status="other", reason=found.reason, time=_now())
            report.write(record)
            counts["other"] += 1
            continue
        # A killed run leaves its temp file; only this job ever writes one for this output
        # (the output folder's lock keeps other runs out).
        for stale in job.output.parent.glob(part_glob(job.output.name)):
            stale.unlink(missing_ok=True)
        early = _channel_warnings(job)
        try:  # taken before it is read: a change while it is restored is seen next time
            made = with_input(provenance, input_fingerprint(job.input))
        except OSError:
            made = provenance  # the restore reports why it cannot be read
        record.update(_restore_one(pipeline, job, options, subtype, made, on_progress, stream))
        warnings = [*early, *record.get("warnings", [])]
        if found.state == "redo":
            warnings.append(f"replaced: {found.reason}")
        if warnings or "warnings" in record:
            record["warnings"] = warnings
        record["time"] = _now()  # when the file was finished
        report.write(record)
        counts[record["status"]] += 1
    return counts


def _channel_warnings(job: Job) -> list[str]:
    """A warning for a file of more than ``MANY_CHANNELS`` channels, logged before it starts."""
    try:
        channels = audio_info(job.input).channels
    except AudioError:
        return []  # the restore reports it
    if channels <= MANY_CHANNELS:
        return []
    warning = (f"{channels} channels: every channel is restored, so this file takes about "
               f"{channels} times as long as a mono file of its length")
    logger.warning("%s: %s", job.input, warning)
    return [warning]


def _restore_one(pipeline: RestorationPipeline, job: Job, options: RestoreOptions,
                 subtype: str, provenance: dict[str, Any],
                 on_progress: Callable[[float], None] | None,
                 stream: int | None = None) -> dict[str, Any]:
    """Restore one job; the report fields of its outcome."""
    try:
        result = restore_file(pipeline, job.input, job.output, options, subtype=subtype,
                              on_progress=on_progress, comment=provenance_comment(provenance),
                              stream=stream)
    except (AudioError, OSError, RuntimeError, ValueError) as exc:
        message = str(exc)  # audio errors name the file already
        logger.error("%s", message if str(job.input) in message else f"{job.input}: {message}")
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "output": None}
    if result.warnings:
        logger.warning("%s: %s", job.input, "; ".join(result.warnings))
    return {
        "status": "silent" if result.silent else "ok",
        "input_sample_rate": result.input_sample_rate,
        "channels": result.channels,
        "duration_s": round(result.duration_s, 4),
        "output_sample_rate": pipeline.audio.sample_rate,
        "processing_s": round(result.seconds, 3),
        "real_time_factor": round(result.real_time_factor, 4),
        "gain_db": round(result.gain_db, 2),
        "level_change_db": _rounded(result.level_change_db),
        "speech_change_db": _rounded(result.speech_change_db),
        "warnings": result.warnings,
        "analysis": result.analysis,
        "treatment": result.treatment,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")

"""Batch restoration of folder trees: job planning, sharding across processes, the report.

Nothing is lost: outputs go to a separate tree (never onto an input), each is written
atomically, a finished output is skipped on re-runs, and a bad file is reported and skipped
without stopping the batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hireslm.audio.errors import AudioError
from hireslm.audio.io import AUDIO_EXTENSIONS
from hireslm.pipeline.files import restore_file
from hireslm.pipeline.options import RestoreOptions
from hireslm.pipeline.pipeline import RestorationPipeline

logger = logging.getLogger(__name__)

REPORT_NAME = "restore_report.jsonl"


@dataclass(frozen=True)
class Job:
    """One input file and where its restoration goes."""

    input: Path
    output: Path
    size_bytes: int


def plan_jobs(inputs: Sequence[str | Path], out_dir: str | Path, suffix: str = ".wav") -> list[Job]:
    """Map input files and folders (searched recursively) to outputs under ``out_dir``.

    One folder is mirrored into ``out_dir``; with several inputs each keeps its own name as
    a sub-folder. Outputs take ``suffix``; where two inputs would meet in one output
    (``a.flac`` and ``a.mp3``), both keep their full name (``a.flac.wav``).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: ``out_dir`` lies inside an input folder, or an output would be an input.
    """
    out_dir = Path(out_dir).resolve()
    roots = [Path(p).resolve() for p in inputs]
    found: list[tuple[Path, Path]] = []  # (input file, output path relative to out_dir)
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        if root.is_file():
            found.append((root, Path(root.name)))
            continue
        if out_dir == root or root in out_dir.parents:
            raise ValueError(
                f"output folder {out_dir} is inside input folder {root}: outputs would mix "
                "with inputs; choose a folder outside it"
            )
        prefix = Path(root.name) if len(roots) > 1 else Path()
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS \
                    and not path.name.startswith("."):
                found.append((path, prefix / path.relative_to(root)))
    targets = Counter(rel.with_suffix(suffix) for _, rel in found)
    jobs = []
    for path, rel in found:
        target = rel.with_suffix(suffix)
        if targets[target] > 1:
            target = rel.with_name(rel.name + suffix)
        jobs.append(Job(path, out_dir / target, path.stat().st_size))
    inputs_set = {job.input for job in jobs}
    clashes = [job.output for job in jobs if job.output in inputs_set]
    if clashes:
        raise ValueError(f"refusing to overwrite inputs: {[str(c) for c in clashes[:5]]}")
    return jobs


def shard_jobs(jobs: Sequence[Job], rank: int, world_size: int) -> list[Job]:
    """This process's share: largest files first, each to the least-loaded process.

    Every process computes the same assignment, so no file is done twice or skipped.
    """
    loads = [0] * world_size
    mine = []
    for job in sorted(jobs, key=lambda j: (-j.size_bytes, str(j.input))):
        owner = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner] += max(job.size_bytes, 1)
        if owner == rank:
            mine.append(job)
    return sorted(mine, key=lambda j: str(j.input))


def release_hash(release_dir: str | Path) -> str:
    """Short sha256 over a release's config and weights: which model made an output."""
    digest = hashlib.sha256()
    release_dir = Path(release_dir)
    for path in [release_dir / "config.yaml", *sorted(release_dir.glob("*.safetensors"))]:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class ReportWriter:
    """Appends one JSON line per file, flushed and synced, so a killed run keeps its record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def merge_reports(out_dir: str | Path) -> Path:
    """Fold per-process report parts (``restore_report.rank*.jsonl``) into the main report."""
    out_dir = Path(out_dir)
    main = ReportWriter(out_dir / REPORT_NAME)
    for part in sorted(out_dir.glob("restore_report.rank*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                main.write(json.loads(line))
        part.unlink()
    return main.path


def run_jobs(
    pipeline: RestorationPipeline,
    jobs: Sequence[Job],
    options: RestoreOptions,
    report: ReportWriter,
    *,
    checkpoint_hash: str,
    subtype: str = "PCM_24",
    force: bool = False,
    process_index: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> Counter:
    """Restore ``jobs`` one by one; returns counts by status (ok, silent, skipped, failed).

    Finished outputs are skipped unless ``force``. Audio problems and other per-file errors
    are recorded in the report and the batch goes on; an interrupt stops it.
    """
    counts: Counter = Counter()
    for job in jobs:
        if job.output.exists() and not force:
            counts["skipped"] += 1
            continue
        # A killed run leaves its temp file; only this job ever writes one for this output.
        for stale in job.output.parent.glob(f".{job.output.name}.*.part"):
            stale.unlink(missing_ok=True)
        record: dict[str, Any] = {
            "input": str(job.input), "output": str(job.output),
            "checkpoint": checkpoint_hash, "process": process_index,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            result = restore_file(pipeline, job.input, job.output, options, subtype=subtype,
                                  on_progress=on_progress)
        except (AudioError, OSError, RuntimeError, ValueError) as exc:
            logger.error("%s: %s", job.input, exc)
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}", output=None)
        else:
            record.update(
                status="silent" if result.warnings else "ok",
                input_sample_rate=result.input_sample_rate,
                channels=result.channels,
                duration_s=round(result.duration_s, 4),
                output_sample_rate=pipeline.audio.sample_rate,
                processing_s=round(result.seconds, 3),
                real_time_factor=round(result.real_time_factor, 4),
                gain_db=round(result.gain_db, 2),
                warnings=result.warnings,
                analysis=result.analysis,
                treatment=result.treatment,
            )
        report.write(record)
        counts[record["status"]] += 1
    return counts

"""``hireslm restore INPUT... -o OUTDIR``: restore files and folder trees to 48 kHz.

Runs in one process, or in several under ``accelerate launch -m hireslm restore ...`` (or
torchrun), which split the files between them and merge one report at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from hireslm.pipeline.lock import OutputFolderLock, OutputFolderLockedError
from hireslm.pipeline.options import KEEP_MODES
from hireslm.pipeline.plan import Plan, plan_jobs
from hireslm.pipeline.report import REPORT_NAME, merge_reports
from hireslm.resources import default_release, missing_release_message

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = default_release()  # $HIRESLM_HOME/checkpoints/hireslm-demo, or the package
OUTPUT_FORMATS = {"wav": ".wav", "flac": ".flac"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders")
    parser.add_argument("-o", "--output-dir", type=Path, required=True,
                        help="where restored files go (mirrors the input tree)")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="release folder (default: the shipped demo release)")
    parser.add_argument("--steps", type=int, default=None,
                        help="diffusion steps (default: the release's); 0 resynthesises "
                        "the input through VAE and vocoder only, for evaluation")
    parser.add_argument("--scheduler", default=None, help="sampler (default: the release's)")
    parser.add_argument("--strength", type=_strength, default=1.0,
                        help="in (0, 1]: below 1 the diffusion starts from the input's own "
                        "latent, part-noised; keeps more of its content and timing, and of "
                        "its defects (flow-matching releases, euler sampler)")
    parser.add_argument("--keep", choices=KEEP_MODES, default="auto",
                        help="what of the input to keep: 'auto' recovers noisy or reverberant "
                        "input and keeps it below its cutoff, generating only the missing band; "
                        "'input' keeps the input itself below its cutoff; 'none' regenerates "
                        "everything, as in the paper (default: %(default)s)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N (default: this process's GPU if any, else cpu)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="the models' arithmetic: bf16/fp16 autocast are faster on GPUs "
                        "(fp16: GPUs only)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the models (default: torch's, one per physical "
                        "core, or OMP_NUM_THREADS); see docs/benchmarks.md")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="chunks per model call (more: faster on a GPU, more memory)")
    parser.add_argument("--chunk-seconds", type=float, default=8.0,
                        help="length of audio the models see at once")
    parser.add_argument("--overlap-seconds", type=float, default=0.5,
                        help="crossfade between neighbouring chunks")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the diffusion noise (same seed, same output)")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS), default="wav",
                        help="output file format")
    parser.add_argument("--bit-depth", choices=["16", "24", "float"], default="24",
                        help="output sample format (float: 32-bit float)")
    parser.add_argument("--force", action="store_true",
                        help="redo files whose output already exists, also those made by "
                        "another release or other settings")
    parser.add_argument("--dry-run", action="store_true", help="list what would be done")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-html", action="store_true",
                        help="do not write OUTDIR/restore_report.html (spectrograms and "
                        "players per file)")


def _strength(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


def run(args: argparse.Namespace) -> int:
    """Restore; 0 when every file is done, 1 when any failed, 2 for a usage error."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        plan = plan_jobs(args.inputs, args.output_dir, suffix=OUTPUT_FORMATS[args.format])
    except (FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    if not plan.jobs and not plan.unplanned:
        logger.error("no audio files found in %s", [str(p) for p in args.inputs])
        return 1
    if args.dry_run:
        return _dry_run(plan, args.force)
    if args.checkpoint == DEFAULT_CHECKPOINT and not DEFAULT_CHECKPOINT.is_dir():
        logger.error("%s", missing_release_message())
        return 2
    # The models, torch and the release code load only now: planning and --dry-run need
    # none of them (start-up).
    from hireslm.release import ReleaseError

    try:
        with OutputFolderLock(args.output_dir, rank) as lock:
            return _restore(args, plan, lock, world_size)
    except (OutputFolderLockedError, ReleaseError) as exc:
        logger.error("%s", exc)
        return 2


def _restore(args: argparse.Namespace, plan: Plan, lock: OutputFolderLock,
             world_size: int) -> int:
    """Restore this process's share; the exit code of the whole run on process 0 (the others
    return 0 once done, so a launcher never stops a process that is still working)."""
    from tqdm import tqdm

    from hireslm.pipeline import RestorationPipeline, RestoreOptions
    from hireslm.pipeline.batch import (
        existing_outputs,
        release_hash,
        report_unplanned,
        run_jobs,
    )
    from hireslm.pipeline.html_report import write_html_report
    from hireslm.pipeline.plan import shard_jobs
    from hireslm.pipeline.provenance import make_provenance
    from hireslm.pipeline.report import ReportWriter, part_name

    rank = lock.rank
    device = args.device or _default_device()
    pipeline = RestorationPipeline.from_pretrained(args.checkpoint, device=device)
    options = RestoreOptions(
        num_steps=args.steps, scheduler=args.scheduler, chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds, batch_size=args.batch_size, device=str(device),
        precision=args.precision, seed=args.seed, strength=args.strength, keep=args.keep,
    )
    pipeline.check_options(options)
    subtype = SUBTYPES[args.bit_depth]
    provenance = make_provenance(
        release_hash(args.checkpoint), options, default_steps=pipeline.default_steps,
        default_scheduler=pipeline.default_scheduler, subtype=subtype)
    mine = shard_jobs(plan.jobs, rank, world_size)
    report = ReportWriter(args.output_dir / (REPORT_NAME if world_size == 1 else part_name(rank)))
    logger.info("process %d/%d: %d of %d files, checkpoint %s, device %s",
                rank, world_size, len(mine), len(plan.jobs), args.checkpoint, device)
    counts = report_unplanned(plan.unplanned, report, rank) if rank == 0 else Counter()
    existing = existing_outputs(mine, provenance, args.force)
    todo = [job for job in mine if existing[job].state in ("missing", "redo")]
    with tqdm(total=_total_seconds(todo), unit="s", desc=f"restoring [{rank}]",
              bar_format=PROGRESS_FORMAT, disable=args.no_progress or rank != 0,
              dynamic_ncols=True) as bar:
        counts += run_jobs(
            pipeline, mine, options, report, provenance=provenance, existing=existing,
            subtype=subtype, process_index=rank,
            # Header durations can be a little short (MP3): never run past the total.
            on_progress=lambda seconds: bar.update(min(seconds, bar.total - bar.n)),
        )
    if world_size > 1:
        lock.mark_done(rank, counts)
        if rank != 0:
            logger.info("process %d: %s", rank, dict(counts))
            return 0
        counts = lock.wait_for_ranks(world_size)
    merge_reports(args.output_dir)  # also the parts an earlier, killed multi-process run left
    if not args.no_html:  # process 0 only: the others returned above
        write_html_report(args.output_dir)  # never raises: a page must not fail a run
    logger.info("%s; report %s", _summary(counts), args.output_dir / REPORT_NAME)
    return 1 if counts["failed"] else 0


def _summary(counts: Counter) -> str:
    """``"5 ok, 1 failed, 2 skipped (done before, ...)"``, in a fixed order."""
    labels = {"ok": "ok", "silent": "silent", "failed": "failed",
              "skipped": "skipped (done before, or taken under another name)",
              "other": "kept (made otherwise; --force redoes them)"}
    return ", ".join(f"{counts[k]} {label}" for k, label in labels.items() if counts[k]) \
        or "nothing to do"


# Speed in seconds of audio per second of wall time, always that way round: tqdm's rate_fmt
# flips to wall seconds per audio second below real time, both printed "s/s".
PROGRESS_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio "
                   "[{elapsed}<{remaining}, {rate_noinv_fmt} (audio s per s)]")


def _dry_run(plan: Plan, force: bool) -> int:
    for item in plan.unplanned:
        print(f"{item.status}\t{item.input}\t{item.reason}")
    # Only presence is checked here: a dry run reads no release to compare outputs with.
    for job in plan.jobs:
        action = "skip (exists)" if job.output.exists() and not force else "restore"
        print(f"{action}\t{job.input}\t{job.output}")
    return 0


def _total_seconds(jobs) -> float:
    from hireslm.audio import audio_info
    from hireslm.audio.errors import AudioError

    total = 0.0
    for job in jobs:
        try:
            total += audio_info(job.input).duration
        except AudioError:
            pass  # reported when its turn comes
    return total


def _default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under a launcher) if there is one, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

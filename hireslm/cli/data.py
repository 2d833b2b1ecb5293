"""``hireslm data``: build manifests from folders, fetch the demo data.

    hireslm data index DIR... -o manifest.jsonl [--workers N]
                         [--speaker-from parent|grandparent|stem-prefix|none]
                         [--min-bandwidth HZ] [--split-by none|speaker|file]
    hireslm data fetch-demo OUT_DIR [--extras] [--workers N] [--min-bandwidth HZ]
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hireslm.data.demo import DEFAULT_MIN_BANDWIDTH_HZ, DemoDataError, fetch_demo
from hireslm.data.manifest import (
    SPEAKER_RULES,
    assign_splits,
    filter_records,
    index_folders,
    summarize,
    write_manifest,
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``index`` and ``fetch-demo`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    index = sub.add_parser("index", help="index audio folders into a JSONL manifest")
    index.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders to scan")
    index.add_argument("-o", "--output", type=Path, required=True, help="manifest to write")
    index.add_argument("--workers", type=int, default=_default_workers(),
                       help="parallel processes (default: CPU count)")
    index.add_argument("--speaker-from", choices=sorted(SPEAKER_RULES), default="none",
                       help="speaker id: 'parent' folder (VCTK, EARS), 'grandparent' folder "
                            "(LibriTTS-R), 'stem-prefix' = file name up to '_' (DAPS)")
    index.add_argument("--min-bandwidth", type=float, default=None, metavar="HZ",
                       help="keep only files whose measured bandwidth reaches HZ")
    index.add_argument("--min-duration", type=float, default=None, metavar="S",
                       help="keep only files at least S seconds long")
    index.add_argument("--split-by", choices=("none", "speaker", "file"), default="none",
                       help="add a deterministic train/valid/test split (90/5/5)")

    demo = sub.add_parser("fetch-demo", help="fetch demo speech/noise from Debian packages")
    demo.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                      help="where the audio and its manifests are written")
    demo.add_argument("--extras", action="store_true",
                      help="also fetch ktuberling-data and hedgewars-data (more speakers)")
    demo.add_argument("--workers", type=int, default=_default_workers(),
                      help="parallel processes")
    demo.add_argument("--min-bandwidth", type=float, default=DEFAULT_MIN_BANDWIDTH_HZ,
                      metavar="HZ", help="full-band threshold for the speech manifests")


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit code (0 ok, 1 failed, 2 nothing indexed)."""
    if args.data_command == "index":
        return _run_index(args)
    if args.data_command == "fetch-demo":
        return _run_fetch_demo(args)
    raise ValueError(f"unknown data action {args.data_command!r}")


def _run_index(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    try:
        records, failures = index_folders(args.dirs, workers=args.workers,
                                          speaker_from=args.speaker_from)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 1
    scanned = len(records)
    records = filter_records(records, min_bandwidth_hz=args.min_bandwidth,
                             min_duration=args.min_duration)
    if args.split_by != "none":
        records = assign_splits(records, by=args.split_by)
    write_manifest(args.output, records)
    print(f"{args.output}: {len(records)} of {scanned} readable files kept, "
          f"{len(failures)} failed")
    print(format_summary(summarize(records)))
    for failure in failures[:20]:
        print(f"  failed: {failure['error']}")
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more failures")
    return 0 if records else 2


def _run_fetch_demo(args: argparse.Namespace) -> int:
    try:
        summary = fetch_demo(args.out_dir, extras=args.extras, workers=args.workers,
                             min_bandwidth_hz=args.min_bandwidth)
    except DemoDataError as exc:
        logger.error("%s", exc)
        return 1
    for name, stats in summary["manifests"].items():
        print(f"{args.out_dir / (name + '.jsonl')}:")
        print(format_summary(stats))
    print(f"failures: {len(summary['failures'])} (see {args.out_dir / 'summary.json'})")
    return 0


def format_summary(stats: Mapping[str, Any]) -> str:
    """Human-readable lines for ``hireslm.data.manifest.summarize`` output."""
    histogram = ", ".join(f"{k}: {v}" for k, v in stats["bandwidth_histogram"].items())
    rates = ", ".join(f"{k} Hz: {v}" for k, v in stats["sample_rates"].items())
    return (f"  files {stats['files']}, hours {stats['hours']:.3f}, "
            f"speakers {stats['speakers']}\n"
            f"  sample rates: {rates or '-'}\n"
            f"  bandwidth: {histogram}")

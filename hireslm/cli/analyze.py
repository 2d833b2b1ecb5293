"""``hireslm analyze IN... [-o report.jsonl]``: measure each file's damage before restoring.

One JSON line per file: input path, native sample rate, channels, duration, format, the
damage flags raised on any channel, and per channel the measurements and flags
(``hireslm.analysis``; what they mean in docs/analysis.md). Lines go to stdout, or with ``-o``
to a JSONL file written atomically once all files are done. A file that cannot be read gets a
line with ``"status": "failed"`` and the error. Exit status: 0, 1 if any file failed (or none
was found), 2 for a missing input path.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hireslm.analysis import DiagnosisThresholds
from hireslm.audio import audio_info
from hireslm.audio.errors import AudioError
from hireslm.audio.io import AUDIO_EXTENSIONS
from hireslm.fileio import atomic_path
from hireslm.pipeline.source import analyse_file

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write the JSONL report here (default: stdout)")


def find_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given (any name), then each folder's audio files, recursively, sorted;
    hidden files and folders are skipped. Duplicates are dropped, first one kept."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(
                path for path in item.rglob("*")
                if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(item).parts)
            )
        else:
            found.append(item)
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def analyse_one(path: Path) -> dict[str, Any]:
    """The record of one file; a file that cannot be analysed gets a ``failed`` record."""
    try:
        return analysis_record(path)
    except (AudioError, OSError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
        logger.error("%s", message if str(path) in message else f"{path}: {message}")
        return {"input": str(path), "status": "failed", "error": message}


def run(args: argparse.Namespace) -> int:
    missing = [path for path in args.inputs if not path.exists()]
    if missing:
        logger.error("no such file or folder: %s", ", ".join(str(p) for p in missing))
        return 2
    files = find_inputs(args.inputs)
    if not files:
        logger.error("no audio files found in %s", ", ".join(str(p) for p in args.inputs))
        return 1
    lines, failed, damage = [], 0, Counter()
    for path in files:
        record = analyse_one(path)
        failed += record["status"] == "failed"
        damage.update(record.get("damage", []))
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if args.output is None:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            lines.append(line)
    if args.output is not None:
        with atomic_path(args.output) as tmp:
            tmp.write_text("".join(lines), encoding="utf-8")
    logger.info("analysed %d files, %d failed; damage found: %s%s", len(files), failed,
                dict(damage) or "none",
                f"; report {args.output}" if args.output is not None else "")
    return 1 if failed else 0


def analysis_record(
    path: str | Path, *, sample_rate: int = 48000,
    thresholds: DiagnosisThresholds | None = None,
) -> dict[str, Any]:
    """One file's JSON-ready record (``status`` "ok"), from restoration's own first pass
    (``hireslm.pipeline.source.analyse_file``), so ``analyze`` reports exactly what
    ``restore`` decides from.

    Raises:
        UnreadableAudioError, EmptyAudioError, NonFiniteAudioError.
    """
    analysis = analyse_file(path, sample_rate, thresholds)
    channels = analysis.channel_analysis
    return {
        "input": str(path),
        "status": "ok",
        "sample_rate": int(analysis.sample_rate),
        "channels": int(analysis.channels),
        "duration_s": round(analysis.frames_48k / sample_rate, 3),
        "format": audio_info(path).format,
        "subtype": analysis.subtype,
        "damage": sorted({name for channel in channels for name in channel.flags.names()}),
        "analysis": [channel.to_dict() for channel in channels],
    }

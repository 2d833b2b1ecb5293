"""``hireslm analyze IN... [-o report.jsonl]``: measure each file's damage before restoring.

One JSON line per file: input path, native sample rate, channels, duration, format, the
damage flags raised on any channel, and per channel the measurements and flags
(``hireslm.analysis``; what they mean in docs/analysis.md). Lines go to stdout, or with ``-o``
to a JSONL file written atomically once all files are done (never over one of the inputs).
A file that cannot be read gets a line with ``"status": "failed"`` and the error. A name
that is not valid UTF-8 is written losslessly: ``input`` holds it with each undecodable byte
as ``\\xNN`` (readable) and ``input_bytes_hex`` the exact bytes of the name
(``os.fsdecode(bytes.fromhex(...))`` opens the file). Exit status: 0, 1 if any file failed
(or none was found), 2 for a missing input path or an output that is an input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hireslm.analysis import DiagnosisThresholds
from hireslm.analysis.first_pass import analyse_source
from hireslm.audio import audio_info
from hireslm.audio.errors import AudioError
from hireslm.audio.source import FileSource
from hireslm.audiotree import TreeProblem, scan_audio
from hireslm.fileio import atomic_path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="write the JSONL report here (default: stdout)")


def find_inputs(inputs: list[Path]) -> tuple[list[Path], list[TreeProblem]]:
    """Files as given (any name), then each folder's audio files (``hireslm.audiotree``
    rules), with what the walk could not take. Repeats are dropped, the first one kept."""
    found: list[Path] = []
    problems: list[TreeProblem] = []
    for item in inputs:
        if item.is_dir():
            tree = scan_audio(item)
            found += [item / rel for rel in tree.files]
            problems += tree.problems
        else:
            found.append(item)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), problems


def path_fields(path: str | Path) -> dict[str, str]:
    """``{"input": name}`` for a name that is valid UTF-8; otherwise ``input`` with each
    undecodable byte as ``\\xNN`` and ``input_bytes_hex``, the name's bytes in hex: lossless
    in JSON, where the name as Python holds it (lone surrogates) cannot be written."""
    raw = os.fsencode(path)
    try:
        return {"input": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"input": raw.decode("utf-8", "backslashreplace"), "input_bytes_hex": raw.hex()}


def _printable(text: str) -> str:
    """``text`` with the lone surrogates of an undecodable file name as ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def analyse_one(path: Path) -> dict[str, Any]:
    """The record of one file; a file that cannot be analysed gets a ``failed`` record."""
    try:
        return analysis_record(path)
    except (AudioError, OSError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
        logger.error("%s", message if str(path) in message else f"{path}: {message}")
        return {**path_fields(path), "status": "failed", "error": _printable(message)}


def output_is_an_input(output: Path, inputs: list[Path], files: list[Path]) -> bool:
    """Whether the report would be written over a file given or found as an input."""
    target = output.resolve()
    return any(path.resolve() == target for path in [*inputs, *files] if not path.is_dir())


def run(args: argparse.Namespace) -> int:
    missing = [path for path in args.inputs if not path.exists()]
    if missing:
        logger.error("no such file or folder: %s", ", ".join(str(p) for p in missing))
        return 2
    files, problems = find_inputs(args.inputs)
    if args.output is not None and output_is_an_input(args.output, args.inputs, files):
        logger.error("%s: the report would overwrite this input; name another file with -o",
                     args.output)
        return 2
    if not files and not problems:
        logger.error("no audio files found in %s", ", ".join(str(p) for p in args.inputs))
        return 1
    lines, failed, damage = [], 0, Counter()
    unreadable = [{**path_fields(p.path), "status": "failed", "error": _printable(p.reason)}
                  for p in problems if p.lost]
    for item in [*unreadable, *files]:
        record = item if isinstance(item, dict) else analyse_one(item)
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
    logger.info("analysed %d files, %d failed; damage found: %s%s",
                len(files) + len(unreadable), failed,
                dict(damage) or "none",
                f"; report {args.output}" if args.output is not None else "")
    return 1 if failed else 0


def analysis_record(
    path: str | Path, *, sample_rate: int = 48000,
    thresholds: DiagnosisThresholds | None = None,
) -> dict[str, Any]:
    """One file's JSON-ready record (``status`` "ok"), from restoration's own first pass
    (``hireslm.analysis.first_pass.analyse_source``), so ``analyze`` reports exactly what
    ``restore`` decides from.

    Raises:
        UnreadableAudioError, EmptyAudioError, NonFiniteAudioError.
    """
    analysis = analyse_source(FileSource(path), sample_rate, thresholds)
    channels = analysis.channel_analysis
    return {
        **path_fields(path),
        "status": "ok",
        "sample_rate": int(analysis.sample_rate),
        "channels": int(analysis.channels),
        "duration_s": round(analysis.frames_48k / sample_rate, 3),
        "format": audio_info(path).format,
        "subtype": analysis.subtype,
        "damage": sorted({name for channel in channels for name in channel.flags.names()}),
        "analysis": [channel.to_dict() for channel in channels],
    }

"""The restore report: one JSON line per file, kept whole through kills and reruns.

Each record is appended, flushed and synced as soon as its file is done, so a killed run keeps
what it did. A kill mid-write can leave a cut-off last line: readers skip it (with a
warning), the next append starts on a fresh line, and the merge of per-process parts
rewrites the report atomically without the cut-off line and without repeating a record.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hireslm.fileio import write_jsonl_atomic

logger = logging.getLogger(__name__)

REPORT_NAME = "restore_report.jsonl"
PART_PATTERN = "restore_report.rank*.jsonl"


def part_name(rank: int) -> str:
    """The report part of process ``rank`` in a multi-process run."""
    return f"restore_report.rank{rank}.jsonl"


class ReportWriter:
    """Appends one UTF-8 JSON line per record, flushed and synced."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = _line(record)
        with open(self.path, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a killed writer's cut-off line: leave it alone
                    line = "\n" + line
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


def read_report(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a report file; lines that are not whole JSON objects are skipped and
    counted in a warning (a cut-off line from a killed run). A missing file has none."""
    path = Path(path)
    if not path.is_file():
        return []
    records, damaged = [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                damaged += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged += 1
    if damaged:
        logger.warning("%s: skipped %d damaged line(s) (cut off by a killed run?)", path,
                       damaged)
    return records


def merge_reports(out_dir: str | os.PathLike) -> Path:
    """Fold the per-process parts into the main report, atomically and without repeats.

    The main report is rewritten whole (its records, then each part's not already in it)
    before the parts are removed, so a kill at any point loses nothing and a rerun of the
    merge adds nothing twice.
    """
    out_dir = Path(out_dir)
    main = out_dir / REPORT_NAME
    parts = sorted(out_dir.glob(PART_PATTERN))
    if not parts:
        return main
    records: dict[str, dict[str, Any]] = {}
    for source in [main, *parts]:
        for record in read_report(source):
            records.setdefault(_line(record), record)
    write_jsonl_atomic(main, records.values())
    for part in parts:
        part.unlink()
    return main


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"

"""The restore report: one JSON line per file, kept whole through kills and reruns.

Each record is appended, flushed and synced as soon as its file is done, so a killed run keeps
what it did. A kill mid-write can leave a cut-off last line: readers skip it (with a
warning), the next append starts on a fresh line, and the merge of per-process parts
rewrites the report atomically without the cut-off line and without repeating a record.

The report and its parts are opened without following links, and only as regular files
(``hireslm.fileio.open_own_file``): a link planted at ``OUT/restore_report.jsonl`` is
refused with one line, never appended to or read through.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hireslm.fileio import open_own_file, write_jsonl_atomic

logger = logging.getLogger(__name__)

REPORT_NAME = "restore_report.jsonl"
PART_PATTERN = "restore_report.rank*.jsonl"
WHAT = "the restore report"


def part_name(rank: int) -> str:
    """The report part of process ``rank`` in a multi-process run."""
    return f"restore_report.rank{rank}.jsonl"


class ReportWriter:
    """Appends one UTF-8 JSON line per record, flushed and synced.

    Raises:
        UnsafePathError: (a ``ValueError``) on creation or on a write, when the report's path
            is a link or not a regular file; nothing is written.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(self.path):  # refused before any work, not at the first record
            os.close(open_own_file(self.path, os.O_RDONLY, what=WHAT))

    def write(self, record: dict[str, Any]) -> None:
        line = _line(record)
        fd = open_own_file(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, what=WHAT)
        with os.fdopen(fd, "a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a killed writer's cut-off line: leave it alone
                    line = "\n" + line
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


def read_report(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a report file; lines that are not whole JSON objects are skipped and
    counted in a warning (a cut-off line from a killed run). A missing file has none.

    Raises:
        UnsafePathError: ``path`` is a link or not a regular file (it is not read through).
    """
    path = Path(path)
    try:
        fd = open_own_file(path, os.O_RDONLY, what=WHAT)
    except FileNotFoundError:
        return []
    records, damaged = [], 0
    with open(fd, encoding="utf-8", errors="replace") as handle:
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
    merge adds nothing twice. A report or part that is a link is refused (``UnsafePathError``)
    and the parts are kept, for a rerun to merge once it is gone.
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

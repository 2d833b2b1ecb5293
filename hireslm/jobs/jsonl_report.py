"""The restore report: one JSON line per file, kept whole through kills and reruns.

Each record is appended, flushed and synced as soon as its file is done, so a killed run keeps
what it did. A kill mid-write can leave a cut-off last line: readers skip it (with a
warning), the next append starts on a fresh line, and the merge of per-process parts
rewrites the report atomically without the cut-off line and without repeating a record.

Every path is kept, whatever its bytes: a name that is not valid UTF-8 (``caf\\xe9.wav``
from a Latin-1 archive) is written as text with each such byte as ``\\xNN``, and
``input_bytes``/``output_bytes`` (hex) hold the exact path (``record_path`` reads it back).

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
PATH_FIELDS = ("input", "output")  # each gets a ``<field>_bytes`` twin when not UTF-8


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


# The type of each field a reader relies on (None: may be null); other fields are free.
_NUMBER, _TEXT, _LIST, _OBJECT = "a number", "text", "a list", "an object"
FIELD_TYPES = {
    "input": (_TEXT, False), "output": (_TEXT, True), "status": (_TEXT, False),
    "error": (_TEXT, True), "reason": (_TEXT, True), "checkpoint": (_TEXT, True),
    "duration_s": (_NUMBER, True), "processing_s": (_NUMBER, True),
    "real_time_factor": (_NUMBER, True), "input_sample_rate": (_NUMBER, True),
    "channels": (_NUMBER, True), "gain_db": (_NUMBER, True),
    "level_change_db": (_NUMBER, True), "speech_change_db": (_NUMBER, True),
    "warnings": (_LIST, True), "analysis": (_LIST, True), "treatment": (_OBJECT, True),
    "settings": (_OBJECT, True),
}
_CHECKS = {_NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           _TEXT: lambda v: isinstance(v, str), _LIST: lambda v: isinstance(v, list),
           _OBJECT: lambda v: isinstance(v, dict)}


def record_problem(record: dict[str, Any]) -> str | None:
    """Why a report line cannot be shown as a file's result (a field of the wrong type, as
    a hand edit or another program may leave), None when it can."""
    if "input" not in record:
        return "it names no input"
    for field, (kind, nullable) in FIELD_TYPES.items():
        if field not in record or (record[field] is None and nullable):
            continue
        if not _CHECKS[kind](record[field]):
            return f"{field} is not {kind}: {json.dumps(record[field], ensure_ascii=False)[:60]}"
    if not all(isinstance(c, dict) for c in record.get("analysis") or []):
        return "analysis is not a list of objects"
    if not all(isinstance(w, str) for w in record.get("warnings") or []):
        return "warnings is not a list of text"
    return None


def escape_text(text: str) -> str:
    """``text`` with each byte that is not UTF-8 (held as a surrogate, as ``os.fsdecode``
    gives it) written ``\\xNN``: text that any UTF-8 reader takes; ``text`` when it has none."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte decoded to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def record_path(record: dict[str, Any], field: str = "input") -> str | None:
    """The exact path in ``record[field]`` (``os.fsdecode`` of its ``<field>_bytes`` where
    the name is not UTF-8); None when the record has none or it is not text."""
    exact = record.get(f"{field}_bytes")
    if isinstance(exact, str):
        try:
            return os.fsdecode(bytes.fromhex(exact))
        except ValueError:
            pass
    value = record.get(field)
    return value if isinstance(value, str) else None


def storable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as the report keeps it: every text UTF-8 (``escape_text``), and the exact
    bytes of a path field that had to be escaped in ``<field>_bytes``."""
    clean = _escaped(record)
    for field in PATH_FIELDS:
        value = record.get(field)
        if isinstance(value, str) and clean[field] != value:
            clean[f"{field}_bytes"] = os.fsencode(value).hex()
    return clean


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): _escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value


def _line(record: dict[str, Any]) -> str:
    return json.dumps(storable(record), sort_keys=True, ensure_ascii=False) + "\n"

"""Atomic file writes: every file hireslm writes appears whole or not at all.

A temp file is created beside the target (same file system, so the rename is atomic), filled,
given the permissions a plain ``open()`` would have (``0o666`` less the umask; ``mkstemp``
makes it owner-only), and renamed over the target. On any error, or a kill before the rename,
the target is untouched and the temp file (``.NAME.*.part``) is removed or left for cleanup.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PART_SUFFIX = ".part"


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What a plain open() would give. The umask is read once: os.umask can only be read by
# setting it, which would race with other threads creating files if done on every write.
FILE_MODE = 0o666 & ~_read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; rename it onto ``path`` on a clean exit.

    The parent folder is created. Whatever raises inside the block deletes the temp file and
    leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX,
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True,
                                              ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line (UTF-8, not escaped) atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)

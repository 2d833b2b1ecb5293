"""Atomic file writes: every file hireslm writes appears whole or not at all.

A temp file is created beside the target (same file system, so the rename is atomic), filled,
given the permissions a plain ``open()`` would have (``0o666`` less the umask; it is
created owner-only), and renamed over the target. On any error, or a kill before the rename,
the target is untouched and the temp file is removed or left for cleanup.

The temp file is ``.NAME.<8 hex>.part``; when that would pass the 255-byte limit on a name
(a legal NAME of 241-255 bytes), ``.<sha256 of NAME, 32 hex>.<8 hex>.part``. ``part_glob``
is the pattern of NAME's temp files and of no other name's, so a cleanup of NAME's leftovers
never takes the live temp file of another (``a.wav`` against ``a.wav.flac.wav``).

A file written in place (a lock, an appended report) is opened by ``open_own_file``, which
never follows a symbolic link and opens only a regular file.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PART_SUFFIX = ".part"
NAME_MAX = 255  # bytes in one file name, on every file system hireslm writes to
_TOKEN_HEX = 8  # the random part of a temp name


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What a plain open() would give. The umask is read once: os.umask can only be read by
# setting it, which would race with other threads creating files if done on every write.
FILE_MODE = 0o666 & ~_read_umask()


class UnsafePathError(ValueError):
    """A file hireslm would write in place (append to, truncate) is a symbolic link, not a
    regular file, or not the user's: refused, never written through."""


def open_own_file(path: str | os.PathLike, flags: int, *, what: str, owned: bool = False,
                  single: bool = False) -> int:
    """``os.open`` that never follows a link at ``path`` and opens only a regular file.

    ``flags`` as for ``os.open`` (``O_CREAT`` makes a ``0o666``-less-umask file); ``what``
    names the file in the message. ``owned``: refuse a file of another user; ``single``:
    refuse a file with other names (hard links), whose other names would change with it.
    Returns the descriptor.

    Raises:
        UnsafePathError: a link (or a link loop), or not a regular file, or refused as above;
            the message is one line.
    """
    try:  # O_NONBLOCK: a FIFO placed here must not hang the open (it is refused below)
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path}: {what} is a symbolic link; hireslm never writes "
                                  "through one: remove it") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
            raise UnsafePathError(f"{path}: {what} is not a regular file: remove it") from None
        raise
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file: remove it"
    elif owned and info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid}): remove it"
    elif single and info.st_nlink > 1:
        problem = "has other names (hard links), which writing it would change: remove it"
    if problem is not None:
        os.close(fd)
        raise UnsafePathError(f"{path}: {what} {problem}")
    os.set_blocking(fd, True)
    return fd


def part_prefix(name: str) -> str:
    """The start of ``name``'s temp file names: ``.NAME.``, or ``.<hash>.`` for a name too
    long to take the ``.`` before it and the ``.<token>.part`` after it."""
    if len(os.fsencode(name)) + 2 + _TOKEN_HEX + len(PART_SUFFIX) <= NAME_MAX:
        return f".{name}."
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}."


def part_glob(name: str) -> str:
    """A ``glob`` pattern (for ``Path.glob`` in the target's folder) matching the temp files
    of ``name`` and of no other name."""
    return glob.escape(part_prefix(name)) + "[0-9a-f]" * _TOKEN_HEX + PART_SUFFIX


def _create_temp(path: Path) -> Path:
    """A new empty owner-only file beside ``path``, named by ``part_prefix``."""
    prefix = part_prefix(path.name)
    while True:
        tmp = path.with_name(prefix + secrets.token_hex(_TOKEN_HEX // 2) + PART_SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; rename it onto ``path`` on a clean exit.

    The parent folder is created. Whatever raises inside the block deletes the temp file and
    leaves ``path`` as it was. The rename replaces whatever is at ``path``, a symbolic link
    included: a link there is replaced, never followed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
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

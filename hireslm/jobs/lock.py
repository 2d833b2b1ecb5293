"""One restore run per output folder, and its processes finishing together.

The lock is an advisory lock file, ``OUT/.hireslm-restore.lock``.

Two runs writing one folder would take each other's temp files for a killed run's leftovers
and delete them, and would do files twice. So the first process of a run (rank 0) takes an
exclusive ``flock`` on the lock file and writes who it is; the operating system drops the lock
when that process ends, however it ends, so a killed run never leaves the folder locked. The
other processes of the same run (``accelerate launch``, ``torchrun``) wait until the lock is
held by their own run, recognised by the launcher's rendezvous (run id, master address and
port); a process of any other run refuses with a message naming the holder.

When a process of a multi-process run is done it leaves a marker,
``OUT/.hireslm-restore.rank<R>.done``, with its counts and the run's token (which the lock
holder draws afresh, so a marker from an earlier run never counts). Process 0 waits for every
marker before it merges the report: a real barrier through the shared output folder, which
works whatever the launcher (accelerate on CPUs reports no distributed state at all) and
across machines, and lets each process run as long as its files take.

The lock file is opened without following links, and only when it is a regular file of the
user's with no other name (``hireslm.fileio.open_own_file``): taking the lock truncates it,
and a link or hard link planted there must not take another file with it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

from hireslm.fileio import UnsafePathError, open_own_file, write_json_atomic

logger = logging.getLogger(__name__)

LOCK_NAME = ".hireslm-restore.lock"
TAKE_ATTEMPTS = 40


class OutputFolderLockedError(RuntimeError):
    """Another restore run is writing to the output folder."""


class LockFileError(OutputFolderLockedError):
    """The output folder's lock file cannot be used safely (a link, not a regular file, or
    another user's): the folder is refused as if held."""


def run_identity() -> str:
    """What every process of one launch shares and no other concurrent launch does."""
    if "MASTER_PORT" not in os.environ:
        return f"pid:{os.getpid()}@{socket.gethostname()}"
    return ":".join(os.environ.get(key, "") for key in
                    ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))


class OutputFolderLock:
    """Hold ``out_dir``'s lock for one run (a context manager).

    ``rank`` 0 takes the lock; other ranks wait up to ``wait_s`` for their rank 0 to take it.

    Raises:
        OutputFolderLockedError: on entering, when another run holds the folder.
    """

    def __init__(self, out_dir: str | os.PathLike, rank: int = 0, wait_s: float = 120.0) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.rank = rank
        self.wait_s = wait_s
        self.identity = run_identity()
        self.token: str | None = None  # this run's, once the lock is held
        self._handle: IO[str] | None = None

    def __enter__(self) -> OutputFolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            self._take()
        else:
            self._wait_for_own_run()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock; the file stays, harmless
            self._handle = None

    def _take(self) -> None:
        try:
            fd = open_own_file(self.path, os.O_RDWR | os.O_CREAT,
                               what="the output folder's lock file", owned=True, single=True)
        except UnsafePathError as exc:
            raise LockFileError(str(exc)) from None
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        # The other ranks test the lock with a brief shared lock: retry past those moments.
        for attempt in range(TAKE_ATTEMPTS):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == TAKE_ATTEMPTS - 1:
                    handle.close()
                    raise OutputFolderLockedError(
                        self._busy_message(read_holder(self.path))) from None
                time.sleep(0.05)
        self.token = uuid.uuid4().hex
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"run": self.identity, "token": self.token, "pid": os.getpid(),
                                 "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        handle.flush()
        self._handle = handle

    def _wait_for_own_run(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            holder = read_holder(self.path) if is_held(self.path) else None
            if holder is not None and holder.get("run") == self.identity:
                self.token = str(holder.get("token"))
                return
            if holder is not None:
                raise OutputFolderLockedError(self._busy_message(holder))
            if time.monotonic() > deadline:
                raise OutputFolderLockedError(
                    f"{self.path.parent}: process 0 of this run did not take the output "
                    f"folder's lock within {self.wait_s:.0f} s")
            time.sleep(0.2)

    def mark_done(self, rank: int, counts: Counter) -> None:
        """Say that process ``rank`` of this run has finished, with its counts by status."""
        write_json_atomic(self.path.parent / done_name(rank),
                          {"token": self.token, "counts": dict(counts)})

    def wait_for_ranks(self, world_size: int, poll_s: float = 0.5) -> Counter:
        """Block until every process of this run has called ``mark_done``; their counts,
        added up. The markers are removed once read. A process that dies takes the launcher
        and this one with it, so there is no time limit: a process may restore for hours."""
        pending = set(range(world_size))
        total: Counter = Counter()
        last_said = time.monotonic()
        while pending:
            for rank in sorted(pending):
                marker = _read_object(self.path.parent / done_name(rank))
                if marker is not None and marker.get("token") == self.token:
                    total.update(marker.get("counts", {}))
                    pending.discard(rank)
            if pending:
                if time.monotonic() - last_said > 60:
                    logger.info("waiting for process(es) %s to finish", sorted(pending))
                    last_said = time.monotonic()
                time.sleep(poll_s)
        for rank in range(world_size):
            (self.path.parent / done_name(rank)).unlink(missing_ok=True)
        return total

    def _busy_message(self, holder: dict[str, Any] | None) -> str:
        who = "another hireslm restore" if not holder else (
            f"another hireslm restore (pid {holder.get('pid')} on {holder.get('host')}, "
            f"started {holder.get('started')})")
        return (f"{self.path.parent} is being written by {who}; wait for it to finish or "
                "choose another output folder")


def done_name(rank: int) -> str:
    return f".hireslm-restore.rank{rank}.done"


def is_held(path: Path) -> bool:
    """True when some process holds ``path``'s flock (never through a link)."""
    try:
        handle = os.fdopen(_open_no_follow(path), encoding="utf-8")
    except OSError:  # absent, or a link: no lock of a run
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def read_holder(path: Path) -> dict[str, Any] | None:
    """Who wrote the lock file (None while it is being written, or unreadable)."""
    return _read_object(path)


def _read_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when absent, unreadable, a link or not an object."""
    try:
        with os.fdopen(_open_no_follow(path), encoding="utf-8") as handle:
            found = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _open_no_follow(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)

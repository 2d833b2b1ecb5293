"""Exceptions raised for audio that cannot be restored or trained on."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class AudioError(ValueError):
    """Base class: the audio at hand cannot be used; the message says why."""


class UnreadableAudioError(AudioError):
    """The file does not exist, is corrupt, or is in a format soundfile cannot decode."""


class EmptyAudioError(AudioError):
    """The audio holds no samples."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


# Below this every sample is digital silence: about -120 dBFS, below any real recording's
# noise floor.
SILENCE_THRESHOLD = 1e-6


class SilentAudioError(AudioError):
    """The audio is digital silence (every sample below the silence threshold)."""


class UnsupportedAudioError(AudioError):
    """The audio is readable but outside what hireslm restores (sample rate, level)."""


class AudioWriteError(OSError):
    """An audio file cannot be written (no space left, permission denied, ...); the message
    names the file once and says why in the user's terms."""

    def __init__(self, message: str, errno_code: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_code

    def __str__(self) -> str:
        return str(self.args[0])


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be opened for reading at all, in the user's terms, or None when it
    can (its content is then to blame). libsndfile says "System error." or "File does not
    exist or is not a regular file" for all of these; the file system says which it is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except PermissionError:
        return "permission denied (a folder above it cannot be entered)"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an audio file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a pipe or device?)"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        return "permission denied: this user may not read it (check its permissions)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def write_reason(path: str | os.PathLike, errno_code: int | None, fallback: str) -> str:
    """Why writing into ``path``'s folder failed, in the user's terms.

    ``errno_code`` is the C library's errno (libsndfile's "System error." hides it), checked
    against the folder itself: a full file system is named even when no errno came back.
    """
    folder = Path(path).parent
    if errno_code in (errno.ENOSPC, errno.EDQUOT) or (
            not errno_code and _free_bytes(folder) < LOW_SPACE_BYTES):
        return f"no space left on device ({_free_bytes(folder) // 1024} KiB free in {folder})"
    if errno_code == errno.EROFS:
        return f"read-only file system ({folder})"
    if errno_code in (errno.EACCES, errno.EPERM) or (
            not errno_code and not os.access(folder, os.W_OK)):
        return f"permission denied: this user may not write in {folder}"
    if errno_code:
        return os.strerror(errno_code)
    return fallback


# Below this a failed write that came with no errno is taken for a full disk (a header
# rewrite or a FLAC frame can fail with this much still free).
LOW_SPACE_BYTES = 1 << 20


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return LOW_SPACE_BYTES  # unknown: do not claim a full disk
    return st.f_bavail * st.f_frsize

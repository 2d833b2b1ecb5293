"""What a full pass over a file found (its decoded length, its frame headers), kept per
(file, size, modification time).

A restore asks for a file's info for its progress total, its analysis and its report
thumbnail; where finding the answer means reading the whole file, each ask would otherwise
read it again. A file changed in place (new size or time) is read afresh.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


def file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    """``(real path, size, mtime_ns)``; raises ``OSError`` as ``os.stat`` does."""
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


class FileCache(Generic[Value]):
    """A bounded cache of one kind of answer per file, oldest dropped first."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._answers: OrderedDict[Hashable, Value] = OrderedDict()

    def get(self, path: str | os.PathLike, compute: Callable[[], Value],
            *extra: Hashable) -> Value:
        """The answer for ``path`` (and ``extra``, the question's own arguments), computed
        by ``compute()`` when not kept. Raises ``OSError`` when ``path`` cannot be stat'ed."""
        key = (*file_key(path), *extra)
        if key not in self._answers:
            self._answers[key] = compute()
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return self._answers[key]

    def clear(self) -> None:
        self._answers.clear()

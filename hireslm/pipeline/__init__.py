"""Restoration: ``RestorationPipeline`` and the streaming, batch and chunking machinery.

The names load with their module on first use: planning a run (``hireslm.pipeline.plan``,
``lock``, ``report``) imports neither torch nor the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hireslm.pipeline.files import RestoredFile, restore_file
    from hireslm.pipeline.options import RestoreOptions
    from hireslm.pipeline.pipeline import RestorationPipeline

# name -> the module that defines it, imported on first use
_EXPORTS = {
    "RestoredFile": "hireslm.pipeline.files",
    "restore_file": "hireslm.pipeline.files",
    "RestoreOptions": "hireslm.pipeline.options",
    "RestorationPipeline": "hireslm.pipeline.pipeline",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "RestorationPipeline",
    "RestoreOptions",
    "RestoredFile",
    "restore_file",
]

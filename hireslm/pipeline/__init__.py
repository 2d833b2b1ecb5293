"""Restoration: ``RestorationPipeline`` and the streaming, batch and chunking machinery.

The names load with their module on first use: planning a run (``hireslm.pipeline.plan``,
``lock``, ``report``) imports neither torch nor the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hireslm.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "RestorationPipeline",
    "RestoreOptions",
    "RestoredFile",
    "restore_file",
]

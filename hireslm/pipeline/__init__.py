"""Restoration: ``RestorationPipeline`` and the streaming, batch and chunking machinery."""

from hireslm.pipeline.files import RestoredFile, restore_file
from hireslm.pipeline.options import RestoreOptions
from hireslm.pipeline.pipeline import RestorationPipeline

__all__ = ["RestoredFile", "RestorationPipeline", "RestoreOptions", "restore_file"]

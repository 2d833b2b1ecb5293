"""The signal level: ``RestorationPipeline.restore(source, options)`` turns one recording
(a file, or samples in memory) into restored 48 kHz audio with the account of every
decision and its evidence. Folders, reports and processes are ``hireslm.jobs``."""

from hireslm.options import RestoreOptions
from hireslm.pipeline.account import RestorationAccount
from hireslm.pipeline.restoration import Restoration, RestorationPipeline, RestoredAudio

__all__ = [
    "RestorationAccount",
    "RestorationPipeline",
    "Restoration",
    "RestoreOptions",
    "RestoredAudio",
]

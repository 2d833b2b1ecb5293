"""Repair of local damage in a recording, NumPy only.

- ``declip``: consistent A-SPADE declipping (Kitić et al. 2015; Záviška et al. 2021) on
  overlapping frames; unclipped samples are kept exactly, restored ones reach at least the
  clip level with the input's sign.
"""

from hireslm.repair.clip_detect import (
    ClipLevelMeter,
    ClipLevels,
    clipped_masks,
    estimate_clip_levels,
)
from hireslm.repair.declip import DeclipResult, DeclipSettings, declip
from hireslm.repair.runs import Runs

__all__ = [
    "ClipLevelMeter",
    "ClipLevels",
    "DeclipResult",
    "DeclipSettings",
    "Runs",
    "clipped_masks",
    "declip",
    "estimate_clip_levels",
]

"""Repair of local damage in a recording, NumPy only: clipped runs and short dropouts.

- ``declip``: consistent A-SPADE declipping (Kitić et al. 2015; Záviška et al. 2021) on
  overlapping frames; unclipped samples are kept exactly, restored ones reach at least the
  clip level with the input's sign.
- ``fill_dropouts``: short gaps inside speech (packet loss, tape damage) found and filled by
  Janssen's iterative AR interpolation (Janssen et al. 1986) from both neighbours; samples
  outside the gaps are kept exactly.
- ``repair``: both, on an in-memory signal; ``LocalRepairer``: both over a stream of
  blocks with bounded memory and the same output.

See docs/repair.md for the methods, measurements and cost.
"""

from hireslm.repair.clip_detect import (
    ClipLevelMeter,
    ClipLevels,
    clipped_masks,
    estimate_clip_levels,
)
from hireslm.repair.declip import DeclipResult, DeclipSettings, declip
from hireslm.repair.dropout_detect import DropoutSettings, detect_dropouts
from hireslm.repair.dropouts import (
    DropoutRepairSettings,
    DropoutResult,
    FillSettings,
    fill_dropouts,
)
from hireslm.repair.local import RepairResult, RepairSettings, repair
from hireslm.repair.runs import Runs
from hireslm.repair.stream import LocalRepairer

__all__ = [
    "ClipLevelMeter",
    "ClipLevels",
    "DeclipResult",
    "DeclipSettings",
    "DropoutRepairSettings",
    "DropoutResult",
    "DropoutSettings",
    "FillSettings",
    "LocalRepairer",
    "RepairResult",
    "RepairSettings",
    "Runs",
    "clipped_masks",
    "declip",
    "detect_dropouts",
    "estimate_clip_levels",
    "fill_dropouts",
    "repair",
]

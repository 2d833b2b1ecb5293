"""Both local repairs of an in-memory signal: declip, then fill dropouts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hireslm.repair.clip_detect import ClipLevels
from hireslm.repair.declip import DeclipSettings, declip
from hireslm.repair.dropouts import DropoutRepairSettings, fill_dropouts
from hireslm.repair.runs import Runs


@dataclass(frozen=True)
class RepairSettings:
    """``declip`` / ``dropouts``: each repair's settings, ``None`` to skip it."""

    declip: DeclipSettings | None = field(default_factory=DeclipSettings)
    dropouts: DropoutRepairSettings | None = field(default_factory=DropoutRepairSettings)


@dataclass(frozen=True)
class RepairResult:
    """``wave``: repaired, shaped like the input (the input's float dtype; float64 for
    integer input, in its units). ``clip_levels``: the levels used (``None`` when declipping
    was skipped). ``clipped``, ``dropouts``: the runs repaired, ``hireslm.repair.Runs``
    (``.summary(sample_rate)`` for a report)."""

    wave: np.ndarray
    clip_levels: ClipLevels | None
    clipped: Runs
    dropouts: Runs

    @property
    def changed(self) -> bool:
        """Whether any sample was repaired."""
        return bool(len(self.clipped) or len(self.dropouts))

    def summary(self, sample_rate: int) -> dict[str, dict[str, float | int]]:
        """JSON-ready account: totals of each kind of run."""
        return {"clipped": self.clipped.summary(sample_rate),
                "dropouts": self.dropouts.summary(sample_rate)}


def repair(
    wave: np.ndarray, sample_rate: int, *, clip_levels: ClipLevels | None = None,
    settings: RepairSettings = RepairSettings(),
) -> RepairResult:
    """Declip (``hireslm.repair.declip``), then fill dropouts (``hireslm.repair.dropouts``).

    Args:
        wave: ``(C, N)`` or ``(N,)``, float or integer, at the file's own rate if it can be
            (resampling smears clipped plateaus).
        clip_levels: measured beforehand (``ClipLevelMeter``), else taken from ``wave``.
    Returns:
        ``RepairResult``; samples outside every repaired run are the input's, bit for bit.
    """
    x = np.asarray(wave)
    levels, clipped, dropped = None, Runs(), Runs()
    if settings.declip is not None:
        declipped = declip(x, sample_rate, levels=clip_levels, settings=settings.declip)
        x, levels, clipped = declipped.wave, declipped.levels, declipped.runs
    if settings.dropouts is not None:
        filled = fill_dropouts(x, sample_rate, settings=settings.dropouts)
        x, dropped = filled.wave, filled.runs
    if x is wave:
        x = np.array(x, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
    return RepairResult(x, levels, clipped, dropped)

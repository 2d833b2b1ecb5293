"""Diffusion objectives and samplers; they see a model only as ``model(x_t, t, cond)``."""

from hireslm.diffusion.objectives import (
    OBJECTIVES,
    DDPMObjective,
    FlowMatchingObjective,
    build_objective,
)
from hireslm.diffusion.sampling import build_scheduler, sample

__all__ = [
    "DDPMObjective", "FlowMatchingObjective", "OBJECTIVES", "build_objective",
    "build_scheduler", "sample",
]

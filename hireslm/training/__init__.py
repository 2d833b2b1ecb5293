"""One accelerate training loop (``fit``) and the stages that plug into it."""

from hireslm.training.loop import fit
from hireslm.training.stage import NonFiniteLossError, Stage, StageBase, TrainingParts

__all__ = ["NonFiniteLossError", "Stage", "StageBase", "TrainingParts", "fit"]

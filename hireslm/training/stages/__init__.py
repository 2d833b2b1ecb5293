"""Training stages: name -> class (a plain dict, no import-time registry)."""

from __future__ import annotations

from hireslm.training.stages.dit import DiTStage
from hireslm.training.stages.recovery import RecoveryStage
from hireslm.training.stages.vae import VAEStage
from hireslm.training.stages.vocoder import VocoderStage

STAGE_CLASSES: dict[str, type] = {
    "vae": VAEStage,
    "dit": DiTStage,
    "vocoder": VocoderStage,
    "recovery": RecoveryStage,
}

__all__ = ["STAGE_CLASSES", "DiTStage", "RecoveryStage", "VAEStage", "VocoderStage"]

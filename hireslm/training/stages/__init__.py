"""Training stages: name -> class (a plain dict, no import-time registry)."""

from __future__ import annotations

from hireslm.training.stages.vae import VAEStage

STAGES: dict[str, type] = {
    "vae": VAEStage,
}

__all__ = ["STAGES", "VAEStage"]

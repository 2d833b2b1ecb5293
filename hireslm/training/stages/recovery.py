"""Recovery stage (optional stage 0): a predictive degraded-mel -> clean-mel regressor.

Trained with multi-scale L1 between its output on the degraded log-mel and the clean log-mel.
Its output is what the DiT conditions on when ``dit.recovery_release`` is set (and what the
pipeline feeds the VAE encoder when a release holds a ``recovery`` stage).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hireslm.models.vae import multiscale_mel_l1_loss
from hireslm.training.lora import trainable
from hireslm.training.stage import StageBase, TrainingParts
from hireslm.training.tracking import mel_image


class RecoveryStage(StageBase):
    """Trains ``MODELS[cfg.model.name]`` (``recovery``) on paired mels.

    Args:
        datasets: optional ``(train, val)`` datasets of ``{"clean", "degraded": (1, S)}``
            items; by default built from ``cfg.data``.
    """

    name = "recovery"
    export_key = "recovery"

    def build_parts(self) -> TrainingParts:
        model = self.build_model()
        optimizer = self.make_optimizer(trainable(model))
        return self.training_parts({"recovery": model}, {"recovery": optimizer},
                                   self.build_datasets())

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        model = self.parts.models["recovery"]
        clean, degraded = self.mel(batch["clean"]), self.mel(batch["degraded"])
        pred = model(degraded).float()
        loss = multiscale_mel_l1_loss(pred, clean)
        self.step_optimizer("recovery", loss, model.parameters())
        return {"loss": loss.item(), "mel_l1": F.l1_loss(pred.detach(), clean).item()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        model = self.unwrapped("recovery")
        clean, degraded = self.mel(batch["clean"]), self.mel(batch["degraded"])
        pred = model(degraded).float()
        return {
            "mel_l1": F.l1_loss(pred, clean).item(),
            "mel_l1_input": F.l1_loss(degraded, clean).item(),
            "image/mel_recovered": mel_image(pred[0].cpu().numpy()),
            "image/mel_degraded": mel_image(degraded[0].cpu().numpy()),
            "image/mel_clean": mel_image(clean[0].cpu().numpy()),
        }

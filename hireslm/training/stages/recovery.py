"""Recovery stage (optional stage 0): a predictive degraded-mel -> clean-mel regressor.

Trained with multi-scale L1 between its output on the degraded log-mel and the clean log-mel.
Its output is what the DiT conditions on when ``dit.recovery_release`` is set (and what the
pipeline feeds the VAE encoder when a release holds a ``recovery`` stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from omegaconf import DictConfig
from torch.utils.data import Dataset

from hireslm.audio import AudioConfig, LogMelSpectrogram
from hireslm.models import build_model
from hireslm.models.vae import multiscale_mel_l1_loss
from hireslm.release import save_stage
from hireslm.training.data import build_datasets, data_fingerprint, make_loader
from hireslm.training.finetune import adapt_model, export_model
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

    def __init__(self, datasets: tuple[Dataset, Dataset | None] | None = None) -> None:
        super().__init__()
        self.datasets = datasets

    def build(self, cfg: DictConfig, accelerator: Accelerator) -> TrainingParts:
        self.cfg, self.accelerator = cfg, accelerator
        self.audio = AudioConfig.from_dict(dict(cfg.get("audio", {})))
        self.mel = LogMelSpectrogram(self.audio)
        model = build_model(str(cfg.model.name), cfg.model.kwargs)
        adapt_model(model, cfg, "recovery")
        optim = cfg.optim
        optimizer = torch.optim.AdamW(
            trainable(model), lr=float(optim.lr), betas=tuple(optim.get("betas", (0.9, 0.99))),
            weight_decay=float(optim.get("weight_decay", 0.0)),
        )
        train_set, val_set = self.datasets or build_datasets(cfg)
        return TrainingParts(
            models={"recovery": model},
            optimizers={"recovery": optimizer},
            train_loader=make_loader(train_set, cfg, shuffle=True),
            val_loader=make_loader(val_set, cfg, shuffle=False) if val_set is not None else None,
            ema_models=("recovery",),
            frozen={"mel": self.mel},
        )

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        model = self.parts.models["recovery"]
        clean, degraded = self.mel(batch["clean"]), self.mel(batch["degraded"])
        pred = model(degraded).float()
        loss = multiscale_mel_l1_loss(pred, clean)
        self.step_optimizer("recovery", loss, model.parameters())
        return {"loss": loss.item(), "mel_l1": F.l1_loss(pred.detach(), clean).item()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        model = self.accelerator.unwrap_model(self.parts.models["recovery"])
        clean, degraded = self.mel(batch["clean"]), self.mel(batch["degraded"])
        pred = model(degraded).float()
        return {
            "mel_l1": F.l1_loss(pred, clean).item(),
            "mel_l1_input": F.l1_loss(degraded, clean).item(),
            "image/mel_recovered": mel_image(pred[0].cpu().numpy()),
            "image/mel_degraded": mel_image(degraded[0].cpu().numpy()),
            "image/mel_clean": mel_image(clean[0].cpu().numpy()),
        }

    def export(self, release_dir: Path) -> None:
        live = self.accelerator.unwrap_model(self.parts.models["recovery"])
        model = export_model(self.cfg, "recovery", live)
        save_stage(
            release_dir, "recovery", model,
            meta={"steps": self.steps_done, "data": data_fingerprint(self.cfg),
                  "run_dir": str(self.cfg.run_dir)},
            audio=self.audio,
        )

"""Mel VAE stage: L1 (multi-scale) mel reconstruction + weighted KL; exports the latent scale."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from hireslm.audio import AudioConfig, LogMelSpectrogram
from hireslm.models import build_model
from hireslm.models.vae import kl_loss, multiscale_mel_l1_loss
from hireslm.release import save_stage
from hireslm.training.data import build_datasets, data_fingerprint, make_loader
from hireslm.training.finetune import adapt_model, export_model
from hireslm.training.lora import trainable
from hireslm.training.stage import StageBase, TrainingParts
from hireslm.training.tracking import mel_image

logger = logging.getLogger(__name__)

# The epoch whose crops measure the latent scale, whatever epoch training has reached.
SCALE_EPOCH = 0


class VAEStage(StageBase):
    """Trains ``MODELS[cfg.model.name]`` (a mel VAE) on clean (and optionally degraded) mels.

    Args:
        datasets: optional ``(train, val)`` datasets of ``{"clean": (1, S), "degraded": (1, S)}``
            items; by default they are built from ``cfg.data``.
    """

    name = "vae"

    def __init__(self, datasets: tuple[Dataset, Dataset | None] | None = None) -> None:
        super().__init__()
        self.datasets = datasets

    def build(self, cfg: DictConfig, accelerator: Accelerator) -> TrainingParts:
        self.cfg, self.accelerator = cfg, accelerator
        self.audio = AudioConfig.from_dict(dict(cfg.get("audio", {})))
        self.mel = LogMelSpectrogram(self.audio)
        model = build_model(str(cfg.model.name), cfg.model.kwargs)
        adapt_model(model, cfg, "vae")
        optim = cfg.optim
        optimizer = torch.optim.AdamW(
            trainable(model), lr=float(optim.lr), betas=tuple(optim.get("betas", (0.9, 0.99))),
            weight_decay=float(optim.get("weight_decay", 0.0)),
        )
        train_set, val_set = self.datasets or build_datasets(cfg)
        self.train_set = train_set
        return TrainingParts(
            models={"vae": model},
            optimizers={"vae": optimizer},
            train_loader=make_loader(train_set, cfg, shuffle=True),
            val_loader=make_loader(val_set, cfg, shuffle=False) if val_set is not None else None,
            ema_models=("vae",),
            frozen={"mel": self.mel},
        )

    def _mels(self, batch: dict[str, torch.Tensor], train: bool) -> torch.Tensor:
        """Clean mels ``(B, n_mels, T)``; with ``vae.use_degraded`` also the degraded ones."""
        waves = [batch["clean"]]
        if train and self.cfg.vae.get("use_degraded", False):
            waves.append(batch["degraded"])
        return self.mel(torch.cat(waves, dim=0))

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        vae = self.parts.models["vae"]
        mel = self._mels(batch, train=True)
        recon, posterior = vae(mel, generator=self.generator)
        recon = recon.float()
        rec = multiscale_mel_l1_loss(recon, mel)
        kl = kl_loss(posterior.kl().float(), posterior.mean[0].numel())
        loss = rec + float(self.cfg.vae.kl_weight) * kl
        self.step_optimizer("vae", loss, vae.parameters())
        return {"loss": loss.item(), "mel_l1": F.l1_loss(recon.detach(), mel).item(),
                "kl": kl.item()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        vae = self.accelerator.unwrap_model(self.parts.models["vae"])
        mel = self._mels(batch, train=False)
        recon, posterior = vae(mel, sample_posterior=False)
        recon = recon.float()
        return {
            "mel_l1": F.l1_loss(recon, mel).item(),
            "kl": kl_loss(posterior.kl().float(), posterior.mean[0].numel()).item(),
            "latent_std": posterior.mode().float().std().item(),
            "image/mel_clean": mel_image(mel[0].cpu().numpy()),
            "image/mel_recon": mel_image(recon[0].cpu().numpy()),
        }

    def export(self, release_dir: Path) -> None:
        live = self.accelerator.unwrap_model(self.parts.models["vae"])
        vae = export_model(self.cfg, "vae", live)
        scale = measure_latent_scale(
            vae, self.mel, self.train_set, int(self.cfg.vae.get("scale_batches", 8)),
            int(self.cfg.train.batch_size), self.accelerator.device,
        )
        logger.info("VAE latent scale (1 / std of latent means) = %.4f", scale)
        save_stage(
            release_dir, "vae", vae, extra={"latent_scale": scale},
            meta={"steps": self.steps_done, "data": data_fingerprint(self.cfg),
                  "run_dir": str(self.cfg.run_dir)},
            audio=self.audio,
        )


@torch.no_grad()
def measure_latent_scale(vae: torch.nn.Module, mel: LogMelSpectrogram, dataset: Dataset,
                         num_batches: int, batch_size: int, device: torch.device) -> float:
    """``1 / std`` of the posterior means of clean training mels (what the DiT trains on).

    Measured on the first ``num_batches`` items of ``dataset`` as drawn in epoch
    ``SCALE_EPOCH`` (a copy of a dataset with ``set_epoch`` is used; ``dataset`` keeps its
    epoch), so the same weights always export the same scale, at whatever epoch training ends
    or a finished run is exported again. Uses a plain, unsharded loader so it can run on the
    main process alone.
    """
    was_training = vae.training
    vae.eval()
    if hasattr(dataset, "set_epoch"):
        dataset = copy.copy(dataset)
        dataset.set_epoch(SCALE_EPOCH)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total, total_sq, count = 0.0, 0.0, 0
    for index, batch in enumerate(loader):
        if index >= num_batches:
            break
        z = vae.encode(mel(batch["clean"].to(device))).mode().double()
        total += float(z.sum())
        total_sq += float((z * z).sum())
        count += z.numel()
    vae.train(was_training)
    if count == 0:
        raise ValueError("no training data to measure the latent scale on")
    var = total_sq / count - (total / count) ** 2
    if var <= 0:
        raise FloatingPointError("latents have zero variance; the VAE has collapsed")
    return float(var ** -0.5)

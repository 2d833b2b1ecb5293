"""Mel VAE stage: L1 (multi-scale) mel reconstruction + weighted KL; exports the latent scale."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hireslm.audio import LogMelSpectrogram
from hireslm.models.vae import kl_loss, multiscale_mel_l1_loss
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
    export_key = "vae"

    def build_parts(self) -> TrainingParts:
        model = self.build_model()
        optimizer = self.make_optimizer(trainable(model))
        datasets = self.build_datasets()
        self.train_set = datasets[0]  # the latent scale is measured on it
        return self.training_parts({"vae": model}, {"vae": optimizer}, datasets)

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
        vae = self.unwrapped("vae")
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

    def export_extra(self, model: torch.nn.Module) -> dict[str, Any]:
        scale = measure_latent_scale(
            model, self.mel, self.train_set, int(self.cfg.vae.get("scale_batches", 8)),
            self.settings.train.batch_size, self.accelerator.device,
        )
        logger.info("VAE latent scale (1 / std of latent means) = %.4f", scale)
        return {"latent_scale": scale}


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

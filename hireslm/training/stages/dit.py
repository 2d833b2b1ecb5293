"""Latent DiT stage: denoise clean VAE latents conditioned on the degraded audio's latents.

A FROZEN VAE from a release (``dit.vae_release``) encodes the clean and degraded mels on the
fly (posterior means, multiplied by the release's ``latent_scale``; the degraded mel first
goes through a frozen recovery model when ``dit.recovery_release`` is set), or the latents come
precomputed from ``data.latent_cache`` (``train/cache_latents.py``). The training objective is
``build_objective(cfg.objective)``; validation samples with a few steps and reports the
latent MSE and the mel L1 after decoding, over the whole band and (``mel_l1_high``) over the
mel bands above each degraded crop's measured cutoff alone: the band the pipeline takes
from the generative stages when it keeps the input below its cutoff.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from librosa import mel_frequencies
from omegaconf import OmegaConf

from hireslm.audio import estimate_bandwidth
from hireslm.diffusion.objectives import build_objective
from hireslm.diffusion.sampling import sample
from hireslm.release import load_release_config, load_stage
from hireslm.training.data import build_datasets, resolve_path
from hireslm.training.latents import LatentCacheDataset, encode_pair, latent_source_id
from hireslm.training.lora import trainable
from hireslm.training.stage import StageBase, TrainingParts
from hireslm.training.tracking import mel_image

COND_SOURCE = "vae_mean(mel(degraded)) * latent_scale"
COND_SOURCE_RECOVERY = "vae_mean(recovery(mel(degraded))) * latent_scale"


class DiTStage(StageBase):
    """Trains ``MODELS[cfg.model.name]`` (the DiT) on VAE latents.

    Args:
        datasets: optional ``(train, val)`` datasets (paired waves or cached latents);
            by default built from ``cfg.data``.
    """

    name = "dit"
    export_key = "dit"

    def build_parts(self) -> TrainingParts:
        cfg = self.cfg
        vae_release = resolve_path(cfg.dit.vae_release)
        self.vae = load_stage(vae_release, "vae")
        recovery_release = cfg.dit.get("recovery_release")
        recovery_release = resolve_path(recovery_release) if recovery_release else None
        self.recovery = load_stage(recovery_release, "recovery") if recovery_release else None
        self.source_id = latent_source_id(vae_release, recovery_release)
        self.latent_scale = float(load_release_config(vae_release).vae.latent_scale)
        if cfg.get("init_from"):
            trained_on = load_release_config(resolve_path(cfg.init_from)).dit.get(
                "latent_source_sha256")
            if trained_on and trained_on != self.source_id:
                raise ValueError(
                    f"init_from {cfg.init_from}: its DiT was trained on other latents "
                    f"({trained_on[:16]}) than dit.vae_release/recovery_release give "
                    f"({self.source_id[:16]}); point them at the release's own VAE (and "
                    "recovery model)")
        model = self.build_model()
        channels = self.vae.latent_channels
        if (model.latent_channels, model.cond_channels) != (channels, channels):
            raise ValueError(
                f"DiT latent/cond channels ({model.latent_channels}, {model.cond_channels}) "
                f"must equal the VAE's latent channels {channels} ({vae_release})"
            )
        self.objective = build_objective(OmegaConf.to_container(cfg.objective, resolve=True))
        optimizer = self.make_optimizer(trainable(model))
        if self.datasets is not None:
            datasets = self.datasets
        elif cfg.data.get("latent_cache"):
            train_set = LatentCacheDataset(
                resolve_path(cfg.data.latent_cache), expect_source=self.source_id,
                crop_frames=cfg.data.get("crop_frames"), seed=int(cfg.get("seed", 0)),
            )
            datasets = (train_set, build_datasets(cfg)[1])
        else:
            datasets = build_datasets(cfg)
        return self.training_parts(
            {"dit": model}, {"dit": optimizer}, datasets,
            frozen={"vae": self.vae,
                    **({"recovery": self.recovery} if self.recovery is not None else {})})

    def _latents(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled clean and condition latents ``(B, C, L)`` from waves or cached latents."""
        if "z_clean" in batch:
            return batch["z_clean"].float(), batch["z_cond"].float()
        return encode_pair(self.vae, self.mel, batch, self.latent_scale, self.recovery)

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        dit = self.parts.models["dit"]
        z_clean, z_cond = self._latents(batch)
        loss = self.objective.loss(dit, z_clean, z_cond, generator=self.generator)
        self.step_optimizer("dit", loss, dit.parameters())
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        dit = self.unwrapped("dit")
        z_clean, z_cond = self._latents(batch)
        generator = torch.Generator(device=z_cond.device).manual_seed(int(self.cfg.get("seed", 0)))
        sampling = self.cfg.get("sampling", {})
        z_pred = sample(
            dit, self.objective, z_cond, int(self.cfg.dit.get("val_steps", 8)),
            generator=generator, scheduler=sampling.get("scheduler"),
            latent_channels=self.vae.latent_channels,
        ).float()
        mel_pred = self.vae.decode(z_pred / self.latent_scale).float()
        mel_clean = self.vae.decode(z_clean / self.latent_scale).float()
        mel_cond = self.vae.decode(z_cond / self.latent_scale).float()
        high = self._above_cutoff(batch)
        return {
            **({"mel_l1_high": _masked_l1(mel_pred, mel_clean, high),
                "mel_l1_high_input": _masked_l1(mel_cond, mel_clean, high)}
               if high is not None else {}),
            "latent_mse": F.mse_loss(z_pred, z_clean).item(),
            "latent_mse_input": F.mse_loss(z_cond, z_clean).item(),
            "mel_l1": F.l1_loss(mel_pred, mel_clean).item(),
            "mel_l1_input": F.l1_loss(mel_cond, mel_clean).item(),
            "image/mel_restored": mel_image(mel_pred[0].cpu().numpy()),
            "image/mel_clean": mel_image(mel_clean[0].cpu().numpy()),
            "image/mel_degraded": mel_image(mel_cond[0].cpu().numpy()),
        }

    def _above_cutoff(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``(B, n_mels, 1)`` mask of the mel bands above each degraded crop's cutoff, or
        None for cached latents (no waves to measure)."""
        if "degraded" not in batch:
            return None
        waves = batch["degraded"].float().cpu().numpy()
        cutoffs = torch.tensor([estimate_bandwidth(w, self.audio.sample_rate) for w in waves])
        centres = torch.from_numpy(mel_frequencies(
            n_mels=self.audio.n_mels + 2, fmin=self.audio.f_min, fmax=self.audio.f_max,
            htk=False)[1:-1]).float()
        return (centres[None, :] > cutoffs[:, None]).float()[..., None].to(
            batch["degraded"].device)

    def export_extra(self, model: torch.nn.Module) -> dict[str, Any]:
        return {
            "objective": self.cfg.objective,
            "sampling": self.cfg.get("sampling", {}),
            "cond": COND_SOURCE if self.recovery is None else COND_SOURCE_RECOVERY,
            "vae_latent_scale": self.latent_scale,
            "latent_source_sha256": self.source_id,
        }

    def export_meta(self) -> dict[str, Any]:
        return {"vae_release": str(self.cfg.dit.vae_release)}


def _masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error of ``(B, n_mels, T)`` mels over the bands where ``mask`` is 1
    (``(B, n_mels, 1)``); NaN when no band is masked in."""
    weight = mask.expand_as(target)
    total = weight.sum()
    if total == 0:
        return float("nan")
    return float(((prediction - target).abs() * weight).sum() / total)

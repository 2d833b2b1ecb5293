"""Vocoder stage: a GAN with multi-period + multi-resolution discriminators.

Generator loss: ``mel_weight * multi-scale mel L1 + adv_weight * adversarial +
fm_weight * feature matching`` (the adversarial terms start at ``gan_start_step``; the
discriminators train from ``disc_start_step``, by default the same step). The discriminators
step first on the detached output, then the generator steps, both inside one ``train_step``.
The generator is ``MODELS[cfg.model.name]`` ("vocos" or "hifigan") built from
``cfg.model.kwargs``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hireslm.models import build_model
from hireslm.models.vocoder import (
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from hireslm.training.lora import trainable
from hireslm.training.stage import StageBase, TrainingParts
from hireslm.training.tracking import mel_image

DISCRIMINATORS = ("mpd", "mrd")


class VocoderStage(StageBase):
    """Trains a mel -> 48 kHz vocoder on clean speech.

    Args:
        datasets: optional ``(train, val)`` datasets of ``{"clean": (1, S), ...}`` items;
            by default built from ``cfg.data``.
    """

    name = "vocoder"
    export_key = "generator"
    betas = (0.8, 0.99)  # HiFi-GAN's, when optim.betas is unset

    def build_parts(self) -> TrainingParts:
        cfg = self.cfg
        self.mel_loss = MultiScaleMelLoss(self.audio.sample_rate,
                                          **dict(cfg.vocoder.get("mel_loss", {})))
        generator = self.build_model()
        if getattr(generator, "hop_length", self.audio.hop_length) != self.audio.hop_length:
            raise ValueError(f"vocoder hop {generator.hop_length} != front end hop "
                             f"{self.audio.hop_length}")
        discs = {name: build_model(name, cfg.discriminators[name]) for name in DISCRIMINATORS}
        opt_g = self.make_optimizer(trainable(generator))
        opt_d = self.make_optimizer(itertools.chain(*(d.parameters() for d in discs.values())),
                                    lr=self.settings.optim.lr_disc)
        return self.training_parts(
            {"generator": generator, **discs}, {"generator": opt_g, "discriminator": opt_d},
            self.build_datasets(), frozen={"mel_loss": self.mel_loss})

    def _discriminate(self, discs: dict[str, nn.Module],
                      wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, fmaps = [], []
        for name in DISCRIMINATORS:
            sub_logits, sub_fmaps = discs[name](wave)
            logits += sub_logits
            fmaps += sub_fmaps
        return logits, fmaps

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        models, cfg = self.parts.models, self.cfg.vocoder
        real = batch["clean"].squeeze(1)  # (B, S)
        mel = self.mel(real)
        fake = models["generator"](mel)[..., : real.shape[-1]]
        gan_start = int(cfg.get("gan_start_step", 0))
        use_gan = step >= gan_start
        # A fine-tuned generator meets fresh discriminators (releases hold none): they learn
        # alone from disc_start_step until the generator's adversarial terms start.
        train_disc = step >= min(int(cfg.get("disc_start_step", gan_start)), gan_start)
        kind = str(cfg.get("gan_loss", "hinge"))
        out: dict[str, float] = {}
        batch_size = real.shape[0]

        if train_disc:
            # Real and fake in one forward: DDP expects one forward per backward.
            both = torch.cat([real, fake.detach()], dim=0)
            logits, _ = self._discriminate(models, both)
            loss_d = discriminator_loss([x[:batch_size].float() for x in logits],
                                        [x[batch_size:].float() for x in logits], kind)
            self.step_optimizer("discriminator", loss_d,
                                [p for n in DISCRIMINATORS for p in models[n].parameters()])
            out["loss_d"] = loss_d.item()

        loss_mel = self.mel_loss(fake, real)
        loss_g = float(cfg.mel_weight) * loss_mel
        if use_gan:
            # The generator's adversarial pass runs the plain (unwrapped) discriminators with
            # frozen weights: no gradient reaches them and DDP sees no second forward.
            plain = {n: self.accelerator.unwrap_model(models[n]) for n in DISCRIMINATORS}
            for module in plain.values():
                module.requires_grad_(False)
            try:
                logits, fmaps = self._discriminate(plain, torch.cat([real, fake], dim=0))
                adv = generator_adversarial_loss([x[batch_size:].float() for x in logits], kind)
                fm = feature_matching_loss([[f[:batch_size] for f in m] for m in fmaps],
                                           [[f[batch_size:] for f in m] for m in fmaps])
            finally:
                for module in plain.values():
                    module.requires_grad_(True)
            loss_g = loss_g + float(cfg.adv_weight) * adv + float(cfg.fm_weight) * fm
            out.update(adv=adv.item(), fm=fm.item())
        self.step_optimizer("generator", loss_g, models["generator"].parameters())
        out.update(loss_g=loss_g.item(), mel=loss_mel.item())
        return out

    @torch.no_grad()
    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        generator = self.unwrapped("generator")
        real = batch["clean"].squeeze(1)
        mel = self.mel(real)
        fake = generator(mel)[..., : real.shape[-1]].float()
        fake_mel = self.mel(fake)
        return {
            "mel_l1": F.l1_loss(fake_mel, mel).item(),
            "multiscale_mel": self.mel_loss(fake, real).item(),
            "audio/real": real[0].cpu().numpy(),
            "audio/vocoded": fake[0].cpu().numpy(),
            "image/mel_real": mel_image(mel[0].cpu().numpy()),
            "image/mel_vocoded": mel_image(fake_mel[0].cpu().numpy()),
        }

"""Vocoder GAN losses (hinge or least-squares), feature matching, and a multi-scale mel loss."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


def discriminator_loss(
    real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor], kind: str = "hinge",
) -> torch.Tensor:
    """Discriminator loss summed over sub-discriminators; scalar.

    ``hinge``: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); ``lsgan``: mean((1 - D(x))^2)
    + mean(D(G(z))^2). The fake logits must come from a detached generator output.
    """
    _check_kind(kind)
    total = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        if kind == "hinge":
            total = total + torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
        else:
            total = total + (1 - real).pow(2).mean() + fake.pow(2).mean()
    return total


def generator_adversarial_loss(
    fake_logits: list[torch.Tensor], kind: str = "hinge",
) -> torch.Tensor:
    """Generator adversarial loss summed over sub-discriminators; scalar."""
    _check_kind(kind)
    total = fake_logits[0].new_zeros(())
    for fake in fake_logits:
        total = total + (torch.relu(1 - fake).mean() if kind == "hinge"
                         else (1 - fake).pow(2).mean())
    return total


def feature_matching_loss(
    real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]],
) -> torch.Tensor:
    """Mean L1 between real (detached) and fake feature maps, averaged per sub-discriminator
    and summed over sub-discriminators; scalar."""
    total = fake_fmaps[0][0].new_zeros(())
    for real_maps, fake_maps in zip(real_fmaps, fake_fmaps, strict=True):
        per = [torch.mean(torch.abs(r.detach() - f))
               for r, f in zip(real_maps, fake_maps, strict=True)]
        total = total + torch.stack(per).mean()
    return total


def _check_kind(kind: str) -> None:
    if kind not in ("hinge", "lsgan"):
        raise ValueError(f"GAN loss kind must be 'hinge' or 'lsgan', got {kind!r}")


class MultiScaleMelLoss(nn.Module):
    """L1 between log-mels of two waves ``(B, N)`` at several STFT sizes; scalar (mean over scales).

    Short windows judge transients, long ones harmonics; the mel count grows with the window
    so each scale resolves what its window can (as in DAC's loss, sized for 48 kHz).
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        window_lengths: tuple[int, ...] | list[int] = (64, 128, 256, 512, 1024, 2048, 4096),
        n_mels: tuple[int, ...] | list[int] = (5, 10, 20, 40, 80, 160, 320),
        log_floor: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError("window_lengths and n_mels differ in length")
        self.log_floor = log_floor
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4,
                n_mels=m, f_min=0.0, f_max=sample_rate / 2, power=1.0, center=True,
                norm="slaney", mel_scale="slaney",
            )
            for w, m in zip(window_lengths, n_mels, strict=True)
        )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.dim() == 3:
            pred = pred.squeeze(1)
        if target.dim() == 3:
            target = target.squeeze(1)
        if pred.shape != target.shape:
            raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            losses = []
            for mel in self.mels:
                p = torch.log(mel(pred.float()).clamp(min=self.log_floor))
                t = torch.log(mel(target.float()).clamp(min=self.log_floor))
                losses.append(torch.mean(torch.abs(p - t)))
            return torch.stack(losses).mean()

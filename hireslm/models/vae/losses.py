"""Reconstruction losses for the mel VAE, on natural-log mels ``(B, n_mels, T)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mel_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between log-mels ``(B, n_mels, T)``; scalar."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return F.l1_loss(pred, target)


def multiscale_mel_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, scales: tuple[int, ...] = (1, 2, 4),
) -> torch.Tensor:
    """Mean of L1 losses after average-pooling both log-mels by each factor in time and frequency.

    Coarse scales weigh the spectral envelope and slow energy changes, which plain L1 on
    fine bins under-weighs. ``pred``, ``target``: ``(B, n_mels, T)``; returns a scalar.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")
    losses = []
    for s in scales:
        if s == 1:
            losses.append(F.l1_loss(pred, target))
            continue
        kernel = (min(s, pred.shape[1]), min(s, pred.shape[2]))
        p = F.avg_pool2d(pred.unsqueeze(1), kernel, ceil_mode=True)
        t = F.avg_pool2d(target.unsqueeze(1), kernel, ceil_mode=True)
        losses.append(F.l1_loss(p, t))
    return torch.stack(losses).mean()


def kl_loss(kl: torch.Tensor, num_elements: int) -> torch.Tensor:
    """Per-element mean KL from ``DiagonalGaussian.kl()`` ``(B,)`` and the latent's C * L."""
    return kl.mean() / max(num_elements, 1)

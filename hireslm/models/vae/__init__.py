"""Mel VAE: log-mel <-> low-rate latent."""

from hireslm.models.vae.distribution import DiagonalGaussian
from hireslm.models.vae.losses import kl_loss, mel_l1_loss, multiscale_mel_l1_loss
from hireslm.models.vae.mel_vae import MelVAE

__all__ = ["DiagonalGaussian", "MelVAE", "kl_loss", "mel_l1_loss", "multiscale_mel_l1_loss"]

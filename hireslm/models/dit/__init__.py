"""Latent diffusion transformer."""

from hireslm.models.dit.dit import DiT

__all__ = ["DiT"]

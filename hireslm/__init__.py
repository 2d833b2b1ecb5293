"""hireslm: speech restoration to 48 kHz with latent diffusion."""

__version__ = "0.1.0"

"""Diagonal Gaussian posterior of the mel VAE."""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """A diagonal Gaussian over latents ``(B, C, L)``.

    ``params`` holds mean and log-variance stacked on the channel axis: ``(B, 2C, L)``.
    The log-variance is clamped to [-30, 20] so ``exp`` never overflows in bf16/fp32.
    """

    def __init__(self, params: torch.Tensor) -> None:
        if params.dim() != 3 or params.shape[1] % 2:
            raise ValueError(f"params must be (B, 2C, L), got {tuple(params.shape)}")
        self.mean, logvar = params.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample ``(B, C, L)``; differentiable in mean and log-variance."""
        # Drawn on the generator's device, as diffusers' randn_tensor does (same numbers),
        # without importing diffusers.
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device,
                            dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        """The mean ``(B, C, L)``."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to N(0, I), summed over channels and frames: ``(B,)`` float32."""
        # A sum over C * L terms loses too much in bf16: always accumulate in float32.
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=(1, 2))

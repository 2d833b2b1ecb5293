"""Vocos-style vocoder: ConvNeXt backbone at frame rate + inverse-STFT head."""

from __future__ import annotations

import torch
from torch import nn

from hireslm.models.layers import ConvNeXtBlock1d
from hireslm.models.vocoder.base import Vocoder


class VocosVocoder(Vocoder):
    """Log-mel ``(B, n_mels, T)`` -> wave ``(B, T * hop_length)``.

    All the work runs at the frame rate (100 frames/s) and one inverse FFT per frame makes
    the samples, which is why it is far cheaper on CPU than upsampling generators.
    The head predicts log-magnitude (``exp``, clipped at ``max_log_magnitude``) and a phase
    angle (through cos/sin, so the angle's wrap-around never matters).
    """

    def __init__(
        self,
        n_mels: int = 128,
        dim: int = 512,
        intermediate_dim: int = 1536,
        num_layers: int = 8,
        kernel_size: int = 7,
        n_fft: int = 1920,
        hop_length: int = 480,
        sample_rate: int = 48000,
        layer_scale_init: float | None = None,
        max_log_magnitude: float = 4.605,
    ) -> None:
        super().__init__()
        if n_fft < hop_length or n_fft % 2:
            raise ValueError(f"n_fft must be even and >= hop_length, got {n_fft}/{hop_length}")
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.max_log_magnitude = float(max_log_magnitude)
        scale = layer_scale_init if layer_scale_init is not None else 1.0 / num_layers
        self.embed = nn.Conv1d(n_mels, dim, kernel_size, padding=kernel_size // 2)
        self.norm_in = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock1d(dim, intermediate_dim, kernel_size, scale) for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, T)`` -> ``(B, T * hop_length)``."""
        self.check_input(mel)
        x = self.norm_in(self.embed(mel).transpose(1, 2))  # (B, T, dim)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.norm_out(x)).transpose(1, 2)  # (B, n_fft + 2, T)
        return self.istft(x, mel.shape[-1])

    def istft(self, head_out: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Head output ``(B, n_fft + 2, T)`` -> wave ``(B, T * hop_length)``."""
        # The FFT stays in float32 under autocast: half-precision iSTFT is noisy and unsupported.
        with torch.autocast(device_type=head_out.device.type, enabled=False):
            log_mag, phase = head_out.float().chunk(2, dim=1)
            mag = torch.exp(log_mag.clamp(max=self.max_log_magnitude))
            spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
            # A centred iSTFT puts frame t at sample t * hop, matching the centred mel.
            return torch.istft(
                spec, self.n_fft, self.hop_length, self.n_fft, self.window, center=True,
                length=num_frames * self.hop_length,
            )

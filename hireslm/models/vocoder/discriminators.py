"""GAN discriminators for the vocoders: multi-period (HiFi-GAN) and multi-resolution STFT (Vocos).

Each takes a wave ``(B, N)`` or ``(B, 1, N)`` and returns ``(logits, feature_maps)``:
``logits`` is a list with one tensor per sub-discriminator, ``feature_maps`` a list (per
sub-discriminator) of lists of intermediate activations, for the feature-matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _as_batch(wave: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` or ``(B, 1, N)`` -> ``(B, N)``."""
    if wave.dim() == 3 and wave.shape[1] == 1:
        wave = wave.squeeze(1)
    if wave.dim() != 2:
        raise ValueError(f"wave must be (B, N) or (B, 1, N), got {tuple(wave.shape)}")
    return wave


class PeriodDiscriminator(nn.Module):
    """Reshapes ``(B, N)`` into ``(B, 1, N / p, p)`` and runs 2-D convs along the first axis."""

    def __init__(self, period: int, channels: tuple[int, ...] = (32, 128, 512, 1024),
                 kernel_size: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        convs = []
        cin = 1
        for cout in channels:
            convs.append(weight_norm(nn.Conv2d(
                cin, cout, (kernel_size, 1), (stride, 1), padding=((kernel_size - 1) // 2, 0),
            )))
            cin = cout
        convs.append(weight_norm(nn.Conv2d(
            cin, cin, (kernel_size, 1), 1, padding=((kernel_size - 1) // 2, 0),
        )))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(cin, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = _as_batch(wave).unsqueeze(1)
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect"
                      if n > self.period else "replicate")
        x = x.view(b, c, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One ``PeriodDiscriminator`` per period (co-prime periods see different pitch cycles)."""

    def __init__(self, periods: tuple[int, ...] | list[int] = (2, 3, 5, 7, 11),
                 channels: tuple[int, ...] | list[int] = (32, 128, 512, 1024)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, tuple(channels)) for p in periods
        )

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, fmaps = [], []
        for d in self.discriminators:
            logit, fmap = d(wave)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


class ResolutionDiscriminator(nn.Module):
    """2-D convs over a log-magnitude STFT ``(B, 1, frames, bins)`` of the wave (UnivNet/Vocos)."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 2), padding=(3, 2))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 1), padding=1)),
            weight_norm(nn.Conv2d(channels, channels, 3, (2, 2), padding=1)),
        ])
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        wave = _as_batch(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = torch.stft(
                wave.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                center=True, return_complex=True,
            )
            # Compressed magnitude keeps quiet high bands visible to the discriminator.
            x = spec.abs().clamp(min=1e-5).pow(0.3)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, frames, bins)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiResolutionDiscriminator(nn.Module):
    """One ``ResolutionDiscriminator`` per ``(n_fft, hop_length, win_length)`` (48 kHz sizes)."""

    def __init__(
        self,
        resolutions: tuple[tuple[int, int, int], ...] | list[list[int]] = (
            (4096, 1024, 4096), (2048, 512, 2048), (1024, 256, 1024), (512, 128, 512),
        ),
        channels: int = 32,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(int(n), int(h), int(w), channels) for n, h, w in resolutions
        )

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, fmaps = [], []
        for d in self.discriminators:
            logit, fmap = d(wave)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps

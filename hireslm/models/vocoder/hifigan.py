"""HiFi-GAN / BigVGAN-style upsampling vocoder with Snake or LeakyReLU activations."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from hireslm.models.vocoder.base import Vocoder


class Snake(nn.Module):
    """Snake activation ``x + sin^2(a x) / a`` with a learnt log-frequency per channel.

    Its periodic bias suits waveforms (BigVGAN); input ``(B, C, N)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp()
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


def _activation(kind: str, channels: int) -> nn.Module:
    if kind == "snake":
        return Snake(channels)
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.1)
    raise ValueError(f"activation must be 'snake' or 'leaky_relu', got {kind!r}")


class _ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: per dilation, act -> dilated conv -> act -> conv, residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...],
                 activation: str) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                  padding=d * (kernel_size - 1) // 2))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size,
                                  padding=(kernel_size - 1) // 2))
            for _ in dilations
        )
        self.acts1 = nn.ModuleList(_activation(activation, channels) for _ in dilations)
        self.acts2 = nn.ModuleList(_activation(activation, channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.acts1, self.acts2, strict=True):
            x = x + c2(a2(c1(a1(x))))
        return x


class HiFiGANVocoder(Vocoder):
    """Log-mel ``(B, n_mels, T)`` -> wave ``(B, T * hop_length)``, ``hop = prod(upsample_rates)``.

    Transposed convolutions upsample the frame sequence stage by stage, each followed by a
    multi-receptive-field fusion of residual blocks (mean of the blocks' outputs).
    """

    def __init__(
        self,
        n_mels: int = 128,
        upsample_rates: tuple[int, ...] | list[int] = (8, 6, 5, 2),
        upsample_kernel_sizes: tuple[int, ...] | list[int] = (16, 12, 10, 4),
        upsample_initial_channel: int = 256,
        resblock_kernel_sizes: tuple[int, ...] | list[int] = (3, 7, 11),
        resblock_dilation_sizes: tuple[tuple[int, ...], ...] | list[list[int]] = (
            (1, 3, 5), (1, 3, 5), (1, 3, 5),
        ),
        activation: str = "snake",
        sample_rate: int = 48000,
    ) -> None:
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        for r, k in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            if k < r:
                raise ValueError(f"upsample kernel {k} shorter than its rate {r}")
        _activation(activation, 1)
        self.n_mels = n_mels
        self.hop_length = math.prod(upsample_rates)
        self.sample_rate = sample_rate
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, upsample_initial_channel, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for r, k in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            # padding/output_padding chosen so each stage maps L frames to exactly L * r.
            pad = (k - r + 1) // 2
            self.ups.append(weight_norm(nn.ConvTranspose1d(
                ch, ch // 2, k, stride=r, padding=pad, output_padding=2 * pad - (k - r),
            )))
            ch //= 2
            for ks, ds in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(_ResBlock(ch, ks, tuple(ds), activation))
        self.acts = nn.ModuleList(
            _activation(activation, upsample_initial_channel // 2 ** i)
            for i in range(len(upsample_rates))
        )
        self.act_post = _activation(activation, ch)
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, T)`` -> ``(B, T * hop_length)`` in [-1, 1]."""
        self.check_input(mel)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(self.acts[i](x))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(self.act_post(x))
        return torch.tanh(x).squeeze(1)

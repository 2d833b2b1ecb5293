"""Small building blocks shared by several models (1-D convolutions over time)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock1d(nn.Module):
    """Pre-norm residual block ``(B, C_in, T) -> (B, C_out, T)``: (GN, SiLU, Conv) x 2 + skip."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding,
                               dilation=dilation)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=padding,
                               dilation=dilation)
        self.skip = (
            nn.Identity() if in_channels == out_channels
            else nn.Conv1d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class ConvNeXtBlock1d(nn.Module):
    """ConvNeXt block over time on channels-last sequences ``(B, T, C) -> (B, T, C)``.

    Depthwise conv, LayerNorm over channels, pointwise MLP (GELU), layer scale, residual.
    The depthwise conv runs as a ``(1, k)`` conv2d on a channels-last view of ``(B, T, C)``:
    on CPU that is two orders of magnitude faster than a grouped conv1d, and it needs no copy.
    """

    def __init__(
        self, dim: int, intermediate_dim: int, kernel_size: int = 7,
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.dwconv = nn.Conv2d(dim, dim, (1, kernel_size), padding=(0, kernel_size // 2),
                                groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = (
            nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            if layer_scale_init is not None and layer_scale_init > 0 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = depthwise_conv_time(self.dwconv, x)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = h * self.gamma
        return x + h


def depthwise_conv_time(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a ``(1, k)`` conv2d along time to channels-last ``(B, T, C)`` -> ``(B, T, C)``."""
    # (B, T, C) viewed as (B, C, 1, T) is already channels_last memory; with the (tiny) weight
    # channels_last too, oneDNN takes its fast depthwise path.
    x = x.contiguous().permute(0, 2, 1).unsqueeze(2)
    weight = conv.weight.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return y.squeeze(2).permute(0, 2, 1)


def check_mel_input(mel: torch.Tensor, n_mels: int, name: str = "mel") -> None:
    """Raise ``ValueError`` unless ``mel`` is a ``(B, n_mels, T)`` tensor with T >= 1."""
    if mel.dim() != 3 or mel.shape[1] != n_mels:
        raise ValueError(f"{name} must be (B, {n_mels}, T), got {tuple(mel.shape)}")
    if mel.shape[-1] < 1:
        raise ValueError(f"{name} has no frames")

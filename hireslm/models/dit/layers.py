"""DiT building blocks: timestep embedding, rotary positions, adaLN-zero transformer block."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(
    timestep: torch.Tensor, dim: int, max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``(B,)`` -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=timestep.device, dtype=torch.float32)
        / half
    )
    args = timestep.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """``(B,)`` timesteps in [0, 1000] -> ``(B, hidden_dim)`` via sinusoids and an MLP."""

    def __init__(self, hidden_dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim),
        )

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(timestep, self.frequency_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def rotary_tables(
    length: int, head_dim: int, base: float, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``(L, head_dim // 2)`` for rotary position embedding (RoPE)."""
    inv_freq = 1.0 / base ** (
        torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    )
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x (B, H, L, D)`` by position: the dot product of a rotated
    query and key depends only on their distance, so any sequence length works."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x (B, L, D) * (1 + scale (B, D)) + shift (B, D)``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys, ``(B, L, D) -> (B, L, D)``."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"hidden_dim {dim} must split into {num_heads} even-sized heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        # RMS-normed q/k keep attention logits bounded, which stabilises bf16 training.
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # Norm and rotation in float32 (also under autocast), attention in the working dtype.
        q = apply_rotary(self.q_norm(q.float()), cos, sin).to(v.dtype)
        k = apply_rotary(self.k_norm(k.float()), cos, sin).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-zero conditioning on ``c (B, D)``: ``(B, L, D) -> (B, L, D)``.

    The modulation layer is zero-initialised, so every block starts as the identity.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 qk_norm: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim),
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin)
        x = x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class FinalLayer(nn.Module):
    """adaLN then a zero-initialised linear ``(B, L, D) -> (B, L, out_channels)``."""

    def __init__(self, dim: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        for layer in (self.linear, self.adaLN_modulation[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))

"""Latent diffusion transformer (DiT) over VAE latent frames, conditioned on the degraded latent."""

from __future__ import annotations

import torch
from torch import nn

from hireslm.models.dit.layers import DiTBlock, FinalLayer, TimestepEmbedder, rotary_tables


class DiT(nn.Module):
    """``forward(x_t (B, C, L), timestep (B,), cond (B, C_cond, L)) -> (B, C, L)``.

    x_t and the condition are concatenated on channels and projected to ``hidden_dim`` tokens
    (one per latent frame). Positions enter only through RoPE in self-attention, so the model
    runs at lengths it never saw in training. The timestep (a float in [0, 1000]) conditions
    every block through adaLN-zero; the output layer is zero-initialised, so an untrained
    model predicts zeros.
    """

    def __init__(
        self,
        latent_channels: int = 32,
        cond_channels: int = 32,
        hidden_dim: int = 384,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        rope_base: float = 10000.0,
        cond_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.cond_channels = cond_channels
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.rope_base = float(rope_base)
        # Dropping the condition in training lets the sampler use classifier-free guidance.
        self.cond_dropout = float(cond_dropout)
        self.in_proj = nn.Linear(latent_channels + cond_channels, hidden_dim)
        self.t_embedder = TimestepEmbedder(hidden_dim)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_dim, num_heads, mlp_ratio, qk_norm) for _ in range(depth)
        )
        self.final = FinalLayer(hidden_dim, latent_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for block in self.blocks:
            for layer in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2]):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

    def forward(
        self, x_t: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor,
    ) -> torch.Tensor:
        if x_t.dim() != 3 or x_t.shape[1] != self.latent_channels:
            raise ValueError(f"x_t must be (B, {self.latent_channels}, L), got {tuple(x_t.shape)}")
        if cond.shape != (x_t.shape[0], self.cond_channels, x_t.shape[2]):
            raise ValueError(
                f"cond must be (B, {self.cond_channels}, L) matching x_t {tuple(x_t.shape)}, "
                f"got {tuple(cond.shape)}"
            )
        b, _, length = x_t.shape
        timestep = torch.as_tensor(timestep, device=x_t.device)
        if timestep.dim() == 0:
            timestep = timestep.expand(b)
        if timestep.shape != (b,):
            raise ValueError(f"timestep must be (B,) = ({b},), got {tuple(timestep.shape)}")
        if self.training and self.cond_dropout > 0:
            keep = torch.rand(b, 1, 1, device=cond.device) >= self.cond_dropout
            cond = cond * keep.to(cond.dtype)
        h = self.in_proj(torch.cat([x_t, cond], dim=1).transpose(1, 2))  # (B, L, D)
        c = self.t_embedder(timestep)
        cos, sin = rotary_tables(length, self.hidden_dim // self.num_heads, self.rope_base,
                                 x_t.device)
        for block in self.blocks:
            h = block(h, c, cos, sin)
        return self.final(h, c).transpose(1, 2).to(x_t.dtype)

"""Builds a tiny release (random weights, real code) for pipeline and CLI tests."""

from __future__ import annotations

from pathlib import Path

import torch

from hireslm.models import build_model
from hireslm.release import save_stage

TINY_STAGES = {
    "vae": ("mel_vae", {"n_mels": 128, "latent_channels": 8, "hidden_channels": 16,
                        "channel_mults": [1, 1, 1], "downsample": 4, "num_res_blocks": 1}),
    "dit": ("dit", {"latent_channels": 8, "cond_channels": 8, "hidden_dim": 32, "depth": 1,
                    "num_heads": 2}),
    "vocoder": ("vocos", {"n_mels": 128, "dim": 32, "intermediate_dim": 64, "num_layers": 1}),
}
TINY_EXTRAS = {
    "vae": {"latent_scale": 0.7},
    "dit": {"objective": {"name": "flow_matching"}, "sampling": {"num_steps": 2}},
    "vocoder": {},
}


def make_tiny_release(release_dir: Path, seed: int = 0) -> Path:
    """Write a release of tiny randomly initialised stages to ``release_dir``."""
    torch.manual_seed(seed)
    for stage, (name, kwargs) in TINY_STAGES.items():
        model = build_model(name, kwargs)
        save_stage(release_dir, stage, model, extra=TINY_EXTRAS[stage])
    return release_dir

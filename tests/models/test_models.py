"""The model registry: every entry builds from plain kwargs, defaults included, and round-trips."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from hireslm.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_with_defaults(name: str) -> None:
    model = build_model(name, {})
    assert isinstance(model, MODELS[name])
    assert sum(p.numel() for p in model.parameters()) > 0


def test_kwargs_from_yaml_round_trip(tmp_path) -> None:
    """A release stores {name, kwargs} as YAML; rebuilding from it gives the same network."""
    kwargs = {"n_mels": 16, "latent_channels": 4, "hidden_channels": 8,
              "channel_mults": [1, 1, 2], "num_res_blocks": 1}
    path = tmp_path / "config.yaml"
    OmegaConf.save(OmegaConf.create({"vae": {"name": "mel_vae", "kwargs": kwargs}}), path)
    json.dumps(kwargs)  # serialisable as JSON too
    cfg = OmegaConf.load(path)
    a = build_model(cfg.vae.name, cfg.vae.kwargs).eval()
    b = build_model("mel_vae", kwargs).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    mel = torch.randn(1, 16, 10)
    torch.testing.assert_close(a.encode(mel).mean, b.encode(mel).mean)


TINY = {
    "mel_vae": dict(n_mels=16, latent_channels=4, hidden_channels=8, channel_mults=[1, 1, 2],
                    num_res_blocks=1),
    "dit": dict(latent_channels=4, cond_channels=4, hidden_dim=16, depth=1, num_heads=2),
    "vocos": dict(n_mels=16, dim=16, intermediate_dim=32, num_layers=1, n_fft=96,
                  hop_length=24),
    "hifigan": dict(n_mels=16, upsample_rates=[4, 6], upsample_kernel_sizes=[8, 12],
                    upsample_initial_channel=8, resblock_kernel_sizes=[3],
                    resblock_dilation_sizes=[[1]]),
    "recovery": dict(n_mels=16, hidden=4, num_blocks=1),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_bf16_autocast_forward_backward(name: str) -> None:
    """Training runs under bf16 autocast: outputs stay finite and gradients reach every weight."""
    model = build_model(name, TINY[name])
    mel = torch.randn(2, 16, 9) - 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if name == "mel_vae":
            out, post = model(mel)
            loss = out.float().abs().mean() + post.kl().float().mean()
        elif name == "dit":
            x, c = torch.randn(2, 4, 9), torch.randn(2, 4, 9)
            # adaLN-zero starts as identity; perturb the output layer so all weights get grads.
            torch.nn.init.normal_(model.final.linear.weight, std=0.1)
            for block in model.blocks:
                torch.nn.init.normal_(block.adaLN_modulation[-1].weight, std=0.1)
            torch.nn.init.normal_(model.final.adaLN_modulation[-1].weight, std=0.1)
            loss = model(x, torch.tensor([10.0, 900.0]), c).float().square().mean()
        elif name == "recovery":
            torch.nn.init.normal_(model.out.weight, std=0.1)
            loss = model(mel).float().square().mean()
        else:
            wave = model(mel)
            assert wave.shape == (2, 9 * model.hop_length)
            loss = wave.float().square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing

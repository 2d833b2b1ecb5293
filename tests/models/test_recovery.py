"""Recovery net: identity at init, any length, learns to remove additive noise in log-mel."""

from __future__ import annotations

import pytest
import torch

from hireslm.models import build_model
from hireslm.models.recovery import RecoveryNet
from hireslm.models.recovery.recovery_net import _conv

TINY = dict(n_mels=16, hidden=8, num_blocks=2)


@pytest.mark.parametrize("frames", [1, 5, 64])
def test_identity_at_init_and_shapes(frames: int) -> None:
    mel = torch.randn(2, 16, frames) - 5
    out = RecoveryNet(**TINY)(mel)
    assert out.shape == mel.shape
    torch.testing.assert_close(out, mel)


def test_channels_last_conv_matches_module() -> None:
    net = RecoveryNet(**TINY)
    x = torch.randn(2, 8, 16, 11)
    torch.testing.assert_close(_conv(net.down1, x), net.down1(x), atol=1e-5, rtol=1e-5)
    y = torch.randn(2, 16, 4, 11)
    torch.testing.assert_close(_conv(net.up2, y), net.up2(y), atol=1e-5, rtol=1e-5)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="divisible"):
        RecoveryNet(n_mels=18)
    with pytest.raises(ValueError, match="must be"):
        RecoveryNet(**TINY)(torch.zeros(1, 8, 4))


def test_learns_to_remove_noise_floor() -> None:
    """Clean log-mels with a raised noise floor: training brings the output nearer the clean."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 16, 40, generator=g) * 2 - 6
    noise_floor = torch.full_like(clean, -3.0) + 0.3 * torch.randn(clean.shape, generator=g)
    noisy = torch.logaddexp(clean, noise_floor)
    net = build_model("recovery", TINY)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    start = torch.nn.functional.l1_loss(net(noisy), clean).item()
    for _ in range(60):
        loss = torch.nn.functional.l1_loss(net(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * start

"""Mel VAE: shapes, padding, posterior, losses, build round-trip, tiny overfit."""

from __future__ import annotations

import pytest
import torch

from hireslm.models import MODELS, build_model
from hireslm.models.vae import MelVAE, kl_loss, mel_l1_loss, multiscale_mel_l1_loss

TINY = dict(n_mels=16, latent_channels=4, hidden_channels=16, channel_mults=[1, 2, 2],
            downsample=4, num_res_blocks=1)


def _mel(batch: int, frames: int, n_mels: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_mels, frames, generator=g) * 2.0 - 5.0


@pytest.mark.parametrize("frames", [1, 4, 7, 33, 100, 101])
def test_encode_decode_lengths(frames: int) -> None:
    vae = MelVAE(**TINY).eval()
    post = vae.encode(_mel(2, frames))
    latent_len = -(-frames // 4)
    assert post.mean.shape == (2, 4, latent_len)
    assert post.logvar.shape == (2, 4, latent_len)
    assert vae.decode(post.mode()).shape == (2, 16, latent_len * 4)
    recon, _ = vae(_mel(2, frames), sample_posterior=False)
    assert recon.shape == (2, 16, frames)


def test_downsample_eight_and_one() -> None:
    for ds, mults in ((8, [1, 1, 2, 2]), (1, [1])):
        vae = MelVAE(**{**TINY, "downsample": ds, "channel_mults": mults})
        post = vae.encode(_mel(1, 19))
        assert post.mean.shape[-1] == -(-19 // ds)
        assert vae.decode(post.mean).shape[-1] == post.mean.shape[-1] * ds


def test_posterior_sample_determinism_and_kl() -> None:
    vae = MelVAE(**TINY)
    post = vae.encode(_mel(3, 20))
    a = post.sample(torch.Generator().manual_seed(1))
    b = post.sample(torch.Generator().manual_seed(1))
    c = post.sample(torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    kl = post.kl()
    assert kl.shape == (3,) and bool(torch.all(kl >= 0))
    # KL of the standard normal itself is exactly zero.
    from hireslm.models.vae import DiagonalGaussian
    zero = DiagonalGaussian(torch.zeros(2, 8, 5))
    assert torch.allclose(zero.kl(), torch.zeros(2))


def test_bad_input_raises() -> None:
    vae = MelVAE(**TINY)
    with pytest.raises(ValueError, match="must be"):
        vae.encode(torch.zeros(1, 15, 8))
    with pytest.raises(ValueError, match="must be"):
        vae.decode(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="power of two"):
        MelVAE(**{**TINY, "downsample": 3})


def test_losses_finite_and_differentiable() -> None:
    vae = MelVAE(**TINY)
    mel = _mel(2, 24)
    recon, post = vae(mel, generator=torch.Generator().manual_seed(0))
    loss = (mel_l1_loss(recon, mel) + multiscale_mel_l1_loss(recon, mel)
            + 1e-3 * kl_loss(post.kl(), post.mean[0].numel()))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in vae.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_overfits_fixed_batch() -> None:
    torch.manual_seed(0)
    vae = MelVAE(**TINY)
    mel = _mel(2, 32)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        recon, post = vae(mel, sample_posterior=False)
        loss = mel_l1_loss(recon, mel)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


def test_build_model_round_trip() -> None:
    vae = build_model("mel_vae", TINY)
    assert isinstance(vae, MODELS["mel_vae"])
    clone = build_model("mel_vae", TINY)
    clone.load_state_dict(vae.state_dict(), strict=True)
    mel = _mel(1, 12)
    torch.testing.assert_close(vae.eval()(mel, False)[0], clone.eval()(mel, False)[0])
    with pytest.raises(ValueError, match="unknown arguments"):
        build_model("mel_vae", {**TINY, "bogus": 1})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", {})

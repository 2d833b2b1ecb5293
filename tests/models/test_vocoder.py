"""Vocoders, discriminators and GAN/mel losses: shapes, exact lengths, gradients, a tiny fit."""

from __future__ import annotations

import math

import pytest
import torch

from hireslm.audio.mel import AudioConfig, LogMelSpectrogram
from hireslm.models import MODELS, build_model
from hireslm.models.vocoder import (
    HiFiGANVocoder,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleMelLoss,
    VocosVocoder,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

TINY_VOCOS = dict(n_mels=16, dim=32, intermediate_dim=64, num_layers=2, n_fft=192,
                  hop_length=48, sample_rate=4800)
TINY_HIFI = dict(n_mels=16, upsample_rates=[4, 3, 4], upsample_kernel_sizes=[8, 6, 7],
                 upsample_initial_channel=16, resblock_kernel_sizes=[3],
                 resblock_dilation_sizes=[[1, 3]], sample_rate=4800)


def _mel(batch: int, frames: int, n_mels: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(frames)
    return torch.randn(batch, n_mels, frames, generator=g) - 5.0


@pytest.mark.parametrize("frames", [1, 2, 7, 50])
@pytest.mark.parametrize("activation", ["snake", "leaky_relu"])
def test_hifigan_exact_length(frames: int, activation: str) -> None:
    voc = HiFiGANVocoder(**TINY_HIFI, activation=activation).eval()
    assert voc.hop_length == 48
    wave = voc(_mel(2, frames))
    assert wave.shape == (2, frames * 48)
    assert bool(torch.all(wave.abs() <= 1.0))


@pytest.mark.parametrize("frames", [1, 2, 7, 50])
def test_vocos_exact_length(frames: int) -> None:
    voc = VocosVocoder(**TINY_VOCOS).eval()
    wave = voc(_mel(2, frames))
    assert wave.shape == (2, frames * 48)
    assert torch.isfinite(wave).all()


def test_default_sizes_build_and_hop() -> None:
    """The 48 kHz defaults: hop 480 from both vocoders, real mel front end in, T*480 out."""
    cfg = AudioConfig()
    wave = torch.randn(1, 4800) * 0.1
    mel = LogMelSpectrogram(cfg)(wave)  # (1, 128, 11)
    for voc in (VocosVocoder(), HiFiGANVocoder(upsample_initial_channel=32)):
        assert voc.hop_length == cfg.hop_length and voc.sample_rate == cfg.sample_rate
        with torch.inference_mode():
            assert voc.eval()(mel).shape == (1, mel.shape[-1] * 480)
    with pytest.raises(ValueError):
        HiFiGANVocoder(activation="relu")
    with pytest.raises(ValueError, match="must be"):
        VocosVocoder(**TINY_VOCOS)(torch.zeros(1, 8, 4))


def test_vocos_frames_are_local() -> None:
    """Changing the last mel frame leaves the first samples untouched (no global mixing)."""
    voc = VocosVocoder(**TINY_VOCOS).eval()
    mel = _mel(1, 40)
    mel2 = mel.clone()
    mel2[..., -1] += 3.0
    a, b = voc(mel), voc(mel2)
    assert torch.equal(a[..., :480], b[..., :480])
    assert not torch.equal(a[..., -48:], b[..., -48:])


def test_discriminators_outputs() -> None:
    wave = torch.randn(2, 4000)
    mpd = MultiPeriodDiscriminator(periods=[2, 3, 5], channels=[4, 8])
    mrd = MultiResolutionDiscriminator(resolutions=[[256, 64, 256], [128, 32, 128]], channels=4)
    for disc, count in ((mpd, 3), (mrd, 2)):
        logits, fmaps = disc(wave)
        assert len(logits) == count and len(fmaps) == count
        for logit, fmap in zip(logits, fmaps, strict=True):
            assert logit.dim() == 2 and logit.shape[0] == 2
            assert len(fmap) >= 3 and all(f.shape[0] == 2 for f in fmap)
        logits3, _ = disc(wave.unsqueeze(1))
        assert all(torch.equal(a, b) for a, b in zip(logits, logits3, strict=True))
    with pytest.raises(ValueError):
        mpd(torch.randn(2, 2, 100))
    # periods not dividing N are padded, not rejected
    logits, _ = mpd(torch.randn(1, 4001))
    assert len(logits) == 3


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_gan_losses_finite_and_differentiable(kind: str) -> None:
    voc = VocosVocoder(**TINY_VOCOS)
    mpd = MultiPeriodDiscriminator(periods=[2, 3], channels=[4, 8])
    mel_loss = MultiScaleMelLoss(sample_rate=4800, window_lengths=[32, 64], n_mels=[5, 10])
    real = torch.randn(2, 20 * 48) * 0.1
    fake = voc(_mel(2, 20))
    real_logits, real_fmaps = mpd(real)
    fake_logits_d, _ = mpd(fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits_d, kind)
    assert torch.isfinite(d_loss)
    d_loss.backward()
    assert all(p.grad is not None for p in mpd.parameters())
    mpd.zero_grad()
    fake_logits, fake_fmaps = mpd(fake)
    g_loss = (generator_adversarial_loss(fake_logits, kind)
              + feature_matching_loss(real_fmaps, fake_fmaps) + mel_loss(fake, real))
    assert torch.isfinite(g_loss)
    g_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in voc.parameters())
    with pytest.raises(ValueError):
        discriminator_loss(real_logits, fake_logits_d, "wgan")


def test_multiscale_mel_loss_properties() -> None:
    loss = MultiScaleMelLoss()
    t = torch.arange(48000) / 48000
    a = torch.sin(2 * math.pi * 440 * t).unsqueeze(0) * 0.5
    b = torch.sin(2 * math.pi * 3000 * t).unsqueeze(0) * 0.5
    assert loss(a, a).item() == 0.0
    assert loss(a, b).item() > loss(a, a * 0.9).item() > 0.0
    with pytest.raises(ValueError, match="shape"):
        loss(a, b[..., :100])


def test_vocos_fits_a_tone() -> None:
    """A few Adam steps on the mel loss reduce it: the iSTFT head is trainable end to end."""
    torch.manual_seed(0)
    sr, hop = 4800, 48
    voc = VocosVocoder(**TINY_VOCOS)
    mel_loss = MultiScaleMelLoss(sample_rate=sr, window_lengths=[64, 128], n_mels=[8, 16])
    frames = 30
    t = torch.arange(frames * hop) / sr
    target = (0.5 * torch.sin(2 * math.pi * 600 * t)).unsqueeze(0)
    mel = _mel(1, frames)
    opt = torch.optim.Adam(voc.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = mel_loss(voc(mel), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name,kwargs", [("vocos", TINY_VOCOS), ("hifigan", TINY_HIFI)])
def test_build_model_round_trip(name: str, kwargs: dict) -> None:
    a = build_model(name, kwargs).eval()
    b = build_model(name, kwargs).eval()
    assert isinstance(a, MODELS[name])
    b.load_state_dict(a.state_dict(), strict=True)
    mel = _mel(1, 9)
    torch.testing.assert_close(a(mel), b(mel))


def test_depthwise_fast_path_matches_conv1d() -> None:
    """The channels-last conv2d depthwise path equals a grouped conv1d, also in gradients."""
    import torch.nn.functional as F

    from hireslm.models.layers import ConvNeXtBlock1d, depthwise_conv_time

    block = ConvNeXtBlock1d(dim=12, intermediate_dim=24, kernel_size=7)
    x = torch.randn(2, 33, 12, requires_grad=True)
    fast = depthwise_conv_time(block.dwconv, x)
    ref = F.conv1d(x.transpose(1, 2), block.dwconv.weight.squeeze(2), block.dwconv.bias,
                   padding=3, groups=12).transpose(1, 2)
    torch.testing.assert_close(fast, ref)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g_fast, g_ref)
    assert block(x).shape == x.shape


def test_vocos_istft_head_inverts_a_centred_stft() -> None:
    """Fed the exact log-magnitude and phase of a wave's centred STFT, the head gives the wave
    back: the head's frame t sits at sample t * hop, like the centred mel's."""
    voc = VocosVocoder(**TINY_VOCOS)
    g = torch.Generator().manual_seed(0)
    frames, hop = 20, 48
    wave = torch.randn(2, frames * hop, generator=g) * 0.1
    spec = torch.stft(wave, 192, hop, 192, torch.hann_window(192), center=True,
                      return_complex=True)  # (2, 97, frames + 1)
    head_out = torch.cat([spec.abs().clamp(min=1e-7).log(), spec.angle()], dim=1)
    out = voc.istft(head_out, spec.shape[-1])
    assert out.shape == (2, (frames + 1) * hop)
    torch.testing.assert_close(out[:, : frames * hop], wave, atol=1e-5, rtol=1e-4)

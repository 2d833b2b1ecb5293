"""Trusted-band fusion on real speech: what is kept stays exactly, what is generated is
level-matched, and the seam neither dips nor bumps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hireslm.data.degradations.filters import lowpass
from hireslm.pipeline.fusion import FusionConfig, crossfade_weights, fuse_bands

SR = 48000


def _band_power_db(wave: torch.Tensor, low: float, high: float) -> float:
    spec = torch.stft(wave, 2048, 480, window=torch.hann_window(2048), return_complex=True)
    freqs = torch.linspace(0, SR / 2, spec.shape[-2])
    band = (freqs >= low) & (freqs < high)
    return float(10 * torch.log10((spec.abs() ** 2)[..., band, :].mean()))


@pytest.fixture(scope="module")
def speech(speech_48k: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(speech_48k)  # (1, 96000), band to 8 kHz plus a faint floor


@pytest.fixture(scope="module")
def full_band(speech: torch.Tensor) -> torch.Tensor:
    """Speech with a full band: the clip plus its own spectrum folded up, like a generated
    wave (which the vocoder renders across the whole band)."""
    rng = np.random.default_rng(0)
    hiss = torch.from_numpy(rng.standard_normal(speech.shape).astype(np.float32))
    envelope = speech.abs().unfold(-1, 480, 480).mean(-1).repeat_interleave(480, -1)
    return speech + 0.5 * hiss * envelope[..., : speech.shape[-1]]


def test_weights_are_power_complementary() -> None:
    freqs = torch.linspace(0, 24000, 1025)
    keep, generate = crossfade_weights(torch.tensor([8000.0, 3000.0]), freqs, 0.25)
    assert torch.allclose(keep ** 2 + generate ** 2, torch.ones_like(keep), atol=1e-6)
    assert (keep[0, freqs < 8000 * 2 ** -0.25] == 1).all()
    assert (keep[0, freqs >= 8000] == 0).all()
    assert (keep[1, freqs >= 3000] == 0).all() and (keep[1, freqs < 2000] == 1).all()


def test_full_band_row_is_returned_exactly(speech: torch.Tensor, full_band: torch.Tensor) -> None:
    out = fuse_bands(torch.cat([speech, speech]), torch.cat([full_band, full_band]),
                     torch.tensor([float("inf"), 6000.0]), SR)
    assert torch.equal(out[0], speech[0])
    assert not torch.equal(out[1], speech[0])


def test_kept_band_is_the_input_with_its_phase(speech: torch.Tensor,
                                               full_band: torch.Tensor) -> None:
    kept = torch.from_numpy(lowpass(speech.numpy(), SR, None, cutoff_hz=6000.0)).float()
    out = fuse_bands(kept, full_band, torch.tensor([6000.0]), SR)
    # Below the crossfade the difference from the kept input is STFT round-off only.
    below = _band_power_db(out - kept, 50, 6000 * 2 ** -0.25)
    assert below < _band_power_db(kept, 50, 4000) - 80
    # Above the cutoff the band comes from the generated wave: the input has nothing there.
    assert _band_power_db(out, 8000, 20000) > _band_power_db(kept, 8000, 20000) + 30
    assert out.shape == kept.shape and torch.isfinite(out).all()


def test_generated_band_is_level_matched_frame_by_frame(
    speech: torch.Tensor, full_band: torch.Tensor
) -> None:
    kept = torch.from_numpy(lowpass(speech.numpy(), SR, None, cutoff_hz=6000.0)).float()
    cutoff = torch.tensor([6000.0])
    reference = fuse_bands(kept, full_band, cutoff, SR)
    # A generated wave 20 dB too loud, with a level that also drifts over time, comes out
    # at the same level: the gain follows the kept band near the seam.
    drift = torch.linspace(0.3, 3.0, full_band.shape[-1])
    louder = fuse_bands(kept, 10.0 * drift * full_band, cutoff, SR)
    for start in (0, 48000):
        a = _band_power_db(reference[..., start:start + 48000], 7000, 20000)
        b = _band_power_db(louder[..., start:start + 48000], 7000, 20000)
        assert abs(a - b) < 1.5


def test_seam_has_no_dip_or_bump() -> None:
    """Two independent noises of one level: the fused spectrum is flat across the seam."""
    rng = np.random.default_rng(3)
    a, b = (torch.from_numpy(rng.standard_normal((1, SR * 2)).astype(np.float32))
            for _ in range(2))
    config = FusionConfig(smooth_frames=1)
    out = fuse_bands(a, b, torch.tensor([8000.0]), SR, config)
    levels = [_band_power_db(out, f, f + 250) for f in range(5000, 11000, 250)]
    assert max(levels) - min(levels) < 1.0


def test_mismatched_shapes_raise(speech: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="one shape"):
        fuse_bands(speech, speech[..., :-1], torch.tensor([4000.0]), SR)
    with pytest.raises(ValueError, match="one cutoff per row"):
        fuse_bands(speech, speech, torch.tensor([4000.0, 5000.0]), SR)

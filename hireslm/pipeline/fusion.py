"""Trusted-band fusion: keep the input below its cutoff, take the generated band above it.

The generative stages regenerate the whole spectrum at a quality well below what a good
recording already has, so the output keeps the (recovered) input's STFT below the cutoff,
phase and all, and takes only the band above it from the generated signal. The two meet in a
power-complementary crossfade (``cos``/``sin`` weights, whose squares sum to one, so
uncorrelated bands join without a dip or a bump in power), and the generated band is scaled
frame by frame to the level the kept band has just below the seam: a per-file gain leaves
the generated band too loud in quiet passages and too quiet in loud ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FusionConfig:
    """How the bands meet.

    ``crossfade_octaves`` is the width of the crossfade below the cutoff; the generated
    band's level is matched on the ``reference_octaves`` below the crossfade, frame by
    frame, smoothed over ``smooth_frames``, boosting by at most ``max_boost_db`` and cutting
    by at most ``max_cut_db`` (cuts go deeper: in the input's pauses the generated band
    should fall silent with it).
    """

    n_fft: int = 2048
    hop_length: int = 480
    crossfade_octaves: float = 0.2
    reference_octaves: float = 0.5
    smooth_frames: int = 5
    max_boost_db: float = 12.0
    max_cut_db: float = 40.0


DEFAULT_FUSION = FusionConfig()


def crossfade_weights(
    cutoff_hz: torch.Tensor, freqs: torch.Tensor, crossfade_octaves: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row weights of the kept and generated bands.

    Args:
        cutoff_hz: ``(B,)`` cutoff of each row.
        freqs: ``(F,)`` bin centre frequencies.
    Returns:
        ``keep, generate``, each ``(B, F)``, with ``keep ** 2 + generate ** 2 == 1``: ``keep``
        is 1 below ``cutoff * 2 ** -crossfade_octaves``, 0 above the cutoff.
    """
    top = cutoff_hz[:, None]
    bottom = top * 2.0 ** -crossfade_octaves
    position = ((freqs[None, :] - bottom) / (top - bottom)).clamp(0.0, 1.0)
    angle = 0.5 * torch.pi * position
    # cos(pi / 2) is not exactly 0 in float32: the kept band must end exactly at the cutoff.
    keep = torch.where(position >= 1.0, torch.zeros_like(angle), torch.cos(angle))
    return keep, torch.sin(angle)


def fuse_bands(
    kept: torch.Tensor,
    generated: torch.Tensor,
    cutoff_hz: torch.Tensor,
    sample_rate: int,
    config: FusionConfig = DEFAULT_FUSION,
) -> torch.Tensor:
    """Join ``kept`` below each row's cutoff with ``generated`` above it.

    Args:
        kept: ``(B, S)`` the signal to keep (the recovered input), loudness-normalised.
        generated: ``(B, S)`` the generative stages' output for the same samples.
        cutoff_hz: ``(B,)`` each row's cutoff; a row whose cutoff is at or above Nyquist is
            returned as ``kept`` unchanged.
    Returns:
        ``(B, S)`` float32.
    """
    if kept.shape != generated.shape or kept.dim() != 2:
        raise ValueError(f"need two (B, S) signals of one shape, got {tuple(kept.shape)} "
                         f"and {tuple(generated.shape)}")
    cutoff_hz = cutoff_hz.to(torch.float32).reshape(-1)
    if cutoff_hz.shape[0] != kept.shape[0]:
        raise ValueError(f"need one cutoff per row: {cutoff_hz.shape[0]} for {kept.shape[0]}")
    out = kept.to(torch.float32).clone()
    rows = torch.nonzero(cutoff_hz < sample_rate / 2).reshape(-1)
    if rows.numel():
        out[rows] = _fuse_rows(kept[rows].float(), generated[rows].float(), cutoff_hz[rows],
                               sample_rate, config)
    return out


def _fuse_rows(
    kept: torch.Tensor, generated: torch.Tensor, cutoff_hz: torch.Tensor, sample_rate: int,
    config: FusionConfig,
) -> torch.Tensor:
    samples = kept.shape[-1]
    window = torch.hann_window(config.n_fft, device=kept.device)
    spec = {name: torch.stft(wave, config.n_fft, config.hop_length, window=window,
                             return_complex=True)
            for name, wave in (("kept", kept), ("generated", generated))}  # (B, F, T)
    freqs = torch.linspace(0.0, sample_rate / 2, spec["kept"].shape[1], device=kept.device)
    keep_w, generate_w = crossfade_weights(cutoff_hz, freqs, config.crossfade_octaves)
    gain = _seam_gain(spec["kept"], spec["generated"], cutoff_hz, freqs, config)  # (B, T)
    fused = (keep_w[..., None] * spec["kept"]
             + generate_w[..., None] * gain[:, None, :] * spec["generated"])
    return torch.istft(fused, config.n_fft, config.hop_length, window=window, length=samples)


def _seam_gain(
    kept: torch.Tensor, generated: torch.Tensor, cutoff_hz: torch.Tensor, freqs: torch.Tensor,
    config: FusionConfig,
) -> torch.Tensor:
    """``(B, T)`` amplitude gain bringing the generated band to the kept band's level, per
    frame, measured on the reference band just below the crossfade."""
    top = cutoff_hz[:, None] * 2.0 ** -config.crossfade_octaves
    bottom = top * 2.0 ** -config.reference_octaves
    band = ((freqs[None, :] >= bottom) & (freqs[None, :] < top)).float()[..., None]  # (B, F, 1)
    power_kept = (band * kept.abs() ** 2).sum(1)
    power_generated = (band * generated.abs() ** 2).sum(1)
    tiny = 1e-12
    gain_db = 10.0 * (torch.log10(power_kept + tiny) - torch.log10(power_generated + tiny))
    if config.smooth_frames > 1:
        # Smoothed in dB so that one loud frame cannot dominate its neighbours.
        kernel = torch.ones(1, 1, config.smooth_frames, device=gain_db.device)
        kernel = kernel / config.smooth_frames
        padded = torch.nn.functional.pad(gain_db[:, None], (config.smooth_frames // 2,) * 2,
                                         mode="replicate")
        gain_db = torch.nn.functional.conv1d(padded, kernel)[:, 0, : gain_db.shape[-1]]
    gain_db = gain_db.clamp(-config.max_cut_db, config.max_boost_db)
    return 10.0 ** (gain_db / 20.0)

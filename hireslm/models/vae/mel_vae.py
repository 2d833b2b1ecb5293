"""Convolutional mel VAE: log-mel ``(B, n_mels, T)`` <-> latent ``(B, C, ceil(T / downsample))``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hireslm.models.layers import ResBlock1d, check_mel_input, group_norm
from hireslm.models.vae.distribution import DiagonalGaussian


class _Downsample(nn.Module):
    """Strided conv halving time: ``(B, C, T) -> (B, C, T // 2)`` for even T."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    """Nearest-neighbour x2 then conv (no checkerboard artefacts): ``(B, C, T) -> (B, C, 2T)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MelVAE(nn.Module):
    """VAE over log-mel frames, mel bins as channels, convolutions over time.

    ``encode(mel (B, n_mels, T)) -> DiagonalGaussian`` over ``(B, latent_channels, L)`` with
    ``L = ceil(T / downsample)``;
    ``decode(z (B, latent_channels, L)) -> (B, n_mels, L * downsample)``.
    The input is standardised with the fixed ``mel_mean``/``mel_std`` (natural-log mels sit
    around -11.5..3) and the output de-standardised, so the network works on unit-scale values.
    """

    def __init__(
        self,
        n_mels: int = 128,
        latent_channels: int = 32,
        hidden_channels: int = 256,
        channel_mults: tuple[int, ...] | list[int] = (1, 2, 2),
        downsample: int = 4,
        num_res_blocks: int = 2,
        kernel_size: int = 3,
        mel_mean: float = -5.0,
        mel_std: float = 2.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of two >= 1, got {downsample}")
        num_down = int(math.log2(downsample))
        channel_mults = tuple(int(m) for m in channel_mults)
        if len(channel_mults) != num_down + 1:
            raise ValueError(
                f"channel_mults needs log2(downsample) + 1 = {num_down + 1} entries, "
                f"got {len(channel_mults)}"
            )
        if mel_std <= 0:
            raise ValueError("mel_std must be positive")
        self.n_mels = n_mels
        self.latent_channels = latent_channels
        self.downsample = downsample
        self.mel_mean = float(mel_mean)
        self.mel_std = float(mel_std)
        widths = [hidden_channels * m for m in channel_mults]

        def res(cin: int, cout: int) -> ResBlock1d:
            return ResBlock1d(cin, cout, kernel_size, dropout=dropout)

        enc: list[nn.Module] = [nn.Conv1d(n_mels, widths[0], 7, padding=3)]
        for level in range(num_down + 1):
            cin = widths[max(level - 1, 0)]
            for i in range(num_res_blocks):
                enc.append(res(cin if i == 0 else widths[level], widths[level]))
            if level < num_down:
                enc.append(_Downsample(widths[level]))
        enc += [
            res(widths[-1], widths[-1]), group_norm(widths[-1]), nn.SiLU(),
            nn.Conv1d(widths[-1], 2 * latent_channels, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [
            nn.Conv1d(latent_channels, widths[-1], 3, padding=1), res(widths[-1], widths[-1]),
        ]
        for level in reversed(range(num_down + 1)):
            cin = widths[min(level + 1, num_down)]
            for i in range(num_res_blocks):
                dec.append(res(cin if i == 0 else widths[level], widths[level]))
            if level > 0:
                dec.append(_Upsample(widths[level]))
        dec += [group_norm(widths[0]), nn.SiLU(), nn.Conv1d(widths[0], n_mels, 7, padding=3)]
        self.decoder = nn.Sequential(*dec)

    def latent_length(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` mel frames: ``ceil(T / downsample)``."""
        return -(-num_frames // self.downsample)

    def encode(self, mel: torch.Tensor) -> DiagonalGaussian:
        """``(B, n_mels, T)`` log-mel -> posterior over ``(B, latent_channels, ceil(T / ds))``.

        T is padded up to a multiple of ``downsample`` by repeating the last frame.
        """
        check_mel_input(mel, self.n_mels)
        pad = self.latent_length(mel.shape[-1]) * self.downsample - mel.shape[-1]
        x = (mel - self.mel_mean) / self.mel_std
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        return DiagonalGaussian(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_channels, L)`` -> log-mel ``(B, n_mels, L * downsample)``."""
        if z.dim() != 3 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"z must be (B, {self.latent_channels}, L), got {tuple(z.shape)}"
            )
        return self.decoder(z) * self.mel_std + self.mel_mean

    def forward(
        self, mel: torch.Tensor, sample_posterior: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Autoencode: ``(B, n_mels, T)`` -> (reconstruction ``(B, n_mels, T)``, posterior).

        The reconstruction is cropped back to the input's T.
        """
        posterior = self.encode(mel)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z)[..., : mel.shape[-1]], posterior

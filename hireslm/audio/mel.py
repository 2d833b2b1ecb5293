"""The 48 kHz STFT / log-mel front end, as torch modules that run on batches on any device."""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from hireslm.audio.config import AudioConfig


class LogMelSpectrogram(nn.Module):
    """Waveform ``(B, N)`` or ``(B, 1, N)`` -> natural-log mel ``(B, n_mels, N // hop + 1)``.

    Magnitude (power 1) mel with Slaney-normalised filters, centred reflect-padded STFT.
    """

    def __init__(self, config: AudioConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 3:
            wave = wave.squeeze(1)
        num_frames = self.config.num_frames(wave.shape[-1])
        min_samples = self.config.n_fft // 2 + 1
        if wave.shape[-1] < min_samples:
            # Reflect padding needs more than n_fft / 2 samples; zero-extend very short clips.
            wave = torch.nn.functional.pad(wave, (0, min_samples - wave.shape[-1]))
        # The STFT runs in float32 even under autocast: bf16 FFTs lose the quiet bands.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mel = self.mel(wave.float())[..., :num_frames]
        return torch.log(torch.clamp(mel, min=self.config.log_floor))


class STFT(nn.Module):
    """Complex STFT ``(B, N)`` -> ``(B, n_fft // 2 + 1, N // hop + 1)`` and its inverse."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int | None = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length or n_fft
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            wave.float(), self.n_fft, self.hop_length, self.win_length, self.window,
            center=True, pad_mode="reflect", return_complex=True,
        )

    def inverse(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        return torch.istft(
            spec, self.n_fft, self.hop_length, self.win_length, self.window,
            center=True, length=length,
        )


def log_floor_db(config: AudioConfig) -> float:
    """The log-mel floor in dB (useful for plots)."""
    return 20 * math.log10(config.log_floor)

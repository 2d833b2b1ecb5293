"""The 48 kHz STFT / log-mel front end, as torch modules that run on batches on any device."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torchaudio
from omegaconf import OmegaConf
from torch import nn


@dataclass(frozen=True)
class AudioConfig:
    """The audio front end; one instance is shared by every stage (``configs/audio.yaml``)."""

    sample_rate: int = 48000
    n_fft: int = 2048
    hop_length: int = 480
    win_length: int = 2048
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 24000.0
    log_floor: float = 1e-5

    @classmethod
    def from_dict(cls, values: dict) -> AudioConfig:
        """Build from a mapping, rejecting unknown keys, and values that are not positive
        integers (rates, sizes) or finite non-negative numbers, so typos fail loudly."""
        types = {f.name: f.type for f in fields(cls)}
        unknown = set(values) - set(types)
        if unknown:
            raise ValueError(f"unknown audio config keys: {sorted(unknown)}")
        for key, value in values.items():
            _check_value(key, value, types[key])
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | Path) -> AudioConfig:
        return cls.from_dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Mel frames of a centred STFT over ``num_samples``."""
        return num_samples // self.hop_length + 1


def _check_value(key: str, value: object, kind: str) -> None:
    # bool is an int subclass, but "sample_rate: true" is a typo, not a rate
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        valid = False
    elif kind == "int":
        valid = isinstance(value, numbers.Integral) and value > 0
    else:
        valid = math.isfinite(value) and value >= 0
    if not valid:
        expected = "a positive integer" if kind == "int" else "a finite number >= 0"
        raise ValueError(f"audio config {key} must be {expected}, not {value!r}")


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

"""The audio front end's settings, shared by every stage (``configs/audio.yaml``).

Plain data (no torch), so a release's front end is read where no model runs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from omegaconf import OmegaConf


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

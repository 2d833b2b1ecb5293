"""What the analysis reports per channel, and the damage flags drawn from it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DamageFlags:
    """Damage found in one channel (``hireslm.analysis.diagnose`` sets them)."""

    band_limited: bool = False
    noisy: bool = False
    clipped: bool = False
    codec: bool = False
    reverberant: bool = False
    silent: bool = False

    def names(self) -> list[str]:
        """The flags that are set, in field order."""
        return [f.name for f in fields(self) if getattr(self, f.name)]

    def to_dict(self) -> dict[str, bool]:
        return {name: bool(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class ChannelAnalysis:
    """Measurements of one channel. Levels in dB re full scale (mean square: a full-scale
    sine reads -3 dB); ``None`` where a measure has nothing to go on (a silent channel, too
    few decays, no edge below Nyquist)."""

    channel: int
    peak: float  # max |x| (at the rate clipping was measured at)
    bandwidth_hz: float  # highest frequency within 60 dB of the active spectrum's peak
    edge: str | None  # "cliff" (filter/codec), "gradual" (roll-off), None (full band)
    edge_drop_db: float | None  # level fall across the cutoff, 1/6 octave each side
    codec_cutoff_hz: float | None  # a cliff below the native Nyquist with codec evidence
    codec_holes: float  # share of in-band (frame, band) cells a codec left empty
    lossy_format: bool  # the file's subtype is a perceptual codec (MP3, Vorbis, Opus...)
    noise_floor_db: float | None
    speech_level_db: float | None  # 95th percentile of frame levels
    snr_db: float | None
    clipped_fraction: float  # share of samples on clipped runs
    rt60_s: float | None  # blind decay-time estimate
    decays: int  # free decays the estimate rests on
    silence_fraction: float  # share of samples in runs of digital silence
    silent: bool  # the whole channel is digital silence
    flags: DamageFlags = field(default_factory=DamageFlags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats rounded, flags as a dict and ``damage`` as a list of names."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "flags":
                continue
            out[f.name] = _round(f.name, value)
        out["flags"] = self.flags.to_dict()
        out["damage"] = self.flags.names()
        return out


_DIGITS = {"peak": 6, "codec_holes": 4, "clipped_fraction": 6, "silence_fraction": 6,
           "rt60_s": 3}


def _round(name: str, value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if not isinstance(value, (float, np.floating)):
        return value
    value = float(value)
    if not math.isfinite(value):
        return None
    if name.endswith("_hz"):
        return round(value, 1)
    return round(value, _DIGITS.get(name, 2))

"""What restoration does to one file, decided from its analysis before any model runs.

Three parts, each optional:

- **recover**: the release's waveform recovery (DeepFilterNet3) runs over the whole file,
  and the recovery gate (``hireslm.pipeline.gate``) keeps its output only where it removed
  enough to matter. It runs where the analysis finds noise or a room, and on full-band
  input whose SNR it cannot vouch for (its estimate misses bursty noise in short clips);
  band-limited, clipped and coded input only where noise or a room was found;
- **keep**: below each channel's cutoff the output is the (recovered) input itself;
- **generate**: the generative stages (VAE, DiT, vocoder) make the band above the cutoff,
  only where a channel is band-limited.

``--keep`` chooses how much of the input is trusted:

- ``auto`` (the default): recover where the gate finds noise or a room, keep the recovered input
  below its cutoff, generate only the missing band; a full-band clean file passes untouched;
- ``input``: trust the input as it is: no recovery, keep it below its cutoff, generate above;
- ``none``: the fully generative path of the paper: recover as ``auto`` does, then
  regenerate the whole band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hireslm.analysis import ChannelAnalysis
from hireslm.options import KEEP_MODES

# The gate keeps the recovered signal where the input lies less than this far above what
# recovery removed (docs/recovery.md: clean test clips lie 14-30 dB above it, noisy ones at
# 15 dB SNR 8-17 dB, at 5 dB SNR and in rooms below 9 dB).
RECOVERY_THRESHOLD_DB = 14.0
# The analysis' SNR cannot see bursty noise in short clips, so a full-band file is only
# spared recovery when its SNR reads at least this (half the clean test clips, a tenth of
# the noisy ones).
CLEAN_SNR_DB = 30.0
# Below this many 48 kHz samples (0.1 s) neither the denoiser nor the mel front end sees a
# whole frame's context (a 10 ms file failed in the STFT): such a file is kept as it is.
MIN_FRAMES = 4800


@dataclass(frozen=True)
class Treatment:
    """The decision for one file.

    ``keep_below_hz[c]`` is channel ``c``'s cutoff: the output keeps the input below it
    (``inf``: the whole band). ``None`` keeps nothing: the output is fully generated.
    """

    recover: bool
    generate: bool
    keep_below_hz: tuple[float, ...] | None
    reasons: tuple[str, ...] = field(default=())
    recovery_threshold_db: float = RECOVERY_THRESHOLD_DB

    def to_dict(self, recovery_name: str | None, nyquist_hz: float,
                recovered_share: Sequence[float] | None = None) -> dict[str, Any]:
        """The report's account: what was kept, recovered (with the share of each channel's
        duration the gate took from recovery) and generated, per channel."""
        if self.keep_below_hz is None:
            kept = None
            generated = [f"0-{nyquist_hz:.0f} Hz"]
        else:
            kept = [f"0-{min(c, nyquist_hz):.0f} Hz" for c in self.keep_below_hz]
            generated = [f"{c:.0f}-{nyquist_hz:.0f} Hz" if self.generate and c < nyquist_hz
                         else "nothing" for c in self.keep_below_hz]
        return {
            "recovered": recovery_name if self.recover else None,
            "recovered_share": None if recovered_share is None
            else [round(share, 3) for share in recovered_share],
            "kept": kept,
            "generated": generated,
            "reasons": list(self.reasons),
        }


def decide_treatment(
    channels: Sequence[ChannelAnalysis],
    keep: str = "auto",
    *,
    can_recover: bool = True,
    frames: int | None = None,
) -> Treatment:
    """Choose recovery, kept band and generation for a file from its channels' analysis.

    ``can_recover`` is False when the release has no waveform recovery; ``frames`` is the
    file's length in 48 kHz samples (a file shorter than ``MIN_FRAMES`` is kept as it is).
    """
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    if frames is not None and frames < MIN_FRAMES:
        return Treatment(recover=False, generate=False,
                         keep_below_hz=tuple(math.inf for _ in channels),
                         reasons=(f"shorter than {MIN_FRAMES / 48000:g} s: too short to "
                                  "restore, kept as it is",))
    reasons: list[str] = []
    found = sorted({name for c in channels for name in c.flags.names()})
    if found:
        reasons.append(f"analysis: {', '.join(found)}")
    flagged = any(c.flags.noisy or c.flags.reverberant for c in channels)
    # On band-limited, clipped or coded input the denoiser takes speech and distortion
    # products for noise (PESQ 4.53 -> 2.19 on low-pass 8 kHz), and "much removed" then
    # means damage, not noise: recover such input only where the analysis found noise.
    distorted = any(c.flags.band_limited or c.flags.clipped or c.flags.codec for c in channels)
    unsure = any(c.snr_db is None or c.snr_db < CLEAN_SNR_DB for c in channels)
    wanted = flagged or (unsure and not distorted)
    recover = keep != "input" and can_recover and wanted
    if recover:
        reasons.append("recovery gated per segment")
    elif keep != "input" and flagged:
        reasons.append("noisy or reverberant, but this release has no waveform recovery")
    if keep == "none":
        reasons.append("fully generative (--keep none)")
        return Treatment(recover=recover, generate=True, keep_below_hz=None,
                         reasons=tuple(reasons))
    cutoffs = tuple(c.bandwidth_hz if c.flags.band_limited else math.inf for c in channels)
    generate = any(math.isfinite(c) for c in cutoffs)
    reasons.append("band-limited: generated the band above the cutoff" if generate
                   else "full band: kept")
    if any(c.flags.clipped for c in channels):
        reasons.append("clipped: kept as it is (this release does not repair clipping)")
    return Treatment(recover=recover, generate=generate, keep_below_hz=cutoffs,
                     reasons=tuple(reasons))

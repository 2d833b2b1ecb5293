"""What restoration does to one file: decided in two steps, the second after recovery ran.

1. ``decide_treatment``, from the first pass's analysis and the options: whether the
   release's waveform recovery (DeepFilterNet3) is *tried*, and each channel's cutoff as the
   input shows it. Recovery is tried on every file long enough for it (``--denoise auto``),
   since the analysis alone cannot tell: its SNR reads dense speech with no pause as noise
   and misses room noise and hiss under speech. Whether its output is *used* is decided per
   segment from what it removed (``hireslm.pipeline.evidence``, through the gate).
2. ``Treatment.after_recovery``: where recovery was used, the band is measured again on the
   recovered signal (noise added after a low-pass fills the empty band; once it is removed
   the band ends where the low-pass put it), and the reasons say what was done.

- **keep**: below each channel's cutoff the output is the (recovered) input itself;
- **generate**: the generative stages (VAE, DiT, vocoder) make the band above the cutoff,
  only where a channel is band-limited.

``--keep`` chooses how much of the input is trusted: ``auto`` (recovered where the evidence
allows, kept below its cutoff, the missing band generated), ``input`` (the input as it is,
never recovered), ``none`` (the fully generative path of the paper: recovered as ``auto``,
then the whole band regenerated). ``--denoise`` chooses recovery: ``auto`` (the evidence),
``always``, ``never``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hireslm.analysis import ChannelAnalysis
from hireslm.options import DENOISE_MODES, KEEP_MODES

# Below this many 48 kHz samples (0.1 s) neither the denoiser nor the mel front end sees a
# whole frame's context (a 10 ms file failed in the STFT): such a file is kept as it is.
MIN_FRAMES = 4800


@dataclass(frozen=True)
class Treatment:
    """The decision for one file.

    ``keep_below_hz[c]`` is channel ``c``'s cutoff: the output keeps the input below it
    (``inf``: the whole band). ``None`` keeps nothing: the output is fully generated.
    ``denoise`` is how recovery's output is chosen per segment (``auto``: by the evidence;
    ``always``); ``segments`` is, once recovery ran, each segment's verdict per channel.
    """

    recover: bool
    generate: bool
    keep_below_hz: tuple[float, ...] | None
    reasons: tuple[str, ...] = field(default=())
    denoise: str = "auto"
    segments: tuple[dict[str, Any], ...] = field(default=())
    min_generated_hz: float = 0.0
    complete_band_hz: float = math.inf
    declip: bool = False

    def after_recovery(self, before: Sequence[ChannelAnalysis],
                       after: Sequence[ChannelAnalysis], recovered_share: Sequence[float],
                       segments: Sequence[dict[str, Any]]) -> Treatment:
        """The treatment once recovery ran: the band re-measured on the recovered signal of
        each channel recovery was used on (``after``), the verdicts and the reasons."""
        reasons = list(self.reasons)
        used = [share > 0.0 for share in recovered_share]
        shares = ", ".join(f"{100 * share:.0f}%" for share in recovered_share)
        reasons.append(f"recovery used on {shares} of the duration (per segment, by evidence)"
                       if any(used) else "recovery tried, not used: it removed speech or "
                       "nothing that sounds like noise (evidence per segment)")
        cutoffs = self.keep_below_hz
        if cutoffs is not None:
            measured = [(a if use else b) for a, b, use in zip(after, before, used, strict=True)]
            cutoffs = _cutoffs(measured, self.min_generated_hz, self.complete_band_hz)
            for channel, (old, new) in enumerate(zip(self.keep_below_hz, cutoffs, strict=True)):
                if used[channel] and old != new:
                    reasons.append(f"channel {channel}: band re-measured after recovery: "
                                   f"{_hz(new)} (the input read {_hz(old)})")
        generate = self.keep_below_hz is None or any(math.isfinite(c) for c in cutoffs)
        reasons.extend(_band_reasons(cutoffs, generate, measured if cutoffs is not None
                                     else before, used, self.min_generated_hz,
                                     self.complete_band_hz, self.declip))
        return replace(self, generate=generate, keep_below_hz=cutoffs, reasons=tuple(reasons),
                       segments=tuple(segments))

    def to_dict(self, recovery_name: str | None, nyquist_hz: float,
                recovered_share: Sequence[float] | None = None) -> dict[str, Any]:
        """The report's account: what was kept, recovered (with the share of each channel's
        duration the gate took from recovery, and each segment's verdict with its evidence)
        and generated, per channel."""
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
            "denoise": self.denoise if self.recover else "never",
            "kept": kept,
            "generated": generated,
            "reasons": list(self.reasons),
            "segments": list(self.segments),
        }


def decide_treatment(
    channels: Sequence[ChannelAnalysis],
    keep: str = "auto",
    *,
    can_recover: bool = True,
    frames: int | None = None,
    denoise: str = "auto",
    min_generated_hz: float = 0.0,
    complete_band_hz: float = math.inf,
    declip: bool = False,
) -> Treatment:
    """Step 1: whether recovery is tried, and the cutoffs the input shows, from its channels'
    analysis. ``can_recover`` is False when the release has no waveform recovery; ``frames``
    is the file's length in 48 kHz samples (a file shorter than ``MIN_FRAMES`` is kept as it
    is). Without recovery this is the whole decision; with it, ``after_recovery`` ends it.
    A band is generated from a channel's cutoff, or from ``min_generated_hz`` where that is
    higher (between the two the input is kept as it is), and not at all for a channel whose
    band reaches ``complete_band_hz``. ``declip``: the clipped runs are restored
    (``hireslm.repair``), which the reasons say.
    """
    if keep not in KEEP_MODES:
        raise ValueError(f"keep must be one of {KEEP_MODES}, got {keep!r}")
    if denoise not in DENOISE_MODES:
        raise ValueError(f"denoise must be one of {DENOISE_MODES}, got {denoise!r}")
    if frames is not None and frames < MIN_FRAMES:
        return Treatment(recover=False, generate=False,
                         keep_below_hz=tuple(math.inf for _ in channels),
                         reasons=(f"shorter than {MIN_FRAMES / 48000:g} s: too short to "
                                  "restore, kept as it is",))
    reasons: list[str] = []
    found = sorted({name for c in channels for name in c.flags.names()})
    if found:
        reasons.append(f"analysis: {', '.join(found)}")
    recover = keep != "input" and can_recover and denoise != "never"
    if recover:
        reasons.append("recovery everywhere (--denoise always)" if denoise == "always"
                       else "recovery tried, its output judged per segment")
    elif keep != "input" and denoise != "never" and not can_recover:
        reasons.append("this release has no waveform recovery")
    if keep == "none":
        reasons.append("fully generative (--keep none)")
        return Treatment(recover=recover, generate=True, keep_below_hz=None,
                         reasons=tuple(reasons), denoise=denoise)
    cutoffs = _cutoffs(channels, min_generated_hz, complete_band_hz)
    generate = any(math.isfinite(c) for c in cutoffs)
    if not recover:
        reasons.extend(_band_reasons(cutoffs, generate, channels, [False] * len(channels),
                                     min_generated_hz, complete_band_hz, declip))
    return Treatment(recover=recover, generate=generate, keep_below_hz=cutoffs,
                     reasons=tuple(reasons), denoise=denoise, min_generated_hz=min_generated_hz,
                     complete_band_hz=complete_band_hz, declip=declip)


def _cutoffs(channels: Sequence[ChannelAnalysis], floor_hz: float,
             complete_hz: float) -> tuple[float, ...]:
    """Where each channel's generated band starts: its measured cutoff, but no lower than
    ``floor_hz``; ``inf`` for a channel whose band is complete (not band-limited, or
    reaching ``complete_hz``)."""
    return tuple(max(c.bandwidth_hz, floor_hz)
                 if c.flags.band_limited and c.bandwidth_hz < complete_hz else math.inf
                 for c in channels)


def _band_reasons(cutoffs: Sequence[float] | None, generate: bool,
                  channels: Sequence[ChannelAnalysis], recovered: Sequence[bool],
                  floor_hz: float, complete_hz: float = math.inf,
                  declipped: bool = False) -> list[str]:
    reasons = []
    if cutoffs is not None:
        reasons.append("band-limited: generated the band above the cutoff" if generate
                       else "full band: kept")
        high = [c.bandwidth_hz for c in channels
                if c.flags.band_limited and c.bandwidth_hz >= complete_hz]
        if high:
            reasons.append(f"the band reaches {min(high):.0f} Hz: kept as complete, nothing "
                           f"generated (--complete-band-hz {complete_hz:.0f})")
        raised = [c.bandwidth_hz for c in channels
                  if c.flags.band_limited and c.bandwidth_hz < floor_hz]
        if raised:
            reasons.append(f"the band ends at {min(raised):.0f} Hz; generated from "
                           f"{floor_hz:.0f} Hz up, the input kept as it is below "
                           "(--min-generated-hz)")
    for channel, (analysis, used) in enumerate(zip(channels, recovered, strict=True)):
        if analysis.flags.clipped:
            done = "recovered, " if used else ""
            peaks = ("the clipped runs restored (below)" if declipped
                     else "the clipped peaks kept as they are (--no-repair)")
            reasons.append(f"channel {channel} clipped: {done}{peaks}")
    return reasons


def _hz(value: float) -> str:
    return "full band" if math.isinf(value) else f"{value:.0f} Hz"

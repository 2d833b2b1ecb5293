"""What the long-term spectrum says about the band: cutoff, the shape of its edge, codec holes.

Pure functions of a ``LongTermSpectrum`` (``hireslm.analysis.spectrum``).
"""

from __future__ import annotations

import numpy as np

from hireslm.analysis.spectrum import LongTermSpectrum

# soundfile subtypes that are lossy perceptual codecs (they low-pass and zero bands). ADPCM
# and companding (mu-law, A-law) are lossy too but add noise instead of cutting the band.
# libsndfile's subtypes, then FFmpeg's codec names (files read through PyAV).
PERCEPTUAL_CODECS = frozenset(
    {"MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "VORBIS", "OPUS", "GSM610",
     "AAC", "AAC_LATM", "MP2", "MP3", "AC3", "EAC3", "WMAV1", "WMAV2", "WMAPRO", "AMR_NB",
     "AMR_WB", "GSM", "GSM_MS"}
)
# Holes are counted up to here: even good encoders code the top octave sparsely (Vorbis,
# MP3's sfb21), so holes above it say "lossy" without saying "damaged".
HOLE_TOP_HZ = 16000.0
# Within this share of Nyquist the band is full: there is no edge below it to judge.
FULL_BAND_RATIO = 0.97


def cutoff_hz(spectrum: LongTermSpectrum, *, floor_db: float = 60.0,
              min_hz: float = 50.0) -> float:
    """Highest frequency whose level is within ``floor_db`` of the spectrum's peak.

    The rule of ``hireslm.audio.estimate_bandwidth``. Bins below ``min_hz`` are ignored, where
    hum or a DC offset can make the peak. 0.0 for an empty spectrum.
    """
    level = spectrum.level_db
    usable = spectrum.freqs >= min_hz
    if not usable.any() or not np.any(spectrum.power[usable] > 0):
        return 0.0
    peak = level[usable].max()
    above = np.nonzero(usable & (level >= peak - floor_db))[0]
    return float(spectrum.freqs[above[-1]])


def edge_drop_db(spectrum: LongTermSpectrum, cutoff: float, *, octaves: float = 1 / 6,
                 nyquist: float | None = None) -> float | None:
    """How far the level falls across the cutoff: the mean level (dB) over the ``octaves``
    below ``cutoff`` minus the mean over the ``octaves`` above it.

    A low-pass filter or codec leaves tens of dB (the band falls off a cliff into the noise
    floor); a natural roll-off, a few. ``None`` when the band reaches (nearly) ``nyquist``
    (default: the spectrum's top frequency), so there is no edge to judge.
    """
    top = float(spectrum.freqs[-1]) if nyquist is None else float(nyquist)
    top = min(top, float(spectrum.freqs[-1]))
    if cutoff <= 0 or cutoff >= FULL_BAND_RATIO * top:
        return None
    freqs, level = spectrum.freqs, spectrum.level_db
    ratio = 2.0 ** octaves
    below = (freqs >= cutoff / ratio) & (freqs <= cutoff)
    above = (freqs > cutoff) & (freqs <= min(cutoff * ratio, top))
    if not below.any() or not above.any():
        return None
    return float(level[below].mean() - level[above].mean())


def hole_share(spectrum: LongTermSpectrum, cutoff: float, *, low_hz: float = 1000.0,
               top_ratio: float = 0.9, top_hz: float = HOLE_TOP_HZ) -> float:
    """Share of (active frame, bin group) cells in ``[low_hz, min(top_ratio * cutoff,
    top_hz)]`` that were holes: bands ``HOLE_DEPTH_DB`` below the frame's power, as a
    perceptual codec leaves where it spent no bits. Filtered or noisy speech has next to none
    inside its band.
    """
    top = min(top_ratio * cutoff, top_hz)
    chosen = (spectrum.group_freqs >= low_hz) & (spectrum.group_freqs <= top)
    if not chosen.any():
        return 0.0
    return float(spectrum.hole_fraction[chosen].mean())


def is_perceptual_codec(subtype: str | None) -> bool:
    """True for a soundfile subtype such as ``MPEG_LAYER_III``, ``VORBIS``, ``OPUS``."""
    return subtype is not None and subtype.upper() in PERCEPTUAL_CODECS

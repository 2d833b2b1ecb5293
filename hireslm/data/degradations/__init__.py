"""Degradations: pure functions ``f(wave, sample_rate, rng, **params) -> wave``.

``wave`` is ``(C, N)`` float32; the result is ``(C, N)`` float32 of the same length, sample-
aligned with the input, and depends only on the input, the parameters and the state of the
``numpy.random.Generator``. ``REGISTRY`` maps names to their entries (function, parameter
preparation, availability: ``hireslm.data.degradations.registry``), ``DEGRADATIONS`` names to
the functions alone.
"""

from __future__ import annotations

from hireslm.data.degradations.codecs import VORBIS_ENTRY, mp3, opus, vorbis
from hireslm.data.degradations.dynamics import clipping, gain, packet_loss
from hireslm.data.degradations.filters import (
    EQ_ENTRY,
    LOWPASS_ENTRY,
    RESAMPLE_ENTRY,
    eq,
    lowpass,
    resample_through,
)
from hireslm.data.degradations.noise import (
    BABBLE_ENTRY,
    NOISE_COLORS,
    NOISE_ENTRY,
    babble,
    colored_noise,
    noise,
)
from hireslm.data.degradations.registry import Degradation, DegradationEntry
from hireslm.data.degradations.reverb import REVERB_ENTRY, SimulatedRoom, reverb, simulate_rir

# Every degradation the chain can apply, by the name configs use (hireslm.data.chain).
REGISTRY: dict[str, DegradationEntry] = {
    "eq": EQ_ENTRY,
    "reverb": REVERB_ENTRY,
    "noise": NOISE_ENTRY,
    "babble": BABBLE_ENTRY,
    "lowpass": LOWPASS_ENTRY,
    "resample": RESAMPLE_ENTRY,
    "mp3": DegradationEntry(mp3),
    "opus": DegradationEntry(opus),
    "vorbis": VORBIS_ENTRY,
    "clipping": DegradationEntry(clipping),
    "packet_loss": DegradationEntry(packet_loss),
    "gain": DegradationEntry(gain),
}
DEGRADATIONS: dict[str, Degradation] = {name: entry.apply for name, entry in REGISTRY.items()}

__all__ = [
    "DEGRADATIONS", "NOISE_COLORS", "REGISTRY", "Degradation", "DegradationEntry",
    "SimulatedRoom", "babble", "clipping",
    "colored_noise", "eq", "gain", "lowpass", "mp3", "noise", "opus", "packet_loss",
    "resample_through", "reverb", "simulate_rir", "vorbis",
]

"""Degradations: pure functions ``f(wave, sample_rate, rng, **params) -> wave``.

``wave`` is ``(C, N)`` float32; the result is ``(C, N)`` float32 of the same length, sample-
aligned with the input, and depends only on the input, the parameters and the state of the
``numpy.random.Generator``. ``DEGRADATIONS`` maps names to functions (a plain dict).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hireslm.data.degradations.codecs import mp3, opus, vorbis
from hireslm.data.degradations.dynamics import clipping, gain, packet_loss
from hireslm.data.degradations.filters import eq, lowpass, resample_through
from hireslm.data.degradations.noise import NOISE_COLORS, babble, colored_noise, noise
from hireslm.data.degradations.reverb import SimulatedRoom, reverb, simulate_rir

Degradation = Callable[..., np.ndarray]

DEGRADATIONS: dict[str, Degradation] = {
    "eq": eq,
    "reverb": reverb,
    "noise": noise,
    "babble": babble,
    "lowpass": lowpass,
    "resample": resample_through,
    "mp3": mp3,
    "opus": opus,
    "vorbis": vorbis,
    "clipping": clipping,
    "packet_loss": packet_loss,
    "gain": gain,
}

__all__ = [
    "DEGRADATIONS", "NOISE_COLORS", "Degradation", "SimulatedRoom", "babble", "clipping",
    "colored_noise", "eq", "gain", "lowpass", "mp3", "noise", "opus", "packet_loss",
    "resample_through", "reverb", "simulate_rir", "vorbis",
]

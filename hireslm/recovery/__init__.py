"""Pretrained waveform recovery: denoisers whose weights ship with their runtime.

``PRETRAINED_RECOVERY`` maps a release's ``recovery`` model name to its class. They are not
``nn.Module``s (nor in ``hireslm.models.MODELS``) and import no torch: a file that needs only
recovery is restored without loading torch or the generative stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from hireslm.recovery.deepfilternet import DeepFilterNet3Recovery


class WaveRecovery(Protocol):
    """A waveform recovery stage at ``sample_rate`` (48 kHz)."""

    sample_rate: int

    def stream(self, blocks: Iterable[np.ndarray], channels: int) -> Iterator[np.ndarray]:
        """``(C, n)`` float32 blocks adding up to ``N`` -> ``(C, m)`` blocks adding up to
        exactly ``N``, sample-aligned with the input."""
        ...

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """``(C, N)`` or ``(N,)`` float32 -> the same shape."""
        ...


PRETRAINED_RECOVERY: dict[str, type[WaveRecovery]] = {
    "deepfilternet3": DeepFilterNet3Recovery,
}

__all__ = ["PRETRAINED_RECOVERY", "DeepFilterNet3Recovery", "WaveRecovery"]

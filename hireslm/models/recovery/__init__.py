"""Stage 0 recovery: the trainable predictive log-mel denoiser, and pretrained waveform ones.

``PRETRAINED_RECOVERY`` maps a release's ``recovery`` model name to a waveform recovery class
(not an ``nn.Module``: its weights ship with its runtime, so it is not in ``MODELS``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from hireslm.models.recovery.deepfilternet import DeepFilterNet3Recovery
from hireslm.models.recovery.recovery_net import RecoveryNet


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

__all__ = ["PRETRAINED_RECOVERY", "DeepFilterNet3Recovery", "RecoveryNet", "WaveRecovery"]

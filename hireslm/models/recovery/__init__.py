"""Stage 0 recovery: the trainable predictive log-mel denoiser (``RecoveryNet``), and the
pretrained waveform ones, which live torch-free in ``hireslm.recovery`` (re-exported here)."""

from __future__ import annotations

from hireslm.models.recovery.recovery_net import RecoveryNet
from hireslm.recovery import PRETRAINED_RECOVERY, DeepFilterNet3Recovery, WaveRecovery

__all__ = ["PRETRAINED_RECOVERY", "DeepFilterNet3Recovery", "RecoveryNet", "WaveRecovery"]

"""Stage 0 recovery: predictive log-mel denoiser."""

from hireslm.models.recovery.recovery_net import RecoveryNet

__all__ = ["RecoveryNet"]

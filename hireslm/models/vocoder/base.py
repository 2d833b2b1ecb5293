"""The interface every vocoder shares."""

from __future__ import annotations

import torch
from torch import nn

from hireslm.models.layers import check_mel_input


class Vocoder(nn.Module):
    """Log-mel ``(B, n_mels, T)`` -> waveform ``(B, T * hop_length)`` at ``sample_rate``.

    Frame ``t`` of the mel is centred on sample ``t * hop_length`` (a centred STFT), so the
    output is ``hop_length`` samples longer than ``(T - 1) * hop_length``; callers crop to the
    original length.
    """

    n_mels: int
    hop_length: int
    sample_rate: int

    def check_input(self, mel: torch.Tensor) -> None:
        check_mel_input(mel, self.n_mels)

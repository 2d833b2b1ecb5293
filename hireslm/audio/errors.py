"""Exceptions raised for audio that cannot be restored or trained on."""

from __future__ import annotations


class AudioError(ValueError):
    """Base class: the audio at hand cannot be used; the message says why."""


class UnreadableAudioError(AudioError):
    """The file does not exist, is corrupt, or is in a format soundfile cannot decode."""


class EmptyAudioError(AudioError):
    """The audio holds no samples."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


class SilentAudioError(AudioError):
    """The audio is digital silence (every sample below the silence threshold)."""


class UnsupportedAudioError(AudioError):
    """The audio is readable but outside what hireslm restores (sample rate, level)."""

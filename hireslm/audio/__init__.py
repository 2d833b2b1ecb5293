"""Audio front end: file I/O, resampling, loudness, mel/STFT, bandwidth. Pure functions."""

from hireslm.audio.bandwidth import estimate_bandwidth
from hireslm.audio.errors import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
)
from hireslm.audio.io import (
    atomic_audio_writer,
    audio_info,
    check_audio,
    is_silent,
    iter_audio_blocks,
    load_audio,
    save_audio,
)
from hireslm.audio.loudness import (
    LoudnessMeter,
    apply_gain,
    loudness_gain_db,
    measure_loudness,
    normalize_loudness,
)
from hireslm.audio.mel import STFT, AudioConfig, LogMelSpectrogram
from hireslm.audio.resample import resample

__all__ = [
    "AudioConfig",
    "AudioError",
    "EmptyAudioError",
    "LogMelSpectrogram",
    "LoudnessMeter",
    "NonFiniteAudioError",
    "STFT",
    "SilentAudioError",
    "UnreadableAudioError",
    "apply_gain",
    "atomic_audio_writer",
    "audio_info",
    "check_audio",
    "estimate_bandwidth",
    "is_silent",
    "iter_audio_blocks",
    "load_audio",
    "loudness_gain_db",
    "measure_loudness",
    "normalize_loudness",
    "resample",
    "save_audio",
]

"""Audio front end: file I/O, resampling, loudness, mel/STFT, bandwidth. Pure functions.

The names load with their module on first use, so reading a file's header (restore's
planning, ``--dry-run``, ``analyze``'s folder walk) does not import torch for the mel front end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hireslm.lazy import lazy_exports

if TYPE_CHECKING:
    from hireslm.audio.bandwidth import estimate_bandwidth
    from hireslm.audio.config import AudioConfig
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
        header_shortfall,
        is_silent,
        iter_audio_blocks,
        load_audio,
        save_audio,
        stream_note,
    )
    from hireslm.audio.loudness import (
        LoudnessMeter,
        apply_gain,
        loudness_gain_db,
        measure_loudness,
        normalize_loudness,
    )
    from hireslm.audio.mel import STFT, LogMelSpectrogram
    from hireslm.audio.resample import resample

# name -> the module that defines it, imported on first use
_EXPORTS = {
    "estimate_bandwidth": "hireslm.audio.bandwidth",
    "AudioError": "hireslm.audio.errors",
    "EmptyAudioError": "hireslm.audio.errors",
    "NonFiniteAudioError": "hireslm.audio.errors",
    "SilentAudioError": "hireslm.audio.errors",
    "UnreadableAudioError": "hireslm.audio.errors",
    "atomic_audio_writer": "hireslm.audio.io",
    "audio_info": "hireslm.audio.io",
    "check_audio": "hireslm.audio.io",
    "header_shortfall": "hireslm.audio.io",
    "is_silent": "hireslm.audio.io",
    "iter_audio_blocks": "hireslm.audio.io",
    "load_audio": "hireslm.audio.io",
    "save_audio": "hireslm.audio.io",
    "stream_note": "hireslm.audio.io",
    "LoudnessMeter": "hireslm.audio.loudness",
    "apply_gain": "hireslm.audio.loudness",
    "loudness_gain_db": "hireslm.audio.loudness",
    "measure_loudness": "hireslm.audio.loudness",
    "normalize_loudness": "hireslm.audio.loudness",
    "STFT": "hireslm.audio.mel",
    "AudioConfig": "hireslm.audio.config",
    "LogMelSpectrogram": "hireslm.audio.mel",
    "resample": "hireslm.audio.resample",
}


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

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
    "header_shortfall",
    "is_silent",
    "iter_audio_blocks",
    "load_audio",
    "loudness_gain_db",
    "measure_loudness",
    "normalize_loudness",
    "resample",
    "save_audio",
    "stream_note",
]

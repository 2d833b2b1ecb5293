"""Shared fixtures: real speech from the committed public-domain LibriVox clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hireslm.audio import load_audio, resample

REPO = Path(__file__).resolve().parent.parent
LIBRIVOX = sorted((REPO / "examples" / "librivox").glob("*.flac"))


@pytest.fixture(scope="session")
def librivox_files() -> list[Path]:
    """The committed LibriVox clips (16 kHz mono FLAC, 3-7 s of read speech)."""
    assert LIBRIVOX, "examples/librivox/*.flac missing"
    return LIBRIVOX


@pytest.fixture(scope="session")
def speech_48k(librivox_files: list[Path]) -> np.ndarray:
    """The first 2 s of a real recording resampled to 48 kHz, ``(1, 96000)`` float32, with a
    faint broadband floor so every band up to 24 kHz carries some signal."""
    wave, rate = load_audio(librivox_files[0])
    wave = resample(wave, rate, 48000)[:, :96000]
    floor = np.random.default_rng(1234).standard_normal(wave.shape) * 1e-3
    return (wave + floor).astype(np.float32)


@pytest.fixture(scope="session")
def reading_48k(librivox_files: list[Path]) -> np.ndarray:
    """The first LibriVox clip, whole, at 48 kHz: ``(1, N)`` float32 (7.1 s)."""
    wave, rate = load_audio(librivox_files[0])
    return resample(wave, rate, 48000)


@pytest.fixture(scope="session")
def deepfilternet3():
    """DeepFilterNet3 with its real weights and the default settings."""
    from hireslm.models.recovery import DeepFilterNet3Recovery

    return DeepFilterNet3Recovery()

"""Shared fixtures of the evaluation tests: real read speech at 48 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from hireslm.audio import load_audio, resample

SR = 48000


@pytest.fixture(scope="module")
def speech(librivox_files) -> np.ndarray:
    """3 s of real read speech at 48 kHz, ``(N,)`` (a 16 kHz recording: empty above 8 kHz)."""
    wave, rate = load_audio(librivox_files[1])
    return resample(wave, rate, SR)[0, : 3 * SR]


@pytest.fixture(scope="module")
def wide(speech) -> np.ndarray:
    """``speech`` with a faint broadband floor: every bin up to 24 kHz carries signal."""
    floor = 3e-3 * np.random.default_rng(1).standard_normal(speech.shape)
    return (speech + floor).astype(np.float32)

"""Shared fixtures of the job-level tests: a tiny random-weight release, real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """0.6 s of real speech at 16 kHz, ``(1, 9600)``."""
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    return resample(wave, rate, 16000)[:, :9600]

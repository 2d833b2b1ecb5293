"""Full-band measurement on real speech (LibriVox clips at 48 kHz): ViSQOL v3 in audio mode,
and the log-spectral distance above a cutoff as the band-extension papers compute it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hireslm.audio import load_audio, resample
from hireslm.data.degradations import DEGRADATIONS
from hireslm.evaluation import EvaluationOptions, VisqolScorer, score_signals

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


@pytest.fixture(scope="module")
def visqol() -> VisqolScorer:
    return VisqolScorer()


def lowpass(wave: np.ndarray, cutoff_hz: float) -> np.ndarray:
    return DEGRADATIONS["lowpass"](wave[None], SR, np.random.default_rng(0),
                                   cutoff_hz=cutoff_hz)[0]


VISQOL = EvaluationOptions(metrics=("visqol", "pesq"))


def test_visqol_of_itself_is_near_the_top_and_falls_for_a_lowpass(speech, visqol):
    same, notes = score_signals(speech, speech.copy(), SR, VISQOL, visqol=visqol)
    assert notes == {} and 4.6 < same["visqol"] <= 5.0
    cut, _ = score_signals(speech, lowpass(speech, 4000), SR, VISQOL, visqol=visqol)
    assert cut["visqol"] < same["visqol"] - 0.3


def test_visqol_hears_the_band_above_8khz(wide, visqol):
    """An 8 kHz low-pass that PESQ (16 kHz) barely notices costs ViSQOL most of its scale."""
    values, _ = score_signals(wide, lowpass(wide, 8000), SR, VISQOL, visqol=visqol)
    assert values["pesq"] > 4.3
    assert values["visqol"] < 3.0


def test_visqol_of_a_short_clip_is_nan_with_the_reason(speech, visqol):
    short = speech[: int(0.9 * SR)]
    values, notes = score_signals(short, short, SR, VISQOL, visqol=visqol)
    assert math.isnan(values["visqol"]) and "at least 0.96 s (0.90 s here)" in notes["visqol"]
    values, notes = score_signals(speech, np.zeros_like(speech), SR, VISQOL, visqol=visqol)
    assert math.isnan(values["visqol"]) and notes["visqol"] == "estimate is digital silence"
    ok, _ = score_signals(speech[: int(0.96 * SR)], speech[: int(0.96 * SR)], SR, VISQOL,
                          visqol=visqol)
    assert ok["visqol"] > 4.6

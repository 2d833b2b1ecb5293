"""Declipping real speech (the committed LibriVox reading), float and 16-bit integer."""

from __future__ import annotations

import numpy as np
import pytest

from hireslm.audio import load_audio, resample
from hireslm.data.degradations import clipping
from hireslm.evaluation.metrics import log_spectral_distance, pesq_wb
from hireslm.repair import ClipLevelMeter, declip, estimate_clip_levels
from hireslm.repair.spade import aspade

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def speech_16k(librivox_files) -> np.ndarray:
    """2.5 s of a LibriVox reading at its own 16 kHz, ``(1, 40000)`` float32."""
    wave, rate = load_audio(librivox_files[0])
    assert rate == 16000
    return wave[:, 8000:48000]


def _pesq(reference: np.ndarray, estimate: np.ndarray, rate: int) -> float:
    if rate != 16000:
        reference, estimate = (resample(np.asarray(w, np.float32), rate, 16000)
                               for w in (reference, estimate))
    return pesq_wb(reference, estimate)


def _check_consistent(clipped: np.ndarray, restored: np.ndarray, level: float) -> None:
    """Unclipped samples identical; clipped ones at or beyond the level, same sign."""
    at_level = np.abs(clipped) >= level
    assert np.array_equal(restored[~at_level], clipped[~at_level])
    assert np.all(np.sign(restored[at_level]) == np.sign(clipped[at_level]))
    assert np.all(np.abs(restored[at_level]) >= level)


@pytest.mark.parametrize("threshold", [0.1, 0.3])
def test_declip_restores_clipped_speech(speech_16k, threshold):
    clipped = clipping(speech_16k, 16000, RNG, threshold=threshold)
    level = threshold * float(np.max(np.abs(speech_16k)))
    result = declip(clipped, 16000)
    assert result.levels.positive[0] == pytest.approx(level, rel=1e-6)
    assert result.levels.negative[0] == pytest.approx(level, rel=1e-6)
    restored = result.wave
    assert restored.dtype == np.float32 and restored.shape == clipped.shape
    _check_consistent(clipped[0], restored[0], np.float32(level))
    # every run of two or more samples at the level was restored
    assert result.runs.samples > 0.03 * clipped.size
    ref, before, after = speech_16k[0], clipped[0], restored[0]
    assert log_spectral_distance(ref, after, 16000) < log_spectral_distance(ref, before, 16000)
    pesq_before, pesq_after = _pesq(ref, before, 16000), _pesq(ref, after, 16000)
    assert pesq_after > pesq_before + 0.5, (pesq_before, pesq_after)


def test_declip_at_48k(reading_48k):
    clean = reading_48k[:, 48000:96000]
    clipped = clipping(clean, 48000, RNG, threshold=0.2)
    restored = declip(clipped, 48000).wave
    level = np.float32(0.2 * np.max(np.abs(clean)))
    _check_consistent(clipped[0], restored[0], level)
    assert (log_spectral_distance(clean[0], restored[0], 48000)
            < log_spectral_distance(clean[0], clipped[0], 48000))
    assert _pesq(clean[0], restored[0], 48000) > _pesq(clean[0], clipped[0], 48000) + 0.5


def test_declip_overdriven_16_bit_file(speech_16k):
    """An integer file driven into full scale: clip levels 32767 and 32768 (asymmetric)."""
    loud = speech_16k[0] * (4.0 / np.max(np.abs(speech_16k)))
    pcm = np.clip(np.round(loud * 32768.0), -32768, 32767).astype(np.int16)
    levels = estimate_clip_levels(pcm)
    assert levels.positive == (32767.0,) and levels.negative == (32768.0,)
    result = declip(pcm, 16000)
    assert result.wave.dtype == np.float64 and result.wave.shape == pcm.shape
    out = result.wave
    top, bottom = pcm == 32767, pcm == -32768
    assert np.array_equal(out[~top & ~bottom], pcm[~top & ~bottom].astype(np.float64))
    assert np.all(out[top] >= 32767) and np.all(out[bottom] <= -32768)
    assert out.max() > 40000 and out.min() < -40000  # the peaks come back above full scale
    reference = loud * 32768.0
    assert (log_spectral_distance(reference, out, 16000)
            < log_spectral_distance(reference, pcm.astype(np.float64), 16000))


def test_clean_speech_is_left_alone(librivox_files):
    for path in librivox_files:
        wave, rate = load_audio(path)
        levels = estimate_clip_levels(wave)
        assert not levels.any, path.name
        result = declip(wave, rate)
        assert np.array_equal(result.wave, wave) and len(result.runs) == 0


def test_level_meter_streams(speech_16k):
    clipped = clipping(np.concatenate([speech_16k, 0.5 * speech_16k]), 16000, RNG,
                       threshold=0.4)
    meter = ClipLevelMeter(2)
    start = 0
    while start < clipped.shape[1]:
        size = int(RNG.integers(1, 3000))
        meter.update(clipped[:, start:start + size])
        start += size
    assert meter.result() == estimate_clip_levels(clipped)
    assert meter.result().positive[1] == pytest.approx(float(np.max(clipped[1])))


def test_aspade_stays_in_the_consistent_set():
    frames = RNG.standard_normal((5, 256))
    lower, upper = frames.copy(), frames.copy()
    top, bottom = frames > 1.0, frames < -1.0
    lower[top], upper[top] = 1.0, np.inf
    lower[bottom], upper[bottom] = -np.inf, -1.0
    observed = np.clip(frames, -1.0, 1.0)
    restored, iterations = aspade(observed, np.where(top | bottom, lower, observed),
                                  np.where(top | bottom, upper, observed), max_iter=20)
    reliable = ~(top | bottom)
    assert np.array_equal(restored[reliable], observed[reliable])
    assert np.all(restored[top] >= 1.0) and np.all(restored[bottom] <= -1.0)
    assert np.all((iterations >= 1) & (iterations <= 20))

"""Dropouts in real speech (the committed LibriVox reading): found, filled, and never
found in clean speech with its natural pauses."""

from __future__ import annotations

import numpy as np
import pytest

from hireslm.audio import load_audio, resample
from hireslm.evaluation.metrics import log_spectral_distance, pesq_wb
from hireslm.repair import detect_dropouts, fill_dropouts, repair
from hireslm.repair.ar_fill import solve_toeplitz

SR = 48000


def _with_gaps(wave: np.ndarray, rate: int, *, every_ms: float = 300.0, gap_ms: float = 10.0,
               gain: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``gap_ms`` dropouts every ``every_ms`` (scaled by ``gain``: 0 for digital zeros);
    returns the damaged copy and the ``(N,)`` mask of dropped samples."""
    out = wave.copy()
    mask = np.zeros(wave.shape[-1], dtype=bool)
    for start in range(int(0.05 * rate), wave.shape[-1], int(every_ms * rate / 1000)):
        mask[start:start + int(gap_ms * rate / 1000)] = True
    out[..., mask] *= gain
    return out, mask


def _pesq(reference: np.ndarray, estimate: np.ndarray) -> float:
    return pesq_wb(*(resample(np.asarray(w, np.float32), SR, 16000)
                     for w in (reference, estimate)))


@pytest.fixture(scope="module")
def reading(reading_48k) -> np.ndarray:
    """3 s of the LibriVox reading at 48 kHz, ``(1, 144000)``."""
    return reading_48k[:, :144000]


@pytest.mark.parametrize("gain", [0.0, 1e-3])  # packet loss; a -60 dB tape dropout
def test_dropouts_are_filled(reading, gain):
    damaged, dropped = _with_gaps(reading, SR, gain=gain)
    result = fill_dropouts(damaged, SR)
    found = result.runs.mask(1, damaged.shape[1])[0]
    # the gaps with speech around them are found; only dropped samples are taken
    assert len(result.runs) >= 6 and np.all(dropped[found])
    assert found.sum() >= 0.6 * dropped.sum()
    assert result.wave.dtype == np.float32
    assert np.array_equal(result.wave[0, ~found], damaged[0, ~found])
    ref, before, after = reading[0], damaged[0], result.wave[0]
    assert log_spectral_distance(ref, after, SR) < 0.5 * log_spectral_distance(ref, before, SR)
    pesq_before, pesq_after = _pesq(ref, before), _pesq(ref, after)
    assert pesq_after > pesq_before + 0.7, (pesq_before, pesq_after)


def test_natural_pauses_are_not_dropouts(librivox_files):
    """Five clean readings, at their own 16 kHz and at 48 kHz: pauses between words and
    phrases, stop closures, breaths; nothing is found and ``repair`` changes nothing."""
    for path in librivox_files:
        wave, rate = load_audio(path)
        for sr, signal in ((rate, wave), (SR, resample(wave, rate, SR))):
            assert len(detect_dropouts(signal, sr)) == 0, (path.name, sr)
            result = repair(signal, sr)
            assert not result.changed
            assert np.array_equal(result.wave, signal)


def test_long_silence_is_not_a_dropout(reading):
    """A 60 ms stretch of digital silence inside speech is an edit or a pause, not a
    dropout (longer than ``max_ms``), and silence at the start has no speech before it."""
    damaged = reading.copy()
    damaged[:, 40000:42880] = 0.0
    damaged[:, :4000] = 0.0
    assert len(detect_dropouts(damaged, SR)) == 0


def test_levinson_matches_dense_solve():
    rng = np.random.default_rng(0)
    column = np.zeros(300)
    column[:4] = [3.0, 1.2, -0.5, 0.2]
    rhs = rng.standard_normal(300)
    lag = np.abs(np.arange(300)[:, None] - np.arange(300)[None, :])
    assert np.allclose(solve_toeplitz(column, rhs), np.linalg.solve(column[lag], rhs),
                       atol=1e-10)

"""DeepFilterNet3 recovery with its real weights, on real speech (the LibriVox clips)."""

from __future__ import annotations

import numpy as np
import pytest

from hireslm.data.degradations import lowpass, noise
from hireslm.models.recovery import PRETRAINED_RECOVERY, DeepFilterNet3Recovery
from hireslm.recovery.deepfilternet import HOP, foreground_kept_db, mirrored

SR = 48000


@pytest.fixture(scope="module")
def speech(reading_48k) -> np.ndarray:
    return reading_48k


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    return (x * 10 ** ((level_db - db(x)) / 20)).astype(np.float32)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    e, r = estimate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    target = r * (e @ r) / (r @ r)
    return float(10 * np.log10((target @ target) / ((e - target) @ (e - target))))


def lag(y: np.ndarray, x: np.ndarray, max_lag: int = 2400) -> int:
    n = len(x) + len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(corr[lags])])


def short_cut(speech: np.ndarray) -> np.ndarray:
    """0.9 s from 3.5 s into the clip, low-passed at 2.5 kHz, ``(1, 43200)``: a cold
    DeepFilterNet3 turns it into near-silence (-47 dB)."""
    cut = speech[:, int(3.5 * SR): int(3.5 * SR) + int(0.9 * SR)]
    return lowpass(cut, SR, np.random.default_rng(0), cutoff_hz=2500)


def test_registry_and_rate() -> None:
    assert PRETRAINED_RECOVERY["deepfilternet3"] is DeepFilterNet3Recovery
    assert DeepFilterNet3Recovery.sample_rate == 48000


@pytest.mark.parametrize("n", [1, 2, 300, 479, 480, 481, 1440, 4801, 2 * SR + 7])
def test_exact_length_shape_and_dtype(speech, deepfilternet3, n: int) -> None:
    x = speech[0, SR: SR + n]
    out = deepfilternet3(x)
    assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
    out2 = deepfilternet3(speech[:, SR: SR + n])
    assert out2.shape == (1, n)
    np.testing.assert_allclose(out2[0], out, atol=1e-6)


def test_stream_is_block_size_invariant(speech, deepfilternet3) -> None:
    """Odd blocks (some empty, some longer than the warm-up) give the whole-array result."""
    x = speech[:, : 4 * SR + 123]
    whole = deepfilternet3(x)
    sizes = [0, 1, 7, 479, 481, 13, 50000, 0, 333, 96001, 17]
    cuts = np.cumsum(sizes)
    blocks = np.split(x, cuts[cuts < x.shape[1]], axis=1)
    consumed = 0

    def source():
        nonlocal consumed
        for block in blocks:
            consumed += block.shape[1]
            yield block

    outs, consumed_at_first = [], None
    for out in deepfilternet3.stream(source(), channels=1):
        consumed_at_first = consumed if consumed_at_first is None else consumed_at_first
        outs.append(out)
    assert all(o.shape[0] == 1 and o.dtype == np.float32 for o in outs)
    # Bounded memory: output starts before the input ends (a 4 s stream is not held whole).
    assert consumed_at_first < x.shape[1]
    streamed = np.concatenate(outs, axis=1)
    assert streamed.shape == x.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_sample_aligned(speech, deepfilternet3) -> None:
    x = speech[0, : 4 * SR]
    assert lag(deepfilternet3(x), x) == 0
    noisy = noise(speech[:, : 4 * SR], SR, np.random.default_rng(1), snr_db=15.0)[0]
    assert lag(deepfilternet3(noisy), x) == 0


def test_channels_are_independent(speech, deepfilternet3) -> None:
    left = speech[0, : 2 * SR]
    right = noise(speech[:, 2 * SR: 4 * SR], SR, np.random.default_rng(2), snr_db=5.0)[0]
    stereo = deepfilternet3(np.stack([left, right]))
    np.testing.assert_allclose(stereo[1], deepfilternet3(right), atol=1e-6)
    np.testing.assert_allclose(stereo[0], deepfilternet3(left), atol=1e-6)


def test_short_utterance_is_kept(speech) -> None:
    """The cold model deletes the 0.9 s cut; the warm-up (and the guard) keep it."""
    cut = short_cut(speech)
    cold = DeepFilterNet3Recovery(warmup_seconds=0.0, guard_db=None)(cut)
    assert db(cold) - db(cut) < -20  # the failure this class exists to prevent
    for level in (None, -30.0):
        x = cut if level is None else at_level(cut, level)
        for kw in ({}, {"guard_db": None}, {"warmup_seconds": 0.0}):
            out = DeepFilterNet3Recovery(**kw)(x)
            assert abs(db(out) - db(x)) < 3.0, (level, kw)
    # An uncut short clip in its own band, at a low level.
    plain = at_level(speech[:, int(1.0 * SR): int(1.9 * SR)], -30.0)
    assert abs(db(DeepFilterNet3Recovery()(plain)) - db(plain)) < 3.0


def test_guard_measure() -> None:
    """A foreground wiped (here by construction) reads as lost; stationary noise alone has
    no foreground to judge."""
    rng = np.random.default_rng(3)
    x = np.zeros((1, SR), dtype=np.float32)
    x[:, 20000:30000] = 0.1 * rng.standard_normal(10000)
    x += 1e-3 * rng.standard_normal(x.shape).astype(np.float32)
    assert foreground_kept_db(x, 0.001 * x)[0] == pytest.approx(-60.0, abs=0.1)
    assert foreground_kept_db(x, 0.9 * x)[0] == pytest.approx(-0.9, abs=0.1)
    flat = rng.standard_normal((1, SR))
    assert foreground_kept_db(flat, 0.001 * flat)[0] == 0.0


@pytest.mark.parametrize("seconds", [4.0, 1.5])
def test_removes_noise(speech, deepfilternet3, seconds: float) -> None:
    """Speech in white noise at 5 dB SNR, long and short (the guard holds the short one)."""
    clean = speech[:, : int(seconds * SR)]
    noisy = noise(clean, SR, np.random.default_rng(4), snr_db=5.0)
    before, after = si_sdr(noisy, clean), si_sdr(deepfilternet3(noisy), clean)
    assert after > before + 6.0, (before, after)


def test_atten_lim_bounds_suppression(speech) -> None:
    """With a 12 dB limit the noise in the pauses drops by about 12 dB, not more."""
    rng = np.random.default_rng(5)
    clean = np.zeros((1, 3 * SR), dtype=np.float32)
    clean[:, SR: 2 * SR] = speech[:, SR: 2 * SR]  # speech between two 1 s pauses
    noisy = noise(clean, SR, rng, snr_db=5.0)
    pause = np.s_[:, int(0.3 * SR): int(0.9 * SR)]

    def drop(out: np.ndarray) -> float:
        return db(noisy[pause]) - db(out[pause])

    limited = drop(DeepFilterNet3Recovery(atten_lim_db=12.0)(noisy))
    assert 9.0 < limited < 13.0, limited
    assert drop(DeepFilterNet3Recovery()(noisy)) > 20.0


def test_mix_and_post_filter(speech) -> None:
    x = noise(speech[:, : SR], SR, np.random.default_rng(6), snr_db=10.0)
    enhanced = DeepFilterNet3Recovery()(x)
    half = DeepFilterNet3Recovery(mix=0.25)(x)
    np.testing.assert_allclose(half, 0.75 * enhanced + 0.25 * x, atol=1e-5)
    np.testing.assert_allclose(DeepFilterNet3Recovery(mix=1.0)(x), x, atol=1e-6)
    filtered = DeepFilterNet3Recovery(post_filter_beta=0.02)(x)
    assert np.isfinite(filtered).all() and not np.allclose(filtered, enhanced)


def test_mirrored_and_bad_input(deepfilternet3) -> None:
    x = np.arange(4, dtype=np.float32)[None]
    np.testing.assert_array_equal(mirrored(x, 9)[0], [1, 2, 3, 2, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(mirrored(x[:, :1], 3)[0], [0, 0, 0])
    assert deepfilternet3(np.zeros((2, 0), np.float32)).shape == (2, 0)
    with pytest.raises(ValueError, match="non-finite"):
        deepfilternet3(np.full(HOP, np.nan, np.float32))
    with pytest.raises(ValueError, match="blocks"):
        list(deepfilternet3.stream([np.zeros((2, 10), np.float32)], channels=1))
    with pytest.raises(ValueError, match="atten_lim_db"):
        DeepFilterNet3Recovery(atten_lim_db=0.0)

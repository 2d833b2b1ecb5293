"""The recovery gate with the real DeepFilterNet3 on real speech: clean stretches come out
untouched, noisy ones recovered, in exact length, whatever the blocks."""

from __future__ import annotations

import numpy as np

from hireslm.audio import load_audio, resample
from hireslm.data.degradations.noise import colored_noise, mix_at_snr
from hireslm.pipeline.gate import GateStats, gated_recovery, ratio_judge, removal_ratio_db

SR = 48000


def _noisy(wave: np.ndarray, snr_db: float) -> np.ndarray:
    hiss = colored_noise(1, wave.shape[1], SR, np.random.default_rng(5), alpha=1.0)
    return mix_at_snr(wave, hiss, snr_db)


def _run(recovery, wave, threshold_db=14.0, block=SR):
    stats = GateStats()
    blocks = [wave[:, i:i + block] for i in range(0, wave.shape[1], block)]
    gated = gated_recovery(recovery, blocks, 1, ratio_judge(threshold_db), stats)
    out = np.concatenate(list(gated), axis=1)
    return out, stats


def test_clean_speech_comes_out_untouched(deepfilternet3, reading_48k):
    out, stats = _run(deepfilternet3, reading_48k)
    assert out.shape == reading_48k.shape
    np.testing.assert_array_equal(out, reading_48k)
    assert stats.recovered_share() == [0.0]


def test_noisy_speech_is_recovered(deepfilternet3, reading_48k):
    noisy = _noisy(reading_48k, 5.0)
    out, stats = _run(deepfilternet3, noisy, block=7001)
    assert stats.recovered_share()[0] > 0.95
    np.testing.assert_allclose(out, deepfilternet3(noisy), atol=1e-6)
    assert removal_ratio_db(noisy, out)[0] < 14.0


def test_only_the_noisy_stretch_is_recovered(deepfilternet3, librivox_files):
    reading = np.concatenate([resample(*load_audio(path), SR) for path in librivox_files] * 2,
                             axis=1)[:, : 36 * SR]
    half = 16 * SR  # two whole gate segments
    mixed = np.concatenate([reading[:, :half], _noisy(reading[:, half:], 0.0)], axis=1)
    out, stats = _run(deepfilternet3, mixed, block=12345)
    assert out.shape == mixed.shape
    np.testing.assert_array_equal(out[:, :half], mixed[:, :half])
    share = stats.recovered_share()[0]
    assert abs(share - (mixed.shape[1] - half) / mixed.shape[1]) < 0.02
    assert not np.allclose(out[:, half + SR:], mixed[:, half + SR:])

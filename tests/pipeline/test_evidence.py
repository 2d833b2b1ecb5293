"""The decision taken after recovery, from evidence of what it removed, on real speech.

Each case runs the real DeepFilterNet3 over one committed LibriVox reading (5.3 s, resampled
to 48 kHz, loudness-normalised to -20 LUFS as the pipeline does) and checks the verdict:
clean speech, however short or band-limited, keeps its input; stationary noise and hum are
recovered. The degradations are seeded, so every run measures the same numbers.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from hireslm.audio import load_audio, normalize_loudness, resample
from hireslm.data.degradations.filters import lowpass
from hireslm.data.degradations.noise import colored_noise, mix_at_snr
from hireslm.pipeline import evidence as ev

RATE = 48000


def _hum(n: int, f0: float = 50.0) -> np.ndarray:
    """Mains hum: ``f0`` and 9 harmonics, odd ones stronger, fixed phases."""
    t = np.arange(n) / RATE
    hum = sum((1.0 if k % 2 else 0.5) / k * np.sin(2 * np.pi * f0 * k * t + k)
              for k in range(1, 11))
    return np.asarray(hum, dtype=np.float32)[None]


def _densest(x: np.ndarray, seconds: float) -> np.ndarray:
    """The ``seconds`` of ``x`` ``(1, n)`` whose quietest 20 ms frames are loudest: running
    speech with no pause."""
    frame, length = 960, round(seconds * RATE)
    count = x.shape[1] // frame
    db = 10 * np.log10(np.mean(x[0, : count * frame].reshape(count, frame) ** 2, axis=1)
                       + 1e-12)
    win = length // frame
    start = max(range(count - win), key=lambda s: np.percentile(db[s: s + win], 10))
    return x[:, start * frame: start * frame + length]


@pytest.fixture(scope="module")
def reading(librivox_files) -> np.ndarray:
    wave, rate = load_audio(librivox_files[2])  # ...-0890.flac, 5.3 s
    return resample(wave.mean(axis=0, keepdims=True), rate, RATE)


@pytest.fixture(scope="module")
def recovered(reading, deepfilternet3):
    """name -> (dry, wet) for each case, dry at -20 LUFS."""
    rng = np.random.default_rng(21)
    cases = {
        "short_dense": _densest(reading, 0.9),
        "lowpass_5k5": lowpass(reading, RATE, rng, cutoff_hz=5500),
        "pink_15db": mix_at_snr(reading, colored_noise(1, reading.shape[1], RATE, rng, 1.0),
                                15.0),
        "hum_20db": mix_at_snr(reading, _hum(reading.shape[1]), 20.0),
    }
    out = {}
    for name, wave in cases.items():
        dry, _ = normalize_loudness(wave.astype(np.float32), RATE)
        out[name] = (dry, deepfilternet3(dry))
    return out


@pytest.mark.parametrize("case", ["short_dense", "lowpass_5k5"])
def test_clean_speech_keeps_its_input(recovered, case):
    dry, wet = recovered[case]
    (verdict,) = ev.verdicts(dry, wet)
    assert not verdict.use_recovered, verdict.reason
    assert verdict.decision in (ev.INPUT, ev.UNSURE)
    # what recovery removed follows the speech: damage, not noise
    assert verdict.evidence.band_corr > verdict.evidence.noise_corr_limit


@pytest.mark.parametrize("case", ["pink_15db", "hum_20db"])
def test_stationary_noise_and_hum_are_recovered(recovered, case):
    dry, wet = recovered[case]
    (verdict,) = ev.verdicts(dry, wet)
    assert verdict.use_recovered, verdict.reason
    assert verdict.evidence.floor_measurable
    assert verdict.evidence.excess_loud_loss_db <= ev.DEFAULT_THRESHOLDS.excess_loss_db


def test_pink_noise_residual_is_independent_of_the_speech(recovered):
    e = ev.verdicts(*recovered["pink_15db"])[0].evidence
    assert e.band_corr < 0.0  # the removed noise does not rise and fall with the speech
    assert e.quiet_loss_db > 5.0 and e.loud_loss_db < 1.0  # the pauses lost the noise


def test_hum_residual_is_at_mains_harmonics(recovered):
    e = ev.verdicts(*recovered["hum_20db"])[0].evidence
    assert e.hum_share >= ev.DEFAULT_THRESHOLDS.hum_share


def test_to_dict_is_json_ready(recovered):
    import json

    (verdict,) = ev.verdicts(*recovered["pink_15db"])
    account = verdict.to_dict()
    json.dumps(account)
    assert account["decision"] == ev.RECOVERED and account["use_recovered"] is True
    assert set(account["evidence"]) >= {"envelope_corr", "band_corr", "loud_loss_db",
                                        "quiet_loss_db", "hum_share", "floor_measurable"}


def test_destroyed_clip_keeps_its_input(reading):
    """A recovery that wiped the clip (tens of dB gone in every frame) removed speech."""
    dry = _densest(reading, 0.9)
    (verdict,) = ev.verdicts(dry, dry * np.float32(10 ** (-40 / 20)))
    assert verdict.decision in (ev.INPUT, ev.UNSURE)
    assert verdict.evidence.loud_loss_db == pytest.approx(40.0, abs=0.1)


def test_nothing_removed_keeps_the_input(reading):
    (verdict,) = ev.verdicts(reading, reading.copy())
    assert verdict.decision == ev.INPUT
    assert math.isinf(verdict.evidence.removed_db) or verdict.evidence.removed_db > 100


def test_silence_is_no_evidence():
    zeros = np.zeros((2, RATE), np.float32)
    verdicts = ev.verdicts(zeros, zeros)
    assert [v.decision for v in verdicts] == [ev.UNSURE, ev.UNSURE]
    assert verdicts[0].to_dict()["evidence"] is None


def test_shapes_must_match():
    with pytest.raises(ValueError):
        ev.measure_evidence(np.zeros((1, 100)), np.zeros((1, 99)))


@pytest.mark.parametrize("seconds, expected", [
    (0.5, [(0, 24000)]),
    (15.9, [(0, 763200)]),
    (16.0, [(0, 384000), (384000, 768000)]),
    (30.0, [(0, 384000), (384000, 768000), (768000, 1440000)]),
    (40.0, [(0, 384000), (384000, 768000), (768000, 1152000), (1152000, 1536000),
            (1536000, 1920000)]),
])
def test_segments_match_the_gate(seconds, expected):
    assert ev.segment_bounds(round(seconds * RATE)) == expected


def test_apply_verdicts_per_segment_and_channel():
    n = 20 * RATE
    dry = np.ones((2, n), np.float32)
    wet = np.zeros((2, n), np.float32)
    rec = ev.Verdict(ev.RECOVERED, "r")
    keep = ev.Verdict(ev.INPUT, "k")
    decisions = [(0, 8 * RATE, [rec, keep]), (8 * RATE, n, [keep, keep])]
    out = ev.apply_verdicts(dry, wet, decisions)
    assert out.shape == dry.shape and out.dtype == np.float32
    assert out[0, 100] == 0.0 and out[1, 100] == 1.0  # recovered / kept
    assert out[0, -1] == 1.0
    ramp = out[0, 8 * RATE: 8 * RATE + round(0.05 * RATE)]
    assert np.all(np.diff(ramp) >= 0) and ramp[0] == 0.0  # crossfade back to the input


def test_evidence_module_imports_no_torch():
    code = ("import sys; import hireslm.pipeline.evidence; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

"""DegradationChain: the repository config, determinism, records, safety, file handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hireslm.audio import load_audio, resample, save_audio
from hireslm.config import load_config
from hireslm.data.chain import DegradationChain, make_safe
from hireslm.data.degradations import REGISTRY
from hireslm.data.degradations.registry import DegradationEntry, sample_param

SR = 48000
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "degradations.yaml"


def one_stage(name: str, params: dict | None = None, prob: float = 1.0) -> dict:
    return {
        "stages": [{"name": name, "prob": prob, "choices": {name: 1.0}}],
        "params": {name: params or {}},
    }


@pytest.fixture(scope="module")
def chain(librivox_files) -> DegradationChain:
    return DegradationChain.from_yaml(
        CONFIG, noise_files=librivox_files[3:], babble_files=librivox_files[:3]
    )


def test_repository_config_is_deterministic_and_reports_json(chain, speech_48k):
    seen_names, changed = set(), 0
    for seed in range(12):
        out, applied = chain(speech_48k, SR, np.random.default_rng(seed))
        again, applied_again = chain(speech_48k, SR, np.random.default_rng(seed))
        assert np.array_equal(out, again) and applied == applied_again
        assert out.shape == speech_48k.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
        json.dumps(applied)  # serialisable as is
        assert all(set(step) == {"name", "params"} for step in applied)
        seen_names.update(step["name"] for step in applied)
        changed += not np.array_equal(out, speech_48k)
    assert changed >= 9
    assert len(seen_names) >= 6


def test_stage_order_is_the_config_order(chain, speech_48k):
    order = [name for stage in chain.stages for name in stage.choices] + ["peak_safety"]
    for seed in range(12):
        _, applied = chain(speech_48k, SR, np.random.default_rng(seed))
        positions = [order.index(step["name"]) for step in applied]
        assert positions == sorted(positions)


def test_different_seeds_differ(chain, speech_48k):
    a, _ = chain(speech_48k, SR, np.random.default_rng(100))
    b, _ = chain(speech_48k, SR, np.random.default_rng(101))
    assert not np.array_equal(a, b)


def test_noise_source_follows_the_files(speech_48k, librivox_files):
    config = one_stage("noise", {"snr_db": 10.0, "file_prob": 1.0, "color": "pink"})
    synthetic = DegradationChain.from_config(config)
    _, applied = synthetic(speech_48k, SR, np.random.default_rng(0))
    assert applied == [{"name": "noise", "params": {"snr_db": 10.0, "color": "pink"}}]
    recorded = DegradationChain.from_config(config, noise_files=librivox_files[:2])
    out, applied = recorded(speech_48k, SR, np.random.default_rng(0))
    assert applied[0]["params"]["noise_file"] in {str(p) for p in librivox_files[:2]}
    residual = out.astype(np.float64) - speech_48k
    measured = 10 * np.log10(np.sum(speech_48k.astype(np.float64) ** 2) / np.sum(residual**2))
    assert abs(measured - 10.0) < 0.5
    # A fixed color asks for synthetic noise even when files exist.
    _, record = recorded.apply_named("noise", speech_48k, SR, np.random.default_rng(0),
                                     color="brown")
    assert record["params"] == {"snr_db": 10.0, "color": "brown"}


def test_babble_needs_files(speech_48k, librivox_files):
    config = one_stage("babble", {"snr_db": 5.0, "n_talkers": 3})
    without = DegradationChain.from_config(config)
    out, applied = without(speech_48k, SR, np.random.default_rng(0))
    assert applied == [] and np.array_equal(out, speech_48k)
    with_files = DegradationChain.from_config(config, babble_files=librivox_files)
    _, applied = with_files(speech_48k, SR, np.random.default_rng(0))
    assert applied[0]["name"] == "babble" and len(applied[0]["params"]["talker_files"]) == 3


def test_reverb_records_the_room_or_the_file(speech_48k, tmp_path):
    config = one_stage("reverb", {"rt60_s": 0.3, "max_order": 10, "rir_file_prob": 1.0})
    simulated = DegradationChain.from_config(config)
    _, applied = simulated(speech_48k, SR, np.random.default_rng(0))
    params = applied[0]["params"]
    assert params["rt60_target_s"] == 0.3 and params["rt60_measured_s"] > 0
    assert len(params["room_dims_m"]) == 3 and params["max_order"] <= 10
    rir = np.zeros(4000, dtype=np.float32)
    rir[100], rir[900] = 1.0, 0.3
    rir_path = save_audio(tmp_path / "rir.wav", rir, SR, subtype="float")
    measured = DegradationChain.from_config(config, rir_files=[rir_path])
    out, applied = measured(speech_48k, SR, np.random.default_rng(0))
    assert applied == [{"name": "reverb", "params": {"rir_file": str(rir_path)}}]
    expected = speech_48k.astype(np.float64).copy()
    expected[:, 800:] += 0.3 * speech_48k[:, :-800]
    expected *= np.sqrt(np.mean(speech_48k.astype(np.float64) ** 2) / np.mean(expected**2))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_apply_named_draws_the_rest_from_the_config(chain, speech_48k):
    out, record = chain.apply_named("lowpass", speech_48k, SR, np.random.default_rng(0),
                                    cutoff_hz=3000.0)
    assert record["name"] == "lowpass" and record["params"]["cutoff_hz"] == 3000.0
    assert record["params"]["family"] in {"butterworth", "chebyshev1", "chebyshev2",
                                          "elliptic", "bessel"}
    assert 4 <= record["params"]["order"] <= 12
    assert out.shape == speech_48k.shape
    with pytest.raises(ValueError, match="unknown degradation"):
        chain.apply_named("vinyl", speech_48k, SR, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown parameters"):
        chain.apply_named("gain", speech_48k, SR, np.random.default_rng(0), gian_db=1.0)
    with pytest.raises(ValueError, match="cannot apply"):
        chain.apply_named("resample", speech_48k, SR, np.random.default_rng(0), low_rate=96000)


def test_cutoffs_are_kept_below_nyquist(speech_48k):
    low = resample(speech_48k, SR, 16000)
    config = one_stage("lowpass", {"cutoff_hz": 20000.0, "family": "butterworth", "order": 8})
    out, applied = DegradationChain.from_config(config)(low, 16000, np.random.default_rng(0))
    assert applied[0]["params"]["cutoff_hz"] == pytest.approx(0.45 * 16000)
    assert out.shape == low.shape


def test_peak_safety(speech_48k):
    config = one_stage("gain", {"gain_db": 30.0})
    out, applied = DegradationChain.from_config(config)(speech_48k, SR, np.random.default_rng(0))
    assert np.abs(out).max() == pytest.approx(1.0)
    assert [step["name"] for step in applied] == ["gain", "peak_safety"]
    loud = (speech_48k / np.abs(speech_48k).max() * 1.5).astype(np.float32)
    out, _ = DegradationChain.from_config(config)(loud, SR, np.random.default_rng(0))
    assert np.abs(out).max() == pytest.approx(1.5)  # a clean already above 1 keeps its peak
    bad = speech_48k.copy()
    bad[0, :10] = np.nan
    safe, record = make_safe(bad, speech_48k)
    assert np.isfinite(safe).all() and record is None


def test_file_cache_is_bounded(speech_48k, librivox_files):
    config = one_stage("noise", {"snr_db": 10.0, "file_prob": 1.0})
    chain = DegradationChain.from_config(config, noise_files=librivox_files)
    chain.cache_size = 2
    for seed in range(10):
        chain(speech_48k, SR, np.random.default_rng(seed))
    assert 1 <= len(chain._cache) <= 2
    path = next(iter(chain._cache))
    assert np.array_equal(chain._cache[path][0], load_audio(path)[0])


def test_sample_param():
    rng = np.random.default_rng(0)
    assert sample_param(3.5, rng) == 3.5 and sample_param("pink", rng) == "pink"
    assert all(2.0 <= sample_param({"uniform": [2.0, 3.0]}, rng) <= 3.0 for _ in range(50))
    draws = [sample_param({"loguniform": [10.0, 1000.0]}, rng) for _ in range(400)]
    assert 10.0 <= min(draws) and max(draws) <= 1000.0
    assert 0.35 < np.mean(np.array(draws) < 100.0) < 0.65  # half the draws below the geo-mean
    ints = {sample_param({"int": [1, 3]}, rng) for _ in range(100)}
    assert ints == {1, 2, 3}
    assert sample_param({"choice": [8000]}, rng) == 8000
    with pytest.raises(ValueError, match="spec"):
        sample_param({"gaussian": [0, 1]}, rng)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown degradations"):
        DegradationChain.from_config(one_stage("vinyl"))
    bad_prob = one_stage("gain", {"gain_db": 1.0}, prob=1.5)
    with pytest.raises(ValueError, match="prob"):
        DegradationChain.from_config(bad_prob)
    with pytest.raises(ValueError, match="stages"):
        DegradationChain.from_config({"params": {}})
    for name in ("gain", "noise"):
        with pytest.raises(ValueError, match="neither in the config"):
            DegradationChain.from_config(one_stage(name))(
                np.ones((1, 100), np.float32), SR, np.random.default_rng(0)
            )
    with pytest.raises(ValueError, match=r"unknown parameters \['snr'\]"):
        DegradationChain.from_config(one_stage("noise", {"snr": 3.0}))
    # The config file itself loads through hireslm.config (base + overrides).
    config = load_config(CONFIG, ["params.gain.gain_db=-3.0"])
    assert DegradationChain.from_config(config).params["gain"]["gain_db"] == -3.0


def _polarity(wave: np.ndarray, sample_rate: int, rng: np.random.Generator, *,
              scale: float) -> np.ndarray:
    """A degradation defined here, outside the package: inverted and scaled."""
    return (-scale * wave).astype(np.float32)


def test_a_new_degradation_needs_only_its_registry_entry(speech_48k, monkeypatch):
    monkeypatch.setitem(REGISTRY, "polarity", DegradationEntry(_polarity))
    chain = DegradationChain.from_config(one_stage("polarity", {"scale": {"uniform": [0.4, 0.6]}}))
    out, applied = chain(speech_48k, SR, np.random.default_rng(0))
    scale = applied[0]["params"]["scale"]
    assert applied[0]["name"] == "polarity" and 0.4 <= scale <= 0.6
    np.testing.assert_allclose(out, -scale * speech_48k, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown parameters"):
        DegradationChain.from_config(one_stage("polarity", {"amount": 1.0}))

"""PairedSpeechDataset on real speech files: shapes, crops, loudness, determinism, workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hireslm.audio import (
    UnreadableAudioError,
    estimate_bandwidth,
    load_audio,
    measure_loudness,
    resample,
    save_audio,
)
from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset, read_segment
from hireslm.data.manifest import index_files, write_manifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "librivox").glob("*.flac"))
SR = 48000


def _widen(wave: np.ndarray, seed: int) -> np.ndarray:
    """Add a faint full-band noise floor so the file measures full-band."""
    rng = np.random.default_rng(seed)
    return (wave + 1e-3 * rng.standard_normal(wave.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real speech: full-band 48 kHz mono, full-band 44.1 kHz stereo, band-limited 16 kHz,
    and a 0.5 s clip shorter than the crops."""
    root = tmp_path_factory.mktemp("dataset")
    long16, sr = load_audio(EXAMPLES[0])  # 7.1 s
    mid16, _ = load_audio(EXAMPLES[2])  # 5.3 s
    narrow16, _ = load_audio(EXAMPLES[3])  # 6.05 s
    stereo = np.concatenate([resample(mid16, sr, 44100), 0.5 * resample(mid16, sr, 44100)])
    files = {
        "wide48": save_audio(root / "wide48.flac", _widen(resample(long16, sr, SR), 1), SR),
        "wide44": save_audio(root / "wide44.wav", _widen(stereo, 2), 44100, subtype="float"),
        "narrow16": save_audio(root / "narrow16.flac", narrow16, sr),
        "short16": save_audio(root / "short16.wav", long16[:, 8000:16000], sr),
    }
    records, failures = index_files(list(files.values()))
    assert not failures
    write_manifest(root / "clean.jsonl", records)
    files["manifest"] = root / "clean.jsonl"
    # A real recording used as the noise source (speech over speech, like a TV in the room).
    noise, _ = load_audio(EXAMPLES[4])
    noise_path = save_audio(root / "noise" / "noise.flac", noise, sr)
    noise_records, _ = index_files([noise_path])
    files["noise"] = write_manifest(root / "noise.jsonl", noise_records)
    return files


def _ds(corpus, **kwargs) -> PairedSpeechDataset:
    kwargs.setdefault("length", 6)
    return PairedSpeechDataset(corpus["manifest"], kwargs.pop("segment_seconds", 1.0), **kwargs)


def test_items_have_the_promised_shapes(corpus):
    ds = _ds(corpus, seed=1)
    assert len(ds) == 6 and ds.num_files == 4 and ds.segment_samples == SR
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"clean", "degraded"}
        for key in ("clean", "degraded"):
            assert item[key].dtype == torch.float32 and item[key].shape == (1, SR)
            assert torch.isfinite(item[key]).all()
        assert torch.equal(item["clean"], item["degraded"])  # no chain: identity
        assert item["clean"].abs().max() <= 0.99 + 1e-6
    with pytest.raises(IndexError):
        ds[6]


def test_same_seed_and_index_give_the_same_item(corpus):
    a, b = _ds(corpus, seed=3), _ds(corpus, seed=3)
    for i in (0, 4):
        assert torch.equal(a[i]["clean"], b[i]["clean"])
    assert not torch.equal(a[0]["clean"], a[1]["clean"])
    assert not torch.equal(a[0]["clean"], _ds(corpus, seed=4)[0]["clean"])
    before = a[2]["clean"]
    a.set_epoch(1)
    assert not torch.equal(before, a[2]["clean"])
    a.set_epoch(0)
    assert torch.equal(before, a[2]["clean"])


def test_bandwidth_filter_drops_band_limited_files(corpus):
    ds = _ds(corpus, min_bandwidth_hz=16000, return_info=True, length=12)
    assert ds.num_files == 2
    paths = {Path(ds[i]["path"]).name for i in range(len(ds))}
    assert paths <= {"wide48.flac", "wide44.wav"} and len(paths) == 2
    with pytest.raises(ValueError, match="no clean files left"):
        _ds(corpus, min_bandwidth_hz=30000)
    with pytest.raises(ValueError, match="bandwidth_hz"):
        PairedSpeechDataset([{"path": str(corpus["wide48"]), "duration": 7.1, "frames": 340800,
                              "sample_rate": SR, "channels": 1}], 1.0, min_bandwidth_hz=1.0)


def test_validation_crops_are_the_files_centres(corpus):
    ds = _ds(corpus, validation=True, mono=False, lufs_spread_db=0.0, return_info=True,
             length=None)
    assert len(ds) == ds.num_files == 4
    names = [Path(ds[i]["path"]).name for i in range(4)]
    # 48 kHz file: the centre crop exactly, up to the loudness gain.
    item = ds[names.index("wide48.flac")]["clean"].numpy()
    wave, _ = load_audio(corpus["wide48"])
    start = (wave.shape[1] - SR) // 2
    _assert_scaled_copy(item, wave[:, start:start + SR], tol=1e-5)
    # 44.1 kHz stereo: the crop read by seeking matches resampling the whole file.
    item = ds[names.index("wide44.wav")]["clean"].numpy()
    wave, sr = load_audio(corpus["wide44"])
    full = resample(wave, sr, SR)
    start = (full.shape[1] - SR) // 2
    assert item.shape == (2, SR)
    _assert_scaled_copy(item, full[:, start:start + SR], tol=1e-4)
    assert measure_loudness(item, SR) == pytest.approx(-20.0, abs=0.1)


def _assert_scaled_copy(got: np.ndarray, reference: np.ndarray, tol: float) -> None:
    gain = float((got * reference).sum() / (reference * reference).sum())
    assert gain > 0
    error = np.sqrt(np.mean((got - gain * reference) ** 2) / np.mean((gain * reference) ** 2))
    assert error < tol


def test_short_files_are_zero_padded(corpus):
    ds = _ds(corpus, validation=True, return_info=True, length=None)
    names = [Path(ds[i]["path"]).name for i in range(4)]
    clean = ds[names.index("short16.wav")]["clean"].numpy()
    assert np.abs(clean[:, :24000]).max() > 0.01
    assert np.all(clean[:, 24000:] == 0)


def test_training_loudness_is_near_the_target(corpus):
    ds = _ds(corpus, seed=5, min_bandwidth_hz=16000, length=8)
    for i in range(len(ds)):
        clean = ds[i]["clean"].numpy()
        loudness = measure_loudness(clean, SR)
        peak_limited = np.abs(clean).max() >= 0.99 - 1e-4
        assert peak_limited or -23.2 <= loudness <= -16.8


def test_read_segment_pads_outside_the_file(corpus):
    wave, _ = load_audio(corpus["narrow16"])
    n = wave.shape[1]
    seg = read_segment(str(corpus["narrow16"]), -10, 30)
    assert np.all(seg[:, :10] == 0) and np.array_equal(seg[:, 10:], wave[:, :20])
    seg = read_segment(str(corpus["narrow16"]), n - 5, 10)
    assert np.array_equal(seg[:, :5], wave[:, -5:]) and np.all(seg[:, 5:] == 0)


def test_stale_or_broken_files_give_clear_errors(corpus, tmp_path):
    with pytest.raises(UnreadableAudioError, match="manifest says 44100 Hz"):
        read_segment(str(corpus["narrow16"]), 0, 10, expected_rate=44100)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(64))
    record = {"path": str(broken), "duration": 1.0, "frames": 16000, "sample_rate": 16000,
              "channels": 1}
    with pytest.raises(UnreadableAudioError, match="broken.wav"):
        PairedSpeechDataset([record], 0.5)[0]


def test_bad_arguments_are_rejected(corpus):
    with pytest.raises(ValueError, match="segment_seconds"):
        _ds(corpus, segment_seconds=0.0)
    with pytest.raises(ValueError, match="length"):
        _ds(corpus, length=0)
    with pytest.raises(FileNotFoundError):
        PairedSpeechDataset(corpus["manifest"].parent / "missing.jsonl", 1.0)


def _batches(ds: PairedSpeechDataset, workers: int) -> list[dict[str, torch.Tensor]]:
    loader = DataLoader(ds, batch_size=3, num_workers=workers, shuffle=False)
    return list(loader)


NOISE_AND_LOWPASS = {
    "stages": [{"name": "noise", "prob": 1.0, "choices": {"noise": 1.0}},
               {"name": "bandlimit", "prob": 1.0, "choices": {"lowpass": 1.0}}],
    "params": {"noise": {"snr_db": {"uniform": [0.0, 10.0]}, "file_prob": 1.0},
               "lowpass": {"cutoff_hz": {"uniform": [3000.0, 6000.0]},
                           "family": "butterworth", "order": 8}},
}


def test_chain_makes_the_degraded_partner(corpus):
    kwargs = dict(chain_config=NOISE_AND_LOWPASS, noise=corpus["noise"], seed=11,
                  min_bandwidth_hz=16000, return_info=True, length=4)
    ds, again = _ds(corpus, **kwargs), _ds(corpus, **kwargs)
    for i in range(len(ds)):
        item = ds[i]
        clean, degraded = item["clean"].numpy(), item["degraded"].numpy()
        assert degraded.shape == clean.shape == (1, SR) and degraded.dtype == np.float32
        assert estimate_bandwidth(clean, SR) > 16000
        assert estimate_bandwidth(degraded, SR) < 7000
        applied = json.loads(item["applied"])
        assert [step["name"] for step in applied][:2] == ["noise", "lowpass"]
        assert applied[0]["params"]["noise_file"] == str(corpus["noise"].parent / "noise"
                                                         / "noise.flac")
        same = again[i]
        assert torch.equal(same["clean"], item["clean"])
        assert torch.equal(same["degraded"], item["degraded"])


def test_worker_processes_give_the_same_batches(corpus):
    # The repository's full training chain, babble from the clean speech itself.
    chain = load_config(CONFIGS / "degradations.yaml")
    ds = _ds(corpus, seed=7, segment_seconds=0.5, chain_config=chain, noise=corpus["noise"],
             babble=corpus["manifest"])
    serial, parallel = _batches(ds, 0), _batches(ds, 2)
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel, strict=True):
        assert a["clean"].shape == (3, 1, SR // 2)
        assert torch.equal(a["clean"], b["clean"]) and torch.equal(a["degraded"], b["degraded"])
    if ds.chain is not None:
        changed = [not torch.equal(c, d) for batch in serial
                   for c, d in zip(batch["clean"], batch["degraded"], strict=True)]
        assert sum(changed) >= 3  # the chain fires on most items

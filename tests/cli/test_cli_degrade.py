"""``hireslm degrade`` in-process on a tree of real recordings."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli import degrade
from hireslm.data.degradations import DEGRADATIONS


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="hireslm degrade")
    degrade.add_arguments(parser)
    return degrade.run(parser.parse_args([str(a) for a in argv]))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lag_of(reference: np.ndarray, degraded: np.ndarray, max_lag: int = 2000) -> int:
    corr = signal.correlate(degraded.mean(0), reference.mean(0), mode="full", method="fft")
    centre = reference.shape[-1] - 1
    return int(np.argmax(corr[centre - max_lag : centre + max_lag + 1])) - max_lag


@pytest.fixture()
def clean_tree(tmp_path, librivox_files) -> Path:
    """clean/a.wav (48 kHz, 1.5 s), clean/sub/b.flac (16 kHz, 2 s): real speech."""
    root = tmp_path / "clean"
    wave, rate = load_audio(librivox_files[0])
    save_audio(root / "a.wav", resample(wave, rate, 48000)[:, :72000], 48000, subtype="pcm24")
    other, rate = load_audio(librivox_files[1])
    save_audio(root / "sub" / "b.flac", other[:, : 2 * rate], rate)
    return root


def read_report(out_dir: Path) -> list[dict]:
    lines = (out_dir / "degradations.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


FIXED: dict[str, dict] = {
    "eq": {},
    "reverb": {"max_order": 8, "rt60_s": 0.3},
    "noise": {"snr_db": 5},
    "babble": {"snr_db": 5, "n_talkers": 2},
    "lowpass": {"cutoff_hz": 4000, "family": "chebyshev2"},
    "resample": {"low_rate": 8000},
    "mp3": {"bitrate_kbps": 32},
    "opus": {"bitrate_kbps": 12},
    "vorbis": {"quality": 0.1},
    "clipping": {"threshold": 0.3},
    "packet_loss": {"loss_rate": 0.2},
    "gain": {"gain_db": -6},
}
# The reverb record reports the room it built rather than echoing the request.
RECORDED_AS = {"rt60_s": "rt60_target_s"}


def test_every_kind_on_real_recordings(clean_tree, tmp_path, librivox_files):
    assert set(FIXED) == set(DEGRADATIONS)
    hashes = {p: digest(p) for p in clean_tree.rglob("*") if p.is_file()}
    for kind, params in FIXED.items():
        out_dir = tmp_path / f"out_{kind}"
        extra = ["--babble-dir", librivox_files[0].parent] if kind == "babble" else []
        argv = [clean_tree, out_dir, "--kind", kind, "--seed", "3", *extra]
        for key, value in params.items():
            argv += ["--param", f"{key}={value}"]
        assert run_cli(*argv) == 0, kind
        records = {Path(r["input"]).name: r for r in read_report(out_dir)}
        assert set(records) == {"a.wav", "b.flac"}
        for name, relative in (("a.wav", "a.wav"), ("b.flac", "sub/b.wav")):
            record = records[name]
            assert record["output"] == str(out_dir / relative) and record["seed"] == 3
            clean, rate = load_audio(record["input"])
            degraded, out_rate = load_audio(out_dir / relative)
            assert out_rate == rate == record["sample_rate"]
            assert degraded.shape == clean.shape
            assert not np.allclose(degraded, clean, atol=1e-4)
            assert [step["name"] for step in record["degradations"]] == [kind]
            recorded = record["degradations"][0]["params"]
            for key, value in params.items():
                if key == "n_talkers":
                    assert len(recorded["talker_files"]) == value
                elif key == "max_order":
                    assert recorded["max_order"] <= value
                else:
                    assert recorded[RECORDED_AS.get(key, key)] == value, (kind, key)
            if kind not in ("reverb", "packet_loss"):
                assert lag_of(clean, degraded) == 0, (kind, name)
    assert hashes == {p: digest(p) for p in clean_tree.rglob("*") if p.is_file()}


def test_chain_is_seeded_per_file_not_per_order(clean_tree, tmp_path):
    assert run_cli(clean_tree, tmp_path / "one", "--chain", "--seed", "9") == 0
    assert run_cli(clean_tree, tmp_path / "two", "--chain", "--seed", "9") == 0
    for relative in ("a.wav", "sub/b.wav"):
        assert digest(tmp_path / "one" / relative) == digest(tmp_path / "two" / relative)
    second = read_report(tmp_path / "two")
    assert read_report(tmp_path / "one") == [
        {**r, "output": r["output"].replace("/two/", "/one/")} for r in second
    ]
    # The same file alone in a tree gets the same degradation.
    alone = tmp_path / "alone"
    (alone / "sub").mkdir(parents=True)
    (alone / "sub" / "b.flac").write_bytes((clean_tree / "sub" / "b.flac").read_bytes())
    assert run_cli(alone, tmp_path / "three", "--chain", "--seed", "9") == 0
    assert digest(tmp_path / "three" / "sub" / "b.wav") == digest(tmp_path / "one" / "sub/b.wav")
    assert run_cli(clean_tree, tmp_path / "four", "--chain", "--seed", "10") == 0
    reports = [read_report(tmp_path / d) for d in ("one", "four")]
    assert [r["degradations"] for r in reports[0]] != [r["degradations"] for r in reports[1]]


def test_bad_files_are_reported_and_skipped(clean_tree, tmp_path):
    (clean_tree / "sub" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    out_dir = tmp_path / "out"
    assert run_cli(clean_tree, out_dir, "--kind", "gain", "--param", "gain_db=-3") == 1
    records = {Path(r["input"]).name: r for r in read_report(out_dir)}
    assert "error" in records["broken.wav"] and "output" not in records["broken.wav"]
    assert (out_dir / "a.wav").is_file() and (out_dir / "sub" / "b.wav").is_file()
    assert not (out_dir / "sub" / "broken.wav").exists()


def test_refuses_to_write_into_the_input_tree(clean_tree):
    before = sorted(p for p in clean_tree.rglob("*"))
    assert run_cli(clean_tree, clean_tree, "--kind", "gain") == 1
    assert run_cli(clean_tree, clean_tree / "sub" / "out", "--kind", "gain") == 1
    assert sorted(p for p in clean_tree.rglob("*")) == before


def test_output_never_overwrites_an_input(tmp_path, librivox_files):
    # OUT_DIR is the parent of CLEAN_DIR; a nested clean/clean/x.wav maps onto clean/x.wav.
    root = tmp_path / "clean"
    wave, rate = load_audio(librivox_files[0])
    save_audio(root / "x.wav", wave[:, :rate], rate)
    save_audio(root / "clean" / "x.wav", wave[:, rate : 2 * rate], rate)
    original = digest(root / "x.wav")
    assert run_cli(root, tmp_path, "--kind", "gain", "--param", "gain_db=-3") == 1
    assert digest(root / "x.wav") == original
    errors = [r for r in read_report(tmp_path) if "error" in r]
    assert len(errors) == 1 and "overwrite an input" in errors[0]["error"]


def test_sample_rate_and_colliding_stems(clean_tree, tmp_path):
    wave, rate = load_audio(clean_tree / "sub" / "b.flac")
    save_audio(clean_tree / "sub" / "b.wav", wave, rate)
    out_dir = tmp_path / "out"
    argv = [clean_tree, out_dir, "--kind", "lowpass", "--param", "cutoff_hz=3000",
            "--sample-rate", "48000"]
    assert run_cli(*argv) == 0
    for relative in ("a.wav", "sub/b.flac.wav", "sub/b.wav.wav"):
        info = sf.info(out_dir / relative)
        assert info.samplerate == 48000
    assert sf.info(out_dir / "sub/b.flac.wav").frames == 2 * 48000


def test_resource_manifest_and_param_errors(clean_tree, tmp_path, librivox_files):
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in librivox_files))
    out_dir = tmp_path / "out"
    argv = [clean_tree, out_dir, "--kind", "noise", "--noise-manifest", manifest,
            "--param", "snr_db=0", "--param", "file_prob=1.0"]
    assert run_cli(*argv) == 0
    for record in read_report(out_dir):
        assert record["degradations"][0]["params"]["noise_file"] in {str(p) for p in
                                                                     librivox_files}
    two_kinds = [clean_tree, tmp_path / "x", "--kind", "noise", "--kind", "gain"]
    assert run_cli(*two_kinds, "--param", "snr_db=3") == 1  # ambiguous: which kind?
    assert run_cli(*two_kinds, "--param", "noise.snr_db=3", "--param", "gain.gain_db=-2") == 0
    steps = read_report(tmp_path / "x")[0]["degradations"]
    assert [s["name"] for s in steps] == ["noise", "gain"]
    assert steps[0]["params"]["snr_db"] == 3 and steps[1]["params"]["gain_db"] == -2
    assert run_cli(clean_tree, tmp_path / "y", "--kind", "gain", "--param", "oops") == 1
    assert run_cli(clean_tree, tmp_path / "y", "--kind", "gain", "--param", "gian_db=1") == 1
    assert not (tmp_path / "y").exists()  # refused before any file was touched
    assert run_cli(tmp_path / "missing", tmp_path / "z", "--kind", "gain") == 1

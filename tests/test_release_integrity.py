"""Release integrity: weights checked against meta.json's sha256 on load, and every damaged
or malformed release file refused with one line naming it (real files, tiny real models)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from release_factory import make_tiny_release

from hireslm.audio import AudioConfig, load_audio, save_audio
from hireslm.cli import release as release_cli
from hireslm.models import build_model
from hireslm.pipeline import RestorationPipeline
from hireslm.release import ReleaseError, load_stage, verify_weights
from hireslm.training.stage import init_from_release

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "checkpoints" / "hireslm-demo"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def release(pristine, tmp_path) -> Path:
    """A fresh copy of the tiny release, free to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "release"))


def _refused(release: Path) -> str:
    """``from_pretrained``'s error message, checked to be one line."""
    with pytest.raises(ReleaseError) as info:
        RestorationPipeline.from_pretrained(release)
    message = str(info.value)
    assert "\n" not in message
    return message


def _edit_config(release: Path, edit) -> None:
    config = yaml.safe_load((release / "config.yaml").read_text())
    edit(config)
    (release / "config.yaml").write_text(yaml.safe_dump(config))


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_flipped_bit_in_the_weights_is_refused(release) -> None:
    weights = release / "dit.safetensors"
    _flip_byte(weights, weights.stat().st_size - 7)  # in a tensor: the file still parses
    message = _refused(release)
    assert message.startswith(f"{weights} does not match the sha256 recorded in ")
    assert "meta.json: the file is damaged or was changed" in message
    with pytest.raises(ReleaseError, match="does not match the sha256"):
        load_stage(release, "dit")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
@pytest.mark.parametrize("hashed", [True, False])
def test_damaged_safetensors_is_refused(release, damage, hashed) -> None:
    weights = release / "vocoder.safetensors"
    data = weights.read_bytes()
    damaged = {"truncated": data[: len(data) // 2],
               "random": np.random.default_rng(0).bytes(len(data)),
               "empty": b""}[damage]
    weights.write_bytes(damaged)
    if not hashed:
        (release / "meta.json").unlink()
    message = _refused(release)
    expected = "does not match the sha256" if hashed else "is not a readable safetensors file"
    assert message.startswith(f"{weights} {expected}")


def _set(path: str, value):
    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _drop(path: str):
    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]
    return edit


@pytest.mark.parametrize("edit, problem", [
    (_set("vocoder.kwargs.dim", "abc"), "stage 'vocoder': kwargs.dim must be int, not 'abc'"),
    (_set("vocoder.kwargs.dim", -4), "stage 'vocoder' (vocos): Trying to create tensor"),
    (_set("vocoder", "vocos"), "stage 'vocoder' must be a mapping with 'model' and 'kwargs'"),
    (_set("vae.kwargs", [1, 2]), "stage 'vae': 'kwargs' must map constructor arguments"),
    (_drop("dit.model"), "stage 'dit' has no 'model' name"),
    (_set("dit.model", "nope"), "stage 'dit' (nope): unknown model 'nope'"),
    (_set("audio.sample_rate", 0), "audio config sample_rate must be a positive integer, not 0"),
    (_set("audio.sample_rate", -48000), "sample_rate must be a positive integer, not -48000"),
    (_set("audio.sample_rate", 48000.5), "sample_rate must be a positive integer, not 48000.5"),
    (_set("audio.hop_length", "480"), "hop_length must be a positive integer, not '480'"),
    (_set("audio", "48k"), "'audio' must map the front end's settings to values"),
    (_drop("dit.objective"), "pipeline settings: no key 'objective'"),
    (_set("dit.sampling.num_steps", "many"), "pipeline settings: invalid literal for int()"),
])
def test_bad_config_values_are_refused_naming_the_file(release, edit, problem) -> None:
    _edit_config(release, edit)
    message = _refused(release)
    assert message.startswith(f"{release / 'config.yaml'}: ")
    assert problem in message


def test_unreadable_config_and_meta_are_refused_naming_the_file(release) -> None:
    (release / "meta.json").write_text('{"stages": {"dit": ')
    assert _refused(release).startswith(f"{release / 'meta.json'} is not valid JSON")
    (release / "meta.json").write_text('{"stages": {"dit": {"weights_sha256": "abc"}}}')
    assert "weights_sha256 is not a sha256 hex digest: 'abc'" in _refused(release)
    (release / "config.yaml").write_text("vae: [unclosed\n")
    assert _refused(release).startswith(f"{release / 'config.yaml'} is not readable YAML")


def test_audio_config_rejects_values_of_the_wrong_type_or_sign() -> None:
    assert AudioConfig.from_dict({"sample_rate": 16000, "f_min": 0}).f_min == 0
    for bad in ({"sample_rate": 0}, {"n_mels": True}, {"f_max": float("nan")},
                {"log_floor": -1.0}, {"n_fft": None}):
        with pytest.raises(ValueError, match=f"audio config {next(iter(bad))} must be"):
            AudioConfig.from_dict(bad)


def test_release_without_hashes_loads_with_a_warning(release, caplog) -> None:
    meta = json.loads((release / "meta.json").read_text())
    del meta["stages"]["vae"]["weights_sha256"]
    (release / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="hireslm.release"):
        assert RestorationPipeline.from_pretrained(release) is not None
    assert [r.getMessage() for r in caplog.records] == [
        f"{release / 'vae.safetensors'}: meta.json records no sha256 for stage 'vae'; "
        "loading it unverified"]
    caplog.clear()
    (release / "meta.json").unlink()
    with caplog.at_level(logging.WARNING, logger="hireslm.release"):
        assert RestorationPipeline.from_pretrained(release) is not None
    assert len(caplog.records) == 3
    assert all("the release has no meta.json; loading it unverified" in r.getMessage()
               for r in caplog.records)


def test_shipped_demo_release_verifies() -> None:
    stages = [s for s in ("vae", "dit", "vocoder") if (DEMO / f"{s}.safetensors").is_file()]
    assert stages == ["vae", "dit", "vocoder"]
    assert all(verify_weights(DEMO, stage) for stage in stages)
    assert release_cli.weights_status(DEMO) == {
        "vae": "ok", "dit": "ok", "vocoder": "ok", "recovery": "pretrained"}


def test_release_show_reports_changed_weights(release, capsys) -> None:
    parser = argparse.ArgumentParser()
    release_cli.add_arguments(parser)
    assert release_cli.run(parser.parse_args(["show", str(release)])) == 0
    assert "weights dit: ok" in capsys.readouterr().out
    _flip_byte(release / "dit.safetensors", -3)
    (release / "vocoder.safetensors").unlink()
    assert release_cli.run(parser.parse_args(["show", str(release)])) == 1
    shown = capsys.readouterr().out
    assert "weights dit: changed" in shown and "weights vocoder: missing" in shown
    assert "weights vae: ok" in shown


def test_restore_command_refuses_a_tampered_release(release, librivox_files, tmp_path) -> None:
    wave, rate = load_audio(librivox_files[0])
    save_audio(tmp_path / "in" / "short.wav", wave[:, : rate // 2], rate)
    weights = release / "dit.safetensors"
    _flip_byte(weights, weights.stat().st_size - 7)
    command = [sys.executable, "-m", "hireslm", "restore", str(tmp_path / "in" / "short.wav"),
               "-o", str(tmp_path / "out"), "--checkpoint", str(release), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 2
    assert str(weights) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "short.wav").exists()


def test_fine_tuning_from_a_tampered_release_is_refused(release) -> None:
    weights = release / "vae.safetensors"
    _flip_byte(weights, weights.stat().st_size - 7)
    entry = yaml.safe_load((release / "config.yaml").read_text())["vae"]
    model = build_model(entry["model"], entry["kwargs"])
    with pytest.raises(ReleaseError, match="does not match the sha256"):
        init_from_release(model, OmegaConf.create({"init_from": str(release)}), "vae")

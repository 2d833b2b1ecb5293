"""Release folders: save/load round trips, strict loading, clear errors, combining runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hireslm.fileio import file_sha256
from hireslm.models import ModelSpec, build_model
from hireslm.release import (
    ReleaseError,
    combine_releases,
    load_release_config,
    load_stage,
    save_stage,
)

VAE = ("mel_vae", {"n_mels": 128, "latent_channels": 4, "hidden_channels": 16,
                   "channel_mults": [1, 1, 1], "downsample": 4, "num_res_blocks": 1})
VOCOS = ("vocos", {"n_mels": 128, "dim": 16, "intermediate_dim": 32, "num_layers": 1})


def _save(release, stage, spec, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = build_model(*spec)
    save_stage(release, stage, model, **kwargs)
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    vae = _save(tmp_path, "vae", VAE, extra={"latent_scale": 1.7}, meta={"steps": 12})
    vocoder = _save(tmp_path, "vocoder", VOCOS, seed=1)
    mel = torch.randn(2, 128, 9) - 5
    loaded_vae = load_stage(tmp_path, "vae")
    loaded_vocoder = load_stage(tmp_path, "vocoder")
    assert not loaded_vae.training
    with torch.no_grad():
        assert torch.equal(loaded_vae.encode(mel).mode(), vae.encode(mel).mode())
        assert torch.equal(loaded_vocoder(mel), vocoder(mel))
    config = load_release_config(tmp_path)
    assert config.vae.latent_scale == 1.7 and config.vae.model == "mel_vae"
    assert config.vocoder.kwargs.dim == 16 and config.audio.hop_length == 480
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["stages"]["vae"]["steps"] == 12
    assert len(meta["stages"]["vae"]["weights_sha256"]) == 64
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))


def test_missing_stage_and_folder_give_clear_errors(tmp_path) -> None:
    _save(tmp_path, "vae", VAE)
    with pytest.raises(ReleaseError, match=r"stage 'dit' is not in release .*holds \['vae'\]"):
        load_stage(tmp_path, "dit")
    with pytest.raises(ReleaseError, match="not a release folder"):
        load_stage(tmp_path / "nowhere", "vae")
    (tmp_path / "vae.safetensors").unlink()
    with pytest.raises(ReleaseError, match="weights file .* is missing"):
        load_stage(tmp_path, "vae")


def test_load_is_strict(tmp_path) -> None:
    _save(tmp_path, "vae", VAE)
    # Same stage recorded with other kwargs: the weights no longer fit the model.
    config = (tmp_path / "config.yaml").read_text().replace("hidden_channels: 16",
                                                            "hidden_channels: 8")
    (tmp_path / "config.yaml").write_text(config)
    with pytest.raises(ReleaseError, match=r"vae.safetensors does not fit the model config.yaml "
                                            r"describes for stage 'vae': .*size mismatch"):
        load_stage(tmp_path, "vae")


def test_combine_releases_from_different_runs(tmp_path) -> None:
    vae = _save(tmp_path / "run_a", "vae", VAE, extra={"latent_scale": 2.0},
                meta={"steps": 5})
    _save(tmp_path / "run_a", "vocoder", VOCOS, seed=3)
    vocoder = _save(tmp_path / "run_b", "vocoder", VOCOS, seed=4, meta={"steps": 9})
    out = combine_releases(tmp_path / "combined", vae=tmp_path / "run_a",
                           vocoder=tmp_path / "run_b")
    mel = torch.randn(1, 128, 6) - 5
    with torch.no_grad():
        assert torch.equal(load_stage(out, "vocoder")(mel), vocoder(mel))
        assert torch.equal(load_stage(out, "vae").encode(mel).mode(), vae.encode(mel).mode())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stages"]["vocoder"]["steps"] == 9 and meta["stages"]["vae"]["steps"] == 5
    assert load_release_config(out).vae.latent_scale == 2.0
    with pytest.raises(ReleaseError, match="stage 'dit' is not in release"):
        combine_releases(tmp_path / "bad", dit=tmp_path / "run_a")


def test_combine_refuses_mixed_audio_front_ends(tmp_path) -> None:
    _save(tmp_path / "a", "vae", VAE)
    _save(tmp_path / "b", "vocoder", VOCOS, audio={"n_mels": 128, "hop_length": 240})
    with pytest.raises(ReleaseError, match="different audio front end"):
        combine_releases(tmp_path / "c", vae=tmp_path / "a", vocoder=tmp_path / "b")


def test_release_command_combines_and_shows(tmp_path, capsys) -> None:
    import argparse

    from hireslm.cli import release as release_cli

    _save(tmp_path / "a", "vae", VAE, extra={"latent_scale": 1.5})
    _save(tmp_path / "b", "vocoder", VOCOS)
    parser = argparse.ArgumentParser()
    release_cli.add_arguments(parser)
    out = tmp_path / "out"
    assert release_cli.run(parser.parse_args(
        ["combine", str(out), "--vae", str(tmp_path / "a"), "--vocoder", str(tmp_path / "b")]
    )) == 0
    assert load_stage(out, "vocoder") is not None and load_stage(out, "vae") is not None
    assert release_cli.run(parser.parse_args(["show", str(out)])) == 0
    shown = capsys.readouterr().out
    assert "latent_scale: 1.5" in shown and '"weights_sha256"' in shown
    with pytest.raises(SystemExit, match="name at least one stage"):
        release_cli.run(parser.parse_args(["combine", str(tmp_path / "none")]))


def test_fp16_storage_halves_a_stage_and_loads_back_as_float32(tmp_path) -> None:
    import argparse

    from hireslm.cli import release as release_cli

    vocoder = _save(tmp_path / "a", "vocoder", VOCOS)
    before = (tmp_path / "a" / "vocoder.safetensors").stat().st_size
    parser = argparse.ArgumentParser()
    release_cli.add_arguments(parser)
    out = tmp_path / "out"
    assert release_cli.run(parser.parse_args(
        ["combine", str(out), "--vocoder", str(tmp_path / "a"), "--fp16", "vocoder"])) == 0
    assert (out / "vocoder.safetensors").stat().st_size < 0.6 * before
    loaded = load_stage(out, "vocoder")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    mel = torch.randn(1, 128, 20) - 5
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), vocoder(mel), atol=2e-3, rtol=1e-2)
    stage = json.loads((out / "meta.json").read_text())["stages"]["vocoder"]
    assert stage["stored_dtype"] == "float16"
    assert stage["float32_weights_sha256"] != stage["weights_sha256"]


def test_models_carry_their_spec_and_save_with_it(tmp_path) -> None:
    model = build_model(*VOCOS)
    assert model.spec == ModelSpec(*VOCOS)
    save_stage(tmp_path / "r", "vocoder", model)
    assert load_release_config(tmp_path / "r").vocoder.model == "vocos"
    with pytest.raises(ValueError, match="not made by build_model"):
        save_stage(tmp_path / "r", "vocoder", torch.nn.Linear(2, 2))


SAVE_ONE = """
import sys, torch
from hireslm.models import build_model
from hireslm.release import save_stage
torch.manual_seed(0)
save_stage(sys.argv[1], "vocoder", build_model("vocos", {"n_mels": 128, "dim": 16,
           "intermediate_dim": 32, "num_layers": 1}))
"""


def test_the_same_weights_give_the_same_file_in_every_process(tmp_path) -> None:
    hashes = set()
    for run in range(3):  # safetensors writes several metadata keys in a per-process order
        subprocess.run([sys.executable, "-c", SAVE_ONE, str(tmp_path / str(run))], check=True)
        hashes.add(file_sha256(tmp_path / str(run) / "vocoder.safetensors"))
    assert len(hashes) == 1

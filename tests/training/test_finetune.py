"""Fine-tuning a release on a few real files (configs/finetune recipes through the real loop):
LoRA adapters exported alone and merged back exactly, freezing, early stopping, and the
small-data guards. The base is a tiny random-weight release (tests/release_factory.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from release_factory import make_tiny_release
from safetensors.torch import load_file

from hireslm.audio import load_audio
from hireslm.cli import release as release_cli
from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset
from hireslm.data.manifest import index_folders, write_manifest
from hireslm.jobs.restore_one import restore_file
from hireslm.pipeline import RestorationPipeline, RestoreOptions
from hireslm.release import ReleaseError, load_release_config, load_stage, read_meta, save_stage
from hireslm.training import fit
from hireslm.training.adapters import (
    adapter_weights_path,
    load_adapted_model,
    merge_adapter,
    save_adapter,
)
from hireslm.training.checkpointing import list_checkpoints
from hireslm.training.data import split_records
from hireslm.training.early_stopping import EarlyStopping
from hireslm.training.lora import apply_lora
from hireslm.training.settings import TrainSettings
from hireslm.training.small_data import holdout_split, plan_max_steps
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "configs" / "finetune"
# CPU-sized runs: tiny crops, no trackers, one held-out file, a couple of validation items.
SMALL = ["train.mixed_precision=no", "train.log_with=none", "train.batch_size=2",
         "train.min_items=2", "train.warmup_steps=0", "train.log_every=1",
         "train.val_batches=1", "data.val_items=2", "data.num_workers=0", "data.holdout=1"]


@pytest.fixture(scope="module")
def base_release(tmp_path_factory) -> Path:
    return _pretrained_like(make_tiny_release(tmp_path_factory.mktemp("base")))


def _pretrained_like(release: Path) -> Path:
    """Give the DiT's zero-initialised gates and output layer (adaLN-zero) random values, as
    training would: from a fresh DiT no gradient would reach the blocks' adapters."""
    config = load_release_config(release).dit
    dit = load_stage(release, "dit")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in dit.parameters():
            if not param.any():
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    extra = {k: v for k, v in OmegaConf.to_container(config).items()
             if k not in ("model", "kwargs")}
    save_stage(release, "dit", dit, extra=extra)
    return release


@pytest.fixture(scope="module")
def studio_manifest(tmp_path_factory) -> Path:
    """The five committed LibriVox clips as a studio manifest without a split field."""
    records, failures = index_folders([REPO / "examples" / "librivox"])
    assert len(records) == 5 and not failures
    return write_manifest(tmp_path_factory.mktemp("studio") / "studio.jsonl", records)


def _recipe(name: str, run_dir: Path, base: Path, manifest: Path, *overrides: str):
    return load_config(RECIPES / f"{name}.yaml", [
        f"run_dir={run_dir}", f"init_from={base}", f"data.train_manifest={manifest}", *SMALL,
        *overrides])


def _dit_input(channels: int = 8, frames: int = 6) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2, channels, frames, generator=generator)
    cond = torch.randn(2, channels, frames, generator=generator)
    return z, torch.tensor([0.3, 0.8]), cond


def test_dit_lora_recipe_exports_adapter_that_merges_exactly_and_restores(
        tmp_path, base_release, studio_manifest) -> None:
    run = tmp_path / "lora"
    cfg = _recipe("dit_lora", run, base_release, studio_manifest, "train.max_steps=4",
                  "train.val_every=2", "train.ckpt_every=4", "optim.lr=1.0e-2",
                  "data.segment_seconds=0.5", "dit.val_steps=2")
    release = fit(STAGE_CLASSES["dit"](), cfg)
    adapter = run / "adapter"
    full = release / "dit.safetensors"
    assert adapter_weights_path(adapter, "dit").stat().st_size < full.stat().st_size / 2
    assert all("lora_" in k for k in load_file(str(adapter_weights_path(adapter, "dit"))))

    parser = argparse.ArgumentParser()
    release_cli.add_arguments(parser)
    merged = tmp_path / "merged"
    assert release_cli.run(parser.parse_args(
        ["merge-lora", str(base_release), str(adapter), str(merged)])) == 0
    # The merged stage is bit for bit what the run exported; the other stages are the base's.
    run_weights, merged_weights = load_file(str(full)), load_file(str(merged / "dit.safetensors"))
    assert run_weights.keys() == merged_weights.keys()
    assert all(torch.equal(run_weights[k], merged_weights[k]) for k in run_weights)
    base_dit = load_file(str(base_release / "dit.safetensors"))
    assert any(not torch.equal(base_dit[k], merged_weights[k]) for k in base_dit)
    for stage in ("vae", "vocoder"):
        assert (merged / f"{stage}.safetensors").read_bytes() == (
            base_release / f"{stage}.safetensors").read_bytes()
    assert read_meta(merged)["stages"]["dit"]["lora_adapter"]["lora"]["r"] == 8
    # Merged weights reproduce the adapted (unmerged, peft) model's outputs.
    adapted = load_adapted_model(base_release, adapter, "dit")
    plain = load_stage(merged, "dit")
    with torch.no_grad():
        torch.testing.assert_close(plain(*_dit_input()), adapted(*_dit_input()),
                                   rtol=1e-5, atol=1e-5)

    pipeline = RestorationPipeline.from_pretrained(merged)
    source = sorted((REPO / "examples" / "librivox").glob("*.flac"))[0]
    restore_file(pipeline, source, tmp_path / "restored.wav", RestoreOptions(chunk_seconds=1.0))
    restored, rate = load_audio(tmp_path / "restored.wav")
    wave, source_rate = load_audio(source)
    assert rate == 48000 and restored.shape == (1, round(wave.shape[1] * 48000 / source_rate))
    assert np.isfinite(restored).all() and np.abs(restored).max() > 0

    other = _pretrained_like(make_tiny_release(tmp_path / "other", seed=1))
    with pytest.raises(ReleaseError, match="is not the adapter's base"):
        merge_adapter(other, adapter, tmp_path / "wrong")
    with pytest.raises(ValueError, match="must not be the base release"):
        merge_adapter(base_release, adapter, base_release)
    assert (merge_adapter(other, adapter, tmp_path / "forced", force=True)
            / "dit.safetensors").is_file()


def test_full_dit_recipe_keeps_frozen_prefixes(tmp_path, base_release, studio_manifest) -> None:
    run = tmp_path / "full"
    cfg = _recipe("dit_full", run, base_release, studio_manifest, "train.max_steps=3",
                  "train.val_every=3", "train.ckpt_every=3", "optim.lr=1.0e-2",
                  "data.segment_seconds=0.5", "dit.val_steps=2", "data.chain=null",
                  "freeze=[in_proj,blocks.0.attn]")
    release = fit(STAGE_CLASSES["dit"](), cfg)
    before = load_file(str(base_release / "dit.safetensors"))
    after = load_file(str(release / "dit.safetensors"))
    frozen = {k for k in before if k.startswith(("in_proj.", "blocks.0.attn."))}
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["blocks.0.mlp.0.weight"], after["blocks.0.mlp.0.weight"])
    assert not (run / "adapter").exists()
    with pytest.raises(ValueError, match="freeze prefix 'blocks.9' matches no parameter"):
        fit(STAGE_CLASSES["dit"](), _recipe("dit_full", tmp_path / "typo", base_release,
                                     studio_manifest, "freeze=[blocks.9]"))
    # A DiT release records the latents it was trained on; another VAE is refused.
    other_latents = tmp_path / "other_latents"
    config = load_release_config(base_release).dit
    save_stage(other_latents, "dit", load_stage(base_release, "dit"),
               extra={"objective": config.objective, "latent_source_sha256": "0" * 64})
    with pytest.raises(ValueError, match="trained on other latents"):
        fit(STAGE_CLASSES["dit"](), _recipe("dit_full", tmp_path / "latents", other_latents,
                                     studio_manifest, f"dit.vae_release={base_release}"))


def test_early_stopping_stops_and_exports_the_best_ema_weights(
        tmp_path, base_release, studio_manifest) -> None:
    # min_delta beyond any change: only the first validation counts as an improvement.
    common = ["train.val_every=1", "train.ckpt_every=50", "optim.lr=1.0e-3",
              "data.segment_seconds=0.2", "data.val_segment_seconds=0.2",
              "vocoder.disc_start_step=100", "vocoder.gan_start_step=100",
              "data.min_bandwidth_hz=0"]  # the LibriVox clips are 16 kHz recordings
    run = tmp_path / "stopped"
    release = fit(STAGE_CLASSES["vocoder"](), _recipe(
        "vocoder_voice", run, base_release, studio_manifest, "train.max_steps=20",
        "train.early_stopping.patience=2", "train.early_stopping.min_delta=1e9", *common))
    summary = json.loads((run / "early_stopping.json").read_text())
    assert summary["stopped"] and summary["best_step"] == 1 and summary["step"] == 3
    assert [r["step"] for r in read_metrics(run) if "val/multiscale_mel" in r] == [1, 2, 3]
    assert [s for s, _ in list_checkpoints(run)] == [3]
    assert read_meta(release)["stages"]["vocoder"]["steps"] == 1
    # The release holds the EMA weights of step 1: a run that simply ends there has them too.
    reference = fit(STAGE_CLASSES["vocoder"](), _recipe(
        "vocoder_voice", tmp_path / "one_step", base_release, studio_manifest,
        "train.max_steps=1", "train.early_stopping=null", *common))
    best, expected = load_file(str(release / "vocoder.safetensors")), load_file(
        str(reference / "vocoder.safetensors"))
    assert all(torch.equal(best[k], expected[k]) for k in expected)
    before = (release / "vocoder.safetensors").read_bytes()
    fit(STAGE_CLASSES["vocoder"](), _recipe(  # starting the stopped run again trains nothing
        "vocoder_voice", run, base_release, studio_manifest, "train.max_steps=20",
        "train.early_stopping.patience=2", "train.early_stopping.min_delta=1e9", *common))
    assert (release / "vocoder.safetensors").read_bytes() == before
    assert [s for s, _ in list_checkpoints(run)] == [3]


def test_early_stopping_counts_validations_without_progress() -> None:
    stopper = EarlyStopping("val/loss", patience=2, min_delta=0.1)
    improved = [stopper.update({"loss": v}, step) for step, v in
                enumerate([1.0, 0.5, 0.45, float("nan"), 0.3, 0.29, 0.28], start=1)]
    assert improved == [True, True, False, False, True, False, False]
    assert stopper.stopped and (stopper.best, stopper.best_step) == (0.3, 5)
    again = EarlyStopping("loss", patience=2)
    again.load_state_dict(stopper.state_dict())
    assert again.state_dict() == stopper.state_dict()
    scores = EarlyStopping("pesq", patience=1, mode="max")
    assert scores.update({"pesq": 2.0}, 1) and not scores.update({"pesq": 1.9}, 2)
    assert scores.stopped
    with pytest.raises(KeyError, match="val/mel_l1"):
        EarlyStopping("mel_l1", patience=1).update({"loss": 1.0}, 1)
    assert EarlyStopping.from_config(None) is None


def test_small_data_guards(studio_manifest) -> None:
    records = [json.loads(line) for line in studio_manifest.read_text().splitlines()]
    train, valid = holdout_split(records, 0.4)
    assert (len(train), len(valid)) == (3, 2)
    assert not {r["path"] for r in train} & {r["path"] for r in valid}
    # The choice depends on the files, not on their order.
    assert {r["path"] for r in holdout_split(records[::-1], 0.4)[1]} == {r["path"] for r in valid}

    dataset = PairedSpeechDataset(train, 0.2, length=64)
    base = {"batch_size": 2, "max_steps": 1000}
    train_cfg = TrainSettings.from_dict(load_config(RECIPES / "dit_lora.yaml").train)
    assert plan_max_steps(dataset, _train_cfg(base, max_epochs=10), 1) == 15  # 10 x 3 / 2
    assert plan_max_steps(dataset, _train_cfg(base), 2) == 1000
    with pytest.raises(ValueError, match="only 3 training files for an effective batch of 4"):
        plan_max_steps(dataset, _train_cfg(base, min_items_per_batch=1), 2)
    with pytest.raises(ValueError, match="fewer than train.min_items=8"):
        plan_max_steps(dataset, train_cfg, 1)

    # Validation on the training files is refused when early stopping would read it.
    cfg = load_config(RECIPES / "dit_lora.yaml", [f"data.train_manifest={studio_manifest}",
                                                   "data.holdout=0"])
    with pytest.raises(ValueError, match="5 of 5 validation files are training files"):
        split_records(cfg)
    train, valid = split_records(load_config(RECIPES / "dit_lora.yaml", [
        f"data.train_manifest={studio_manifest}", "data.holdout=2"]))
    assert (len(train), len(valid)) == (3, 2)
    # A manifest's own splits win over data.holdout; its test files are never trained on.
    split_manifest = write_manifest(studio_manifest.parent / "split.jsonl", [
        {**r, "split": s} for r, s in zip(records, ["train"] * 3 + ["valid", "test"],
                                          strict=True)])
    train, valid = split_records(load_config(RECIPES / "dit_lora.yaml", [
        f"data.train_manifest={split_manifest}"]))
    assert [r["split"] for r in train] == ["train"] * 3 and [r["split"] for r in valid] == [
        "valid"]


def _train_cfg(values: dict, **extra) -> TrainSettings:
    return TrainSettings.from_dict({**values, **extra})


def test_vocoder_lora_adapter_merges_into_the_release(tmp_path, base_release) -> None:
    vocoder = apply_lora(load_stage(base_release, "vocoder"),
                         {"r": 2, "alpha": 4, "target_modules": ["pwconv1", "pwconv2"]})
    with torch.no_grad():  # as if trained: lora_B starts at zero
        for name, param in vocoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    save_adapter(tmp_path / "adapter", "vocoder", vocoder,
                 {"r": 2, "alpha": 4, "target_modules": ["pwconv1", "pwconv2"]},
                 base_release=base_release)
    merged = load_stage(merge_adapter(base_release, tmp_path / "adapter", tmp_path / "out"),
                        "vocoder")
    mel = torch.randn(1, 128, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(mel), vocoder.eval()(mel), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(merged(mel), load_stage(base_release, "vocoder")(mel))

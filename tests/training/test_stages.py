"""Every stage trains through the real loop from its debug config on real speech (CPU, tiny):
the loss falls on a fixed batch (VAE, vocos, hifigan, DiT, recovery), EMA weights are what
gets exported, latent caching, fine-tuning from a release and with LoRA.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from training_runs import CONFIGS, assert_falls, debug_config, fixed_batch_data, losses

from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset
from hireslm.release import ReleaseError, load_release_config, load_stage
from hireslm.training import fit
from hireslm.training.checkpointing import list_checkpoints
from hireslm.training.latents import LatentCacheDataset, cache_from_config
from hireslm.training.resume_state import load_loop_state
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics


def test_vae_loss_falls_on_fixed_batch_and_release_holds_ema(tmp_path, librivox_records) -> None:
    run = tmp_path / "vae"
    cfg = debug_config("vae", run, "train.max_steps=30", "train.log_every=1", "train.val_every=0",
               "train.ckpt_every=30")
    release = fit(STAGE_CLASSES["vae"](datasets=fixed_batch_data(librivox_records, 0.5)), cfg)
    assert_falls(losses(run, "train/loss"), 0.8)
    # The exported weights are the EMA shadow saved in the final checkpoint.
    (step, ckpt), = list_checkpoints(run)
    assert step == 30
    ema_state = load_loop_state(ckpt)["emas"]["vae"]
    exported = load_file(str(release / "vae.safetensors"))
    for key, value in exported.items():
        assert torch.allclose(value, ema_state["shadow"][key]), key
    live = load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(live[k], exported[k]) for k in exported)
    config = load_release_config(release)
    assert config.vae.model == "mel_vae" and config.vae.latent_scale > 0
    assert config.audio.sample_rate == 48000
    meta = json.loads((release / "meta.json").read_text())
    assert meta["stages"]["vae"]["steps"] == 30


@pytest.mark.parametrize("generator,steps", [("vocos", 24), ("hifigan", 10)])
def test_vocoder_gan_trains(tmp_path, librivox_records, generator: str, steps: int) -> None:
    run = tmp_path / generator
    cfg = debug_config("vocoder", run, f"model.name={generator}", f"train.max_steps={steps}",
               "train.log_every=1", "train.val_every=0", f"train.ckpt_every={steps}",
               "train.lr_decay=constant")
    release = fit(STAGE_CLASSES["vocoder"](datasets=fixed_batch_data(librivox_records, 0.2)), cfg)
    assert_falls(losses(run, "train/mel"), 0.92)
    assert losses(run, "train/loss_d") and losses(run, "train/adv")
    vocoder = load_stage(release, "vocoder")
    assert type(vocoder).__name__.lower().startswith(generator[:4])
    mel = torch.randn(1, 128, 5) - 5
    assert vocoder(mel).shape == (1, 5 * 480)


def test_dit_loss_falls_on_fixed_batch(tmp_path, librivox_records, vae_release) -> None:
    run = tmp_path / "dit"
    cfg = debug_config("dit", run, f"dit.vae_release={vae_release}", "train.max_steps=40",
               "train.log_every=1", "train.val_every=40", "train.ckpt_every=40",
               "train.lr_decay=constant", "objective.time_distribution=uniform")
    release = fit(STAGE_CLASSES["dit"](datasets=(fixed_batch_data(librivox_records, 0.5)[0],
                                          PairedSpeechDataset(librivox_records[:1], 0.5,
                                                              validation=True, length=2))), cfg)
    assert_falls(losses(run, "train/loss"), 0.85)
    val = [row for row in read_metrics(run) if "val/latent_mse" in row]
    assert len(val) == 1 and val[0]["val/mel_l1"] > 0
    config = load_release_config(release)
    assert config.dit.vae_latent_scale == load_release_config(vae_release).vae.latent_scale
    assert config.dit.objective.name == "flow_matching"
    dit = load_stage(release, "dit")
    z = torch.randn(1, 4, 7)
    assert dit(z, torch.tensor([500.0]), z).shape == (1, 4, 7)


def test_dit_trains_from_latent_cache(tmp_path, vae_release) -> None:
    cfg = debug_config("dit", tmp_path / "dit", f"dit.vae_release={vae_release}", "data.length=6",
               "train.max_steps=4", "train.val_every=4", "train.ckpt_every=4",
               "data.chain=null")
    cache = cache_from_config(cfg, tmp_path / "cache", passes=2, batch_size=4)
    data = LatentCacheDataset(cache)
    assert len(data) == 12 and data[0]["z_clean"].shape == data[0]["z_cond"].shape
    # Without degradation the condition equals the target.
    assert torch.allclose(data[0]["z_clean"], data[0]["z_cond"])
    with pytest.raises(ValueError, match="another VAE"):
        LatentCacheDataset(cache, expect_source="0" * 64)
    cached_cfg = debug_config("dit", tmp_path / "dit", f"dit.vae_release={vae_release}",
                      f"data.latent_cache={cache}", "data.crop_frames=8", "train.max_steps=4",
                      "train.val_every=4", "train.ckpt_every=4", "train.log_every=1")
    fit(STAGE_CLASSES["dit"](), cached_cfg)
    assert len(losses(tmp_path / "dit", "train/loss")) == 4


def test_recovery_stage_and_dit_conditioned_on_it(tmp_path, librivox_records,
                                                  vae_release) -> None:
    run = tmp_path / "recovery"
    cfg = debug_config("recovery", run, "train.max_steps=60", "train.log_every=1",
                       "train.val_every=0", "optim.lr=3.0e-3", "model.kwargs.hidden=16",
                       "train.ckpt_every=60", "train.lr_decay=constant")
    # Fixed noisy pairs: the chain from configs/degradations.yaml, validation-mode crops.
    chain = load_config(CONFIGS / "degradations.yaml")
    data = PairedSpeechDataset(librivox_records[:2], 0.5, validation=True, length=2,
                               chain_config=chain, seed=3)
    recovery_release = fit(STAGE_CLASSES["recovery"](datasets=(data, None)), cfg)
    assert_falls(losses(run, "train/loss"), 0.8)
    dit_cfg = debug_config("dit", tmp_path / "dit", f"dit.vae_release={vae_release}",
                   f"dit.recovery_release={recovery_release}", "train.max_steps=2",
                   "train.val_every=2", "train.ckpt_every=2", "data.chain=null")
    release = fit(STAGE_CLASSES["dit"](), dit_cfg)
    entry = load_release_config(release).dit
    assert entry.cond.startswith("vae_mean(recovery(")
    assert entry.latent_source_sha256.endswith(
        json.loads((recovery_release / "meta.json").read_text())["stages"]["recovery"][
            "weights_sha256"])


def test_fine_tune_starts_from_release_weights(tmp_path, vae_release) -> None:
    # lr 0: the run must export exactly the weights it started from.
    cfg = debug_config("vae", tmp_path / "ft", f"init_from={vae_release}", "optim.lr=0",
               "train.max_steps=1", "train.val_every=0", "train.ckpt_every=1")
    release = fit(STAGE_CLASSES["vae"](), cfg)
    source = load_file(str(vae_release / "vae.safetensors"))
    tuned = load_file(str(release / "vae.safetensors"))
    assert source.keys() == tuned.keys()
    assert all(torch.equal(source[k], tuned[k]) for k in source)
    with pytest.raises(ReleaseError, match="stage 'vocoder' is not in release"):
        fit(STAGE_CLASSES["vocoder"](),
            debug_config("vocoder", tmp_path / "voc", f"init_from={vae_release}"))


def test_lora_fine_tune_trains_adapters_and_exports_merged_plain_weights(
        tmp_path, vae_release) -> None:
    common = [f"dit.vae_release={vae_release}", "train.val_every=0", "data.chain=null"]
    source = fit(STAGE_CLASSES["dit"](), debug_config("dit", tmp_path / "base", "train.max_steps=2",
                                       "train.ckpt_every=2", *common))
    run = tmp_path / "lora"
    tuned = fit(STAGE_CLASSES["dit"](), debug_config(
        "dit", run, f"init_from={source}", "lora.r=2", "lora.target_modules=[qkv,proj]",
        "optim.lr=1.0e-2", "train.max_steps=4", "train.ckpt_every=4", *common))
    before = load_file(str(source / "dit.safetensors"))
    after = load_file(str(tuned / "dit.safetensors"))
    assert before.keys() == after.keys()  # plain parameter names: no adapters left
    adapted = {k for k in before if ".attn.qkv." in k or ".attn.proj." in k}
    assert adapted and all(not torch.equal(before[k], after[k]) for k in adapted
                           if k.endswith("weight"))
    assert all(torch.equal(before[k], after[k]) for k in before if k not in adapted)
    assert load_stage(tuned, "dit") is not None
    (_, ckpt), = list_checkpoints(run)
    optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    assert len(optimizer["state"]) == 4  # lora_A and lora_B of qkv and proj, one block

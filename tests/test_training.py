"""Every stage trains through the real loop from its debug config on real speech (CPU, tiny).

Covers: loss falls on a fixed batch (VAE, vocos, hifigan, DiT), resume reproduces an
uninterrupted run exactly, the divergence guard, EMA weights are what gets exported, latent
caching, and real 2-process (gloo) runs: ranks end with identical weights and stop early together.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset
from hireslm.data.manifest import index_folders
from hireslm.release import ReleaseError, load_release_config, load_stage, read_meta
from hireslm.training import NonFiniteLossError, fit
from hireslm.training.checkpointing import list_checkpoints
from hireslm.training.ema import EMA
from hireslm.training.latents import LatentCacheDataset, cache_from_config
from hireslm.training.resume_state import load_loop_state
from hireslm.training.schedules import lr_factor
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def _cfg(stage: str, run_dir: Path, *overrides: str):
    return load_config(CONFIGS / stage / "debug.yaml", [f"run_dir={run_dir}", *overrides])


@pytest.fixture(scope="module")
def librivox_records() -> list[dict]:
    records, failures = index_folders([REPO / "examples" / "librivox"])
    assert records and not failures
    return records


def _fixed_batch_data(records: list[dict], seconds: float) -> tuple[PairedSpeechDataset, None]:
    """Two fixed clean/degraded pairs (validation mode: same crops every epoch)."""
    data = PairedSpeechDataset(records[:2], seconds, validation=True, length=2)
    return data, None


def _losses(run_dir: Path, key: str) -> list[float]:
    return [row[key] for row in read_metrics(run_dir) if key in row]


def _assert_falls(values: list[float], factor: float) -> None:
    head, tail = sum(values[:3]) / 3, sum(values[-3:]) / 3
    assert tail < factor * head, f"loss did not fall enough: {head:.4f} -> {tail:.4f}"


def test_schedule_warmup_then_cosine() -> None:
    assert lr_factor(0, 4, 20) == pytest.approx(0.2)
    assert lr_factor(3, 4, 20) == pytest.approx(0.8)
    assert lr_factor(4, 4, 20) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(12, 4, 20, decay="linear") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown LR decay"):
        lr_factor(0, 0, 10, decay="step")


def test_ema_tracks_weights_and_round_trips_state() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.shadow["weight"], start + 1.0, atol=1e-4)
    other = EMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 200 and other.decay == 0.5
    with ema.swapped_in(model):
        with torch.no_grad():
            model.weight.sub_(1.0)  # changes inside the context are discarded on exit
    assert torch.equal(model.weight, start + 1.0)


def test_vae_loss_falls_on_fixed_batch_and_release_holds_ema(tmp_path, librivox_records) -> None:
    run = tmp_path / "vae"
    cfg = _cfg("vae", run, "train.max_steps=30", "train.log_every=1", "train.val_every=0",
               "train.ckpt_every=30")
    release = fit(STAGE_CLASSES["vae"](datasets=_fixed_batch_data(librivox_records, 0.5)), cfg)
    _assert_falls(_losses(run, "train/loss"), 0.8)
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
    cfg = _cfg("vocoder", run, f"model.name={generator}", f"train.max_steps={steps}",
               "train.log_every=1", "train.val_every=0", f"train.ckpt_every={steps}",
               "train.lr_decay=constant")
    release = fit(STAGE_CLASSES["vocoder"](datasets=_fixed_batch_data(librivox_records, 0.2)), cfg)
    _assert_falls(_losses(run, "train/mel"), 0.92)
    assert _losses(run, "train/loss_d") and _losses(run, "train/adv")
    vocoder = load_stage(release, "vocoder")
    assert type(vocoder).__name__.lower().startswith(generator[:4])
    mel = torch.randn(1, 128, 5) - 5
    assert vocoder(mel).shape == (1, 5 * 480)


@pytest.fixture(scope="module")
def vae_release(tmp_path_factory) -> Path:
    """A debug VAE trained for a few steps: the frozen VAE of the DiT tests."""
    run = tmp_path_factory.mktemp("vae_for_dit")
    return fit(STAGE_CLASSES["vae"](), _cfg("vae", run, "train.max_steps=6", "train.val_every=0",
                                     "train.ckpt_every=6"))


def test_dit_loss_falls_on_fixed_batch(tmp_path, librivox_records, vae_release) -> None:
    run = tmp_path / "dit"
    cfg = _cfg("dit", run, f"dit.vae_release={vae_release}", "train.max_steps=40",
               "train.log_every=1", "train.val_every=40", "train.ckpt_every=40",
               "train.lr_decay=constant", "objective.time_distribution=uniform")
    release = fit(STAGE_CLASSES["dit"](datasets=(_fixed_batch_data(librivox_records, 0.5)[0],
                                          PairedSpeechDataset(librivox_records[:1], 0.5,
                                                              validation=True, length=2))), cfg)
    _assert_falls(_losses(run, "train/loss"), 0.85)
    val = [row for row in read_metrics(run) if "val/latent_mse" in row]
    assert len(val) == 1 and val[0]["val/mel_l1"] > 0
    config = load_release_config(release)
    assert config.dit.vae_latent_scale == load_release_config(vae_release).vae.latent_scale
    assert config.dit.objective.name == "flow_matching"
    dit = load_stage(release, "dit")
    z = torch.randn(1, 4, 7)
    assert dit(z, torch.tensor([500.0]), z).shape == (1, 4, 7)


def test_dit_trains_from_latent_cache(tmp_path, vae_release) -> None:
    cfg = _cfg("dit", tmp_path / "dit", f"dit.vae_release={vae_release}", "data.length=6",
               "train.max_steps=4", "train.val_every=4", "train.ckpt_every=4",
               "data.chain=null")
    cache = cache_from_config(cfg, tmp_path / "cache", passes=2, batch_size=4)
    data = LatentCacheDataset(cache)
    assert len(data) == 12 and data[0]["z_clean"].shape == data[0]["z_cond"].shape
    # Without degradation the condition equals the target.
    assert torch.allclose(data[0]["z_clean"], data[0]["z_cond"])
    with pytest.raises(ValueError, match="another VAE"):
        LatentCacheDataset(cache, expect_source="0" * 64)
    cached_cfg = _cfg("dit", tmp_path / "dit", f"dit.vae_release={vae_release}",
                      f"data.latent_cache={cache}", "data.crop_frames=8", "train.max_steps=4",
                      "train.val_every=4", "train.ckpt_every=4", "train.log_every=1")
    fit(STAGE_CLASSES["dit"](), cached_cfg)
    assert len(_losses(tmp_path / "dit", "train/loss")) == 4


def test_resume_reproduces_uninterrupted_run(tmp_path) -> None:
    """Stop at step 3, resume to 6: weights, optimizer, scheduler, EMA and step match a run
    that went straight to 6 (data order and RNG restored, across an epoch boundary)."""
    common = ["train.ckpt_every=3", "train.schedule_steps=6", "data.length=4",
              "train.val_every=0", "train.keep_last=5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(STAGE_CLASSES["vae"](), _cfg("vae", straight, "train.max_steps=6", *common))
    fit(STAGE_CLASSES["vae"](), _cfg("vae", resumed, "train.max_steps=3", *common))
    assert [s for s, _ in list_checkpoints(resumed)] == [3]
    fit(STAGE_CLASSES["vae"](), _cfg("vae", resumed, "train.max_steps=6", *common))
    assert [s for s, _ in list_checkpoints(resumed)] == [3, 6]
    a, b = straight / "checkpoints" / "step_0000006", resumed / "checkpoints" / "step_0000006"
    weights_a, weights_b = load_file(str(a / "model.safetensors")), load_file(
        str(b / "model.safetensors"))
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    opt_a = torch.load(a / "optimizer.bin", weights_only=True)
    opt_b = torch.load(b / "optimizer.bin", weights_only=True)
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][index][name]), (index, name)
    # Schedulers, EMA, step, and every RNG (global and the stages' generator).
    assert _state_equal(load_loop_state(a), load_loop_state(b))
    assert load_loop_state(b)["step"] == 6
    rng_a, rng_b = load_file(str(a / "rng_rank0.safetensors")), load_file(
        str(b / "rng_rank0.safetensors"))
    assert {"python", "numpy", "torch", "generator"} <= set(rng_a)
    # The global torch RNG is not compared: each data-loader iterator draws its base seed from
    # it, and a resumed run starts one more iterator (the weights above show it does not matter).
    assert all(torch.equal(rng_a[k], rng_b[k]) for k in ("python", "numpy", "generator"))
    assert not list(b.glob("*.pkl"))


def _state_equal(left, right) -> bool:
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_state_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_state_equal, left, right))
    if torch.is_tensor(left):
        return torch.equal(left, right)
    return left == right


def test_divergence_guard_stops_and_saves(tmp_path) -> None:
    run = tmp_path / "nan"
    cfg = _cfg("vae", run, "optim.lr=1.0e30", "train.warmup_steps=0", "train.grad_clip=0",
               "train.max_steps=50", "train.ckpt_every=100", "train.val_every=0")
    with pytest.raises(NonFiniteLossError, match="not finite"):
        fit(STAGE_CLASSES["vae"](), cfg)
    found = list_checkpoints(run)
    assert len(found) == 1 and 0 < found[0][0] < 50
    weights = load_file(str(found[0][1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (run / "release").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_two_processes(run: Path, *overrides: str) -> None:
    """Train the debug VAE in two real CPU processes (gloo) through ``accelerate launch``."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate CLI not found next to the interpreter"
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           str(REPO / "train" / "train_vae.py"), "--config", str(CONFIGS / "vae" / "debug.yaml"),
           f"run_dir={run}", "data.chain=null", *overrides]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_process_run_keeps_ranks_identical(tmp_path) -> None:
    run = tmp_path / "ddp"
    _launch_two_processes(run, "train.max_steps=4", "train.ckpt_every=4", "train.val_every=4",
                          "train.write_weights_hash=true")
    hashes = [json.loads((run / f"weights_rank{r}.json").read_text())["sha256"] for r in (0, 1)]
    assert hashes[0] == hashes[1]
    (step, ckpt), = list_checkpoints(run)
    assert step == 4
    # One RNG state per rank; everything else comes from rank 0 alone. No pickles but the
    # optimizer's (loaded with weights_only=True).
    assert sorted(p.name for p in ckpt.glob("rng_rank*")) == [
        "rng_rank0.safetensors", "rng_rank1.safetensors"]
    assert not list(ckpt.glob("*.pkl"))
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "train/loss" in r] == [4]
    assert load_stage(run / "release", "vae") is not None


def test_two_process_run_stops_early_together(tmp_path) -> None:
    """Both ranks see the same averaged validation, so they stop at the same step and exit."""
    run = tmp_path / "ddp_stop"
    # min_delta beyond any change: only the first validation counts as an improvement.
    _launch_two_processes(run, "train.max_steps=20", "train.val_every=2", "train.ckpt_every=50",
                          "data.holdout=0.4",
                          "train.early_stopping.metric=mel_l1",
                          "train.early_stopping.patience=2",
                          "train.early_stopping.min_delta=1e9")
    summary = json.loads((run / "early_stopping.json").read_text())
    assert summary["stopped"] and summary["best_step"] == 2 and summary["step"] == 6
    assert [s for s, _ in list_checkpoints(run)] == [6]
    assert [r["step"] for r in read_metrics(run) if "val/mel_l1" in r] == [2, 4, 6]
    assert read_meta(run / "release")["stages"]["vae"]["steps"] == 2


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path) -> None:
    """SIGKILL a real training process once a checkpoint exists; the rerun continues there."""
    run = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "train" / "train_vae.py"), "--config",
           str(CONFIGS / "vae" / "debug.yaml"), f"run_dir={run}", "train.ckpt_every=2",
           "train.log_every=1", "train.val_every=0", "data.chain=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + ["train.max_steps=100000"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list_checkpoints(run)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "training exited early"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = list_checkpoints(run)[-1][0]
    assert killed_at >= 4
    (run / "checkpoints" / ".step_9999999.partial").mkdir()  # as if killed mid-save
    result = subprocess.run(cmd + [f"train.max_steps={killed_at + 2}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {run / 'checkpoints' / f'step_{killed_at:07d}'}" in result.stderr
    assert list_checkpoints(run)[-1][0] == killed_at + 2
    assert not list((run / "checkpoints").glob(".*"))
    assert (run / "release" / "vae.safetensors").is_file()
    # What the killed process logged after its last checkpoint is not kept twice.
    assert [r["step"] for r in read_metrics(run)] == list(range(1, killed_at + 3))


def test_trackers_log_scalars_audio_and_spectrograms_offline(tmp_path, monkeypatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "tracked"
    cfg = _cfg("vocoder", run, "train.log_with=[tensorboard,wandb]", "train.max_steps=2",
               "train.val_every=2", "train.log_every=1", "train.ckpt_every=2")
    fit(STAGE_CLASSES["vocoder"](), cfg)
    events = EventAccumulator(str(run / "hireslm"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/real", "val/vocoded"} <= set(tags["audio"])
    assert {"val/mel_real", "val/mel_vocoded"} <= set(tags["images"])
    assert {"train/mel", "val/mel_l1", "lr/generator"} <= set(tags["scalars"])
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("files/media/audio/val/vocoded_*.wav"))


def test_fine_tune_starts_from_release_weights(tmp_path, vae_release) -> None:
    # lr 0: the run must export exactly the weights it started from.
    cfg = _cfg("vae", tmp_path / "ft", f"init_from={vae_release}", "optim.lr=0",
               "train.max_steps=1", "train.val_every=0", "train.ckpt_every=1")
    release = fit(STAGE_CLASSES["vae"](), cfg)
    source = load_file(str(vae_release / "vae.safetensors"))
    tuned = load_file(str(release / "vae.safetensors"))
    assert source.keys() == tuned.keys()
    assert all(torch.equal(source[k], tuned[k]) for k in source)
    with pytest.raises(ReleaseError, match="stage 'vocoder' is not in release"):
        fit(STAGE_CLASSES["vocoder"](),
            _cfg("vocoder", tmp_path / "voc", f"init_from={vae_release}"))


def test_train_command_runs_in_process(tmp_path) -> None:
    import argparse

    from hireslm.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--config", str(CONFIGS / "vocoder" / "debug.yaml"),
                              f"run_dir={tmp_path / 'cli'}", "train.max_steps=2",
                              "train.mixed_precision=no"])
    assert cli.run(args) == 0
    assert (tmp_path / "cli" / "release" / "vocoder.safetensors").is_file()
    wrong = parser.parse_args(["--config", str(CONFIGS / "vocoder" / "debug.yaml")])
    wrong.stage = "dit"  # what train/train_dit.py sets
    with pytest.raises(SystemExit, match="is for stage 'vocoder', not 'dit'"):
        cli.run(wrong)


def test_gradient_accumulation_counts_optimizer_updates(tmp_path) -> None:
    run = tmp_path / "accum"
    fit(STAGE_CLASSES["vae"](), _cfg("vae", run, "train.grad_accum=3", "train.max_steps=2",
                              "train.log_every=1", "train.val_every=0", "train.ckpt_every=2",
                              "data.chain=null"))
    (step, ckpt), = list_checkpoints(run)
    optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    assert step == 2 and float(optimizer["state"][0]["step"]) == 2.0
    rows = [r for r in read_metrics(run) if "train/loss" in r]
    # 3 micro-batches of 2 per update.
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["perf/samples_per_s"] / r["perf/steps_per_s"] == pytest.approx(6) for r in rows)


def test_recovery_stage_and_dit_conditioned_on_it(tmp_path, librivox_records,
                                                  vae_release) -> None:
    run = tmp_path / "recovery"
    cfg = _cfg("recovery", run, "train.max_steps=60", "train.log_every=1", "train.val_every=0",
               "optim.lr=3.0e-3", "model.kwargs.hidden=16", "train.ckpt_every=60",
               "train.lr_decay=constant")
    # Fixed noisy pairs: the chain from configs/degradations.yaml, validation-mode crops.
    chain = load_config(CONFIGS / "degradations.yaml")
    data = PairedSpeechDataset(librivox_records[:2], 0.5, validation=True, length=2,
                               chain_config=chain, seed=3)
    recovery_release = fit(STAGE_CLASSES["recovery"](datasets=(data, None)), cfg)
    _assert_falls(_losses(run, "train/loss"), 0.8)
    dit_cfg = _cfg("dit", tmp_path / "dit", f"dit.vae_release={vae_release}",
                   f"dit.recovery_release={recovery_release}", "train.max_steps=2",
                   "train.val_every=2", "train.ckpt_every=2", "data.chain=null")
    release = fit(STAGE_CLASSES["dit"](), dit_cfg)
    entry = load_release_config(release).dit
    assert entry.cond.startswith("vae_mean(recovery(")
    assert entry.latent_source_sha256.endswith(
        json.loads((recovery_release / "meta.json").read_text())["stages"]["recovery"][
            "weights_sha256"])


def test_lora_fine_tune_trains_adapters_and_exports_merged_plain_weights(
        tmp_path, vae_release) -> None:
    common = [f"dit.vae_release={vae_release}", "train.val_every=0", "data.chain=null"]
    source = fit(STAGE_CLASSES["dit"](), _cfg("dit", tmp_path / "base", "train.max_steps=2",
                                       "train.ckpt_every=2", *common))
    run = tmp_path / "lora"
    tuned = fit(STAGE_CLASSES["dit"](), _cfg(
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


def test_bad_configs_fail_with_clear_errors(tmp_path, vae_release) -> None:
    from hireslm.release import ReleaseError

    with pytest.raises(ValueError, match="must equal the VAE's latent channels 4"):
        fit(STAGE_CLASSES["dit"](), _cfg("dit", tmp_path / "a", f"dit.vae_release={vae_release}",
                                  "model.kwargs.latent_channels=8",
                                  "model.kwargs.cond_channels=8"))
    with pytest.raises(ReleaseError, match="not a release folder"):
        fit(STAGE_CLASSES["dit"](), _cfg("dit", tmp_path / "b", f"dit.vae_release={tmp_path}"))
    with pytest.raises(ValueError, match="needs train_manifest"):
        fit(STAGE_CLASSES["vae"](), _cfg("vae", tmp_path / "c", "data.folders=[]"))
    with pytest.raises(ValueError, match="unknown trackers"):
        fit(STAGE_CLASSES["vae"](), _cfg("vae", tmp_path / "d", "train.log_with=mlflow"))
    with pytest.raises(ValueError, match="unknown LR decay"):
        fit(STAGE_CLASSES["vae"](), _cfg("vae", tmp_path / "e", "train.lr_decay=step"))

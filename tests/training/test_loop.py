"""The training loop itself: LR schedule and EMA, resume reproduces an uninterrupted run
exactly (also after a kill), the divergence guard, gradient accumulation, trackers, the train
command, clear errors for bad configs, and real 2-process (gloo) runs: ranks end with
identical weights and stop early together.
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
from training_runs import CONFIGS, REPO, debug_config

from hireslm.release import ReleaseError, load_stage, read_meta
from hireslm.training import NonFiniteLossError, fit
from hireslm.training.checkpointing import list_checkpoints
from hireslm.training.ema import EMA
from hireslm.training.resume_state import load_loop_state
from hireslm.training.schedules import lr_factor
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics


def _state_equal(left, right) -> bool:
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_state_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_state_equal, left, right))
    if torch.is_tensor(left):
        return torch.equal(left, right)
    return left == right


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


def test_resume_reproduces_uninterrupted_run(tmp_path) -> None:
    """Stop at step 3, resume to 6: weights, optimizer, scheduler, EMA and step match a run
    that went straight to 6 (data order and RNG restored, across an epoch boundary)."""
    common = ["train.ckpt_every=3", "train.schedule_steps=6", "data.length=4",
              "train.val_every=0", "train.keep_last=5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(STAGE_CLASSES["vae"](), debug_config("vae", straight, "train.max_steps=6", *common))
    fit(STAGE_CLASSES["vae"](), debug_config("vae", resumed, "train.max_steps=3", *common))
    assert [s for s, _ in list_checkpoints(resumed)] == [3]
    fit(STAGE_CLASSES["vae"](), debug_config("vae", resumed, "train.max_steps=6", *common))
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


def test_divergence_guard_stops_and_saves(tmp_path) -> None:
    run = tmp_path / "nan"
    cfg = debug_config("vae", run, "optim.lr=1.0e30", "train.warmup_steps=0", "train.grad_clip=0",
               "train.max_steps=50", "train.ckpt_every=100", "train.val_every=0")
    with pytest.raises(NonFiniteLossError, match="not finite"):
        fit(STAGE_CLASSES["vae"](), cfg)
    found = list_checkpoints(run)
    assert len(found) == 1 and 0 < found[0][0] < 50
    weights = load_file(str(found[0][1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (run / "release").exists()


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
    cfg = debug_config("vocoder", run, "train.log_with=[tensorboard,wandb]", "train.max_steps=2",
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
    fit(STAGE_CLASSES["vae"](), debug_config("vae", run, "train.grad_accum=3", "train.max_steps=2",
                              "train.log_every=1", "train.val_every=0", "train.ckpt_every=2",
                              "data.chain=null"))
    (step, ckpt), = list_checkpoints(run)
    optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    assert step == 2 and float(optimizer["state"][0]["step"]) == 2.0
    rows = [r for r in read_metrics(run) if "train/loss" in r]
    # 3 micro-batches of 2 per update.
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["perf/samples_per_s"] / r["perf/steps_per_s"] == pytest.approx(6) for r in rows)


def test_bad_configs_fail_with_clear_errors(tmp_path, vae_release) -> None:

    with pytest.raises(ValueError, match="must equal the VAE's latent channels 4"):
        fit(STAGE_CLASSES["dit"](), debug_config(
            "dit", tmp_path / "a", f"dit.vae_release={vae_release}",
            "model.kwargs.latent_channels=8", "model.kwargs.cond_channels=8"))
    with pytest.raises(ReleaseError, match="not a release folder"):
        fit(STAGE_CLASSES["dit"](),
            debug_config("dit", tmp_path / "b", f"dit.vae_release={tmp_path}"))
    with pytest.raises(ValueError, match="needs train_manifest"):
        fit(STAGE_CLASSES["vae"](), debug_config("vae", tmp_path / "c", "data.folders=[]"))
    with pytest.raises(ValueError, match="unknown trackers"):
        fit(STAGE_CLASSES["vae"](), debug_config("vae", tmp_path / "d", "train.log_with=mlflow"))
    with pytest.raises(ValueError, match="unknown LR decay"):
        fit(STAGE_CLASSES["vae"](), debug_config("vae", tmp_path / "e", "train.lr_decay=step"))

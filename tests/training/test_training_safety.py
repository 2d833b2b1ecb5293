"""Training-loop safety on real tiny runs (CPU): resuming never runs code from a run folder,
divergence never saves non-finite weights, a changed LR takes effect on resume, metrics hold
each step once, the VAE's exported latent scale is reproducible, and combining refuses a DiT
trained on another latent scale."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_runs import debug_config

from hireslm.cli import release as release_cli
from hireslm.release import ReleaseError, combine_releases, load_release_config
from hireslm.training import NonFiniteLossError, fit
from hireslm.training.checkpointing import list_checkpoints
from hireslm.training.resume_state import CheckpointError, load_loop_state
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics

# Plain steps: no validation, no degradation chain, one LR throughout.
PLAIN = ["train.val_every=0", "data.chain=null", "train.warmup_steps=0",
         "train.lr_decay=constant", "train.log_every=1"]


class _Payload:
    """Unpickling this creates ``marker``: what a hostile state file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory) -> Path:
    """A real debug-VAE run folder with one checkpoint, at step 2."""
    run = tmp_path_factory.mktemp("safety") / "run"
    fit(STAGE_CLASSES["vae"](),
        debug_config("vae", run, "train.max_steps=2", "train.ckpt_every=2", *PLAIN))
    return run


@pytest.mark.parametrize("tamper", ["custom_checkpoint_0.pkl", "optimizer.bin",
                                    "random_states_0.pkl"])
def test_resume_runs_no_code_from_a_tampered_run_folder(tmp_path, two_step_run,
                                                       tamper: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)
    (_, ckpt), = list_checkpoints(run)
    marker = tmp_path / "pwned"
    torch.save(_Payload(marker), ckpt / tamper)
    cfg = debug_config("vae", run, "train.max_steps=3", "train.ckpt_every=3", *PLAIN)
    if tamper == "random_states_0.pkl":
        # accelerate tries it with weights_only=True and gives up; the loop's own RNG file wins.
        fit(STAGE_CLASSES["vae"](), cfg)
        assert list_checkpoints(run)[-1][0] == 3
    else:
        match = "pickled state" if tamper.startswith("custom") else "not plain tensor data"
        with pytest.raises(CheckpointError, match=match):
            fit(STAGE_CLASSES["vae"](), cfg)
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_without_loop_state(tmp_path, two_step_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(two_step_run, run)
    (_, ckpt), = list_checkpoints(run)
    (ckpt / "loop_state.json").unlink()
    with pytest.raises(CheckpointError, match="no loop_state.json"):
        fit(STAGE_CLASSES["vae"](), debug_config("vae", run, "train.max_steps=3", *PLAIN))


def _all_finite(ckpt: Path) -> bool:
    tensors = list(load_file(str(ckpt / "model.safetensors")).values())
    tensors += list(load_loop_state(ckpt)["emas"]["vae"]["shadow"].values())
    optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    tensors += [v for state in optimizer["state"].values() for v in state.values()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_divergence_keeps_the_last_finite_checkpoint_and_a_lower_lr_takes_effect(
        tmp_path) -> None:
    run = tmp_path / "run"
    # keep_last=1: a checkpoint of the diverged weights would have replaced the good one.
    common = ["train.ckpt_every=2", "train.keep_last=1", "train.grad_clip=0", *PLAIN]
    fit(STAGE_CLASSES["vae"](), debug_config("vae", run, "train.max_steps=2", *common))
    # Resumed with lr 1e6 (so the new LR does take effect), the step-4 update leaves NaN/inf
    # weights behind a still-finite loss.
    with pytest.raises(NonFiniteLossError, match="not finite"):
        fit(STAGE_CLASSES["vae"](),
            debug_config("vae", run, "optim.lr=1.0e6", "train.max_steps=40", *common))
    found = list_checkpoints(run)
    assert [step for step, _ in found] == [2]
    assert all(_all_finite(ckpt) for _, ckpt in found)
    assert not (run / "checkpoints" / "step_0000004").exists()
    assert max(row["step"] for row in read_metrics(run)) >= 3  # it did train past step 2
    # Resume from step 2 with a lower LR: it is the LR the optimizer uses from there on.
    fit(STAGE_CLASSES["vae"](),
        debug_config("vae", run, "optim.lr=1.0e-4", "train.max_steps=4", *common))
    rows = [row for row in read_metrics(run) if "lr/vae" in row]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert [row["lr/vae"] for row in rows] == pytest.approx([2e-3, 2e-3, 1e-4, 1e-4])
    assert all(row["train/loss"] < 1e3 for row in rows)
    (step, ckpt), = list_checkpoints(run)
    optimizer = torch.load(ckpt / "optimizer.bin", weights_only=True)
    assert step == 4 and optimizer["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert load_loop_state(ckpt)["schedulers"]["vae"]["base_lrs"] == pytest.approx([1e-4])


def test_interrupted_run_logs_each_step_once(tmp_path) -> None:
    """Steps 4-6 were logged but their checkpoint never written (as if killed before the
    save): the rerun resumes at 3 and metrics.jsonl holds each step once, as logged again."""
    run = tmp_path / "run"
    cfg = debug_config("vae", run, "train.max_steps=6", "train.ckpt_every=3", "train.keep_last=5",
               "data.length=4", *PLAIN)
    fit(STAGE_CLASSES["vae"](), cfg)
    first = {row["step"]: row["train/loss"] for row in read_metrics(run)}
    shutil.rmtree(run / "checkpoints" / "step_0000006")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 7, "train/lo')  # a line cut short by the kill
    fit(STAGE_CLASSES["vae"](), cfg)
    rows = read_metrics(run)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    # The resumed steps are bit-exact: the same losses as the first time.
    assert {row["step"]: row["train/loss"] for row in rows} == first


def test_rerunning_a_finished_vae_run_exports_the_same_latent_scale(tmp_path) -> None:
    run = tmp_path / "run"
    # 2 batches per epoch: training ends in epoch 2, a finished rerun never sets an epoch.
    cfg = debug_config("vae", run, "train.max_steps=5", "train.ckpt_every=5", "data.length=4",
               "vae.scale_batches=2", *PLAIN)
    release = fit(STAGE_CLASSES["vae"](), cfg)
    scale = float(load_release_config(release).vae.latent_scale)
    weights = load_file(str(release / "vae.safetensors"))
    assert fit(STAGE_CLASSES["vae"](), cfg) == release
    assert [step for step, _ in list_checkpoints(run)] == [5]
    again = load_file(str(release / "vae.safetensors"))
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k])
                                                  for k in weights)
    assert float(load_release_config(release).vae.latent_scale) == scale


def test_combine_refuses_a_dit_trained_on_another_latent_scale(tmp_path) -> None:
    vae_run = tmp_path / "vae"
    vae_cfg = ["train.ckpt_every=100", *PLAIN]
    vae = fit(STAGE_CLASSES["vae"](), debug_config("vae", vae_run, "train.max_steps=2", *vae_cfg))
    dit = fit(STAGE_CLASSES["dit"](),
              debug_config("dit", tmp_path / "dit", f"dit.vae_release={vae}",
                           "train.max_steps=1", "train.ckpt_every=1", *PLAIN))
    # The same VAE run trained further: other weights, another latent scale.
    other = fit(STAGE_CLASSES["vae"](), debug_config("vae", vae_run, "train.max_steps=4",
                                      f"train.export_dir={tmp_path / 'vae_later'}", *vae_cfg))
    scales = [float(load_release_config(r).vae.latent_scale) for r in (vae, other)]
    assert scales[0] != scales[1]
    assert float(load_release_config(dit).dit.vae_latent_scale) == scales[0]

    combine_releases(tmp_path / "good", vae=vae, dit=dit)
    with pytest.raises(ReleaseError, match="trained on latents scaled by"):
        combine_releases(tmp_path / "bad", vae=other, dit=dit)
    assert not (tmp_path / "bad").exists()
    # Adding the DiT to a release that already holds the other VAE is refused too, and
    # through the command line.
    combine_releases(tmp_path / "partial", vae=other)
    parser = argparse.ArgumentParser()
    release_cli.add_arguments(parser)
    args = parser.parse_args(["combine", str(tmp_path / "partial"), "--dit", str(dit)])
    with pytest.raises(ReleaseError, match="trained on latents scaled by"):
        release_cli.run(args)
    assert "dit" not in load_release_config(tmp_path / "partial")

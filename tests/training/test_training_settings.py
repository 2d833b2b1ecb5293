"""The typed ``train:``/``optim:`` sections: strict keys and types, the loop's old defaults,
every repository config loading through them, and the checks on ``data:`` and ``model:``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hireslm.config import freeze, load_config
from hireslm.training import fit
from hireslm.training.data import build_datasets
from hireslm.training.early_stopping import EarlyStopping
from hireslm.training.settings import (
    OptimSettings,
    Settings,
    SettingsError,
    TrainSettings,
    check_data_keys,
    check_model_section,
)
from hireslm.training.stage import make_optimizer
from hireslm.training.stages import STAGE_CLASSES

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
STAGE_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if "train" in load_config(p))


def test_a_mistyped_train_key_fails_before_training_naming_the_right_one(tmp_path) -> None:
    run = tmp_path / "run"
    cfg = load_config(CONFIGS / "vae" / "debug.yaml", [f"run_dir={run}", "train.max_step=4"])
    with pytest.raises(SettingsError, match=r"train\.max_step is not a setting; did you mean "
                                            r"train\.max_steps\?") as error:
        fit(STAGE_CLASSES["vae"](), cfg)
    assert "batch_size" in str(error.value)  # the valid keys are listed
    assert not run.exists()


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "max_steps", "ten", "an integer"),
    ("train", "batch_size", 2.5, "an integer"),
    ("train", "grad_clip", "high", "a finite number"),
    ("train", "find_unused_parameters", "yes", "true or false"),
    ("train", "progress", "sometimes", "auto, true or false"),
    ("optim", "lr", "fast", "a finite number"),
    ("optim", "betas", [0.9], "a list of 2 numbers"),
])
def test_a_wrong_type_fails_naming_the_key(section, key, value, expected) -> None:
    values = {"train": {"max_steps": 4, "batch_size": 2}, "optim": {"lr": 1e-3}}
    values[section][key] = value
    with pytest.raises(SettingsError, match=rf"{section}\.{key}.*{expected}"):
        Settings.from_config(OmegaConf.create(values))


def test_nested_early_stopping_is_strict_and_off_without_patience() -> None:
    base = {"max_steps": 4, "batch_size": 2}
    with pytest.raises(SettingsError, match=r"train\.early_stopping\.patiense .*patience"):
        TrainSettings.from_dict({**base, "early_stopping": {"patiense": 3}})
    assert TrainSettings.from_dict({**base, "early_stopping": {"metric": "val/x"}}
                                   ).early_stopping is None
    stopping = TrainSettings.from_dict({**base, "early_stopping": {"patience": 2}}).early_stopping
    assert EarlyStopping.from_config(stopping).patience == 2
    with pytest.raises(SettingsError, match="train needs batch_size"):
        TrainSettings.from_dict({"max_steps": 4})


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_repository_config_loads_through_the_schema(path: Path) -> None:
    cfg = load_config(path)
    settings = Settings.from_config(cfg)
    assert settings.train.max_steps > 0 and settings.optim.lr > 0
    check_model_section(cfg.model)
    check_data_keys(cfg.data, cfg.stage)


def test_defaults_are_what_the_loop_used_before() -> None:
    train = TrainSettings.from_dict({"max_steps": 10, "batch_size": 2})
    assert (train.grad_accum, train.log_every, train.val_every, train.val_batches) == (1, 50, 0, 2)
    assert (train.ckpt_every, train.keep_last, train.warmup_steps, train.grad_clip) == (0, 3, 0, 0)
    assert (train.ema_decay, train.ema_warmup, train.lr_decay, train.min_lr_ratio) == (
        0.999, 0, "cosine", 0.0)
    assert (train.mixed_precision, train.log_with, train.progress) == ("no", (), "auto")
    assert (train.min_items, train.min_items_per_batch, train.max_epochs) == (0, 0.0, None)
    assert train.early_stopping is None and train.schedule_steps is None
    assert (train.export_dir, train.adapter_dir, train.wandb_mode) == (None, None, None)
    assert not train.write_weights_hash and not train.find_unused_parameters
    # A bare `no` on the command line is YAML false; `null` meant off for the guards.
    odd = load_config(CONFIGS / "vae" / "debug.yaml", ["train.mixed_precision=no",
                                                       "train.grad_clip=null"])
    assert TrainSettings.from_dict(odd.train).mixed_precision == "no"
    assert TrainSettings.from_dict(odd.train).grad_clip == 0.0
    # AdamW: the stage's betas unless optim.betas is set; lr_disc defaults to lr.
    optim = OptimSettings.from_dict({"lr": 1e-3})
    assert optim.lr_disc is None and optim.weight_decay == 0.0
    assert STAGE_CLASSES["vae"].betas == (0.9, 0.99)
    assert STAGE_CLASSES["vocoder"].betas == (0.8, 0.99)
    param = [torch.nn.Parameter(torch.zeros(1))]
    group = make_optimizer(param, optim, default_betas=(0.8, 0.99)).param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-3, (0.8, 0.99), 0.0)
    group = make_optimizer(param, OptimSettings.from_dict({"lr": 1, "betas": [0.5, 0.9]}),
                           lr=2e-4).param_groups[0]
    assert (group["lr"], group["betas"]) == (2e-4, (0.5, 0.9))


def test_data_keys_are_checked_per_stage() -> None:
    with pytest.raises(SettingsError, match=r"data\.segment_second .*data\.segment_seconds\?"):
        check_data_keys({"segment_second": 0.2}, "vae")
    check_data_keys({"latent_cache": "cache/"}, "dit")
    with pytest.raises(SettingsError, match=r"data\.latent_cache is not read by the vae stage"):
        check_data_keys({"latent_cache": "cache/"}, "vae")


def test_an_old_model_name_block_is_refused_with_where_to_move_it(tmp_path) -> None:
    cfg = load_config(CONFIGS / "vocoder" / "debug.yaml", [f"run_dir={tmp_path / 'run'}"])
    old = OmegaConf.to_container(cfg)
    old["model"] = {"name": "vocos", "vocos": dict(cfg.model.kwargs)}
    with pytest.raises(SettingsError, match=r"model\.vocos is no longer read: move that "
                                            r"block to model\.kwargs"):
        fit(STAGE_CLASSES["vocoder"](), freeze(OmegaConf.create(old)))
    with pytest.raises(SettingsError, match=r"model\.kwargs is missing"):
        check_model_section({"name": "vocos"})
    # The generator switch still picks its own sizes.
    hifigan = load_config(CONFIGS / "vocoder" / "debug.yaml", ["model.name=hifigan"])
    assert "upsample_rates" in hifigan.model.kwargs and "dim" not in hifigan.model.kwargs


def test_folders_are_indexed_once_for_both_splits(caplog) -> None:
    cfg = load_config(CONFIGS / "vae" / "debug.yaml")
    assert cfg.data.folders and not cfg.data.train_manifest
    with caplog.at_level(logging.DEBUG, logger="hireslm.data.manifest"):
        train, val = build_datasets(cfg)
    indexing = [r for r in caplog.records if r.getMessage().startswith("indexing ")]
    assert len(indexing) == 1, [r.getMessage() for r in indexing]
    assert val is not None and len(train) > 0

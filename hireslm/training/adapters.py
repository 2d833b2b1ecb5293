"""LoRA adapters on their own: a small folder that, with its base release, makes a full release.

A LoRA run exports the merged model as usual (``run_dir/release``) and the adapters alone
(``run_dir/adapter``)::

    adapter.yaml                 per stage: model, kwargs, lora {r, alpha, dropout,
                                 target_modules}, base {release, weights_sha256}
    <stage>.lora.safetensors     the adapter tensors (EMA weights), named as in the model
                                 with peft's layers in (``blocks.0.attn.qkv.lora_A.default.weight``)

``merge_adapter(release, adapter, out)`` (``hireslm release merge-lora``) rebuilds the base
stage, injects and loads the adapters and merges them, giving the weights the run exported.
The base's weights hash must match the one the adapter was trained on.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from hireslm.config import plain
from hireslm.fileio import atomic_path, file_sha256, write_text_atomic
from hireslm.models import model_spec
from hireslm.release import (
    ReleaseError,
    combine_releases,
    load_release_config,
    load_stage,
    read_meta,
    save_stage,
    weights_metadata,
    weights_path,
)
from hireslm.training.lora import apply_lora, exportable

ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter.yaml"


def adapter_weights_path(adapter_dir: str | os.PathLike, stage: str) -> Path:
    return Path(adapter_dir) / f"{stage}.lora.safetensors"


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA tensors of a peft-injected ``model`` (CPU, contiguous)."""
    return {key: value.detach().cpu().contiguous()
            for key, value in model.state_dict().items() if "lora_" in key}


def save_adapter(adapter_dir: str | os.PathLike, stage: str, model: nn.Module,
                 lora: Mapping[str, Any],
                 base_release: str | os.PathLike | None = None) -> Path:
    """Write ``model``'s adapters for ``stage`` and their config into ``adapter_dir``.

    ``base_release`` is the release the adapters were trained on (``init_from``); None means a
    randomly initialised base, which no release holds, so such an adapter cannot be merged.
    Other stages already in ``adapter_dir`` are kept. Returns the weights file.
    """
    spec = model_spec(model)
    tensors = adapter_state_dict(model)
    if not tensors:
        raise ValueError(f"{stage}: the model holds no LoRA adapter to save")
    target = adapter_weights_path(adapter_dir, stage)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=weights_metadata(stage, spec.name))
    base = None
    if base_release is not None:
        base = {"release": str(Path(base_release).resolve()),
                "weights_sha256": file_sha256(weights_path(base_release, stage))}
    config = _read_config(Path(adapter_dir))
    config[stage] = {"model": spec.name, "kwargs": plain(spec.kwargs), "lora": plain(lora),
                     "base": base, "weights_sha256": file_sha256(target)}
    write_text_atomic(Path(adapter_dir) / ADAPTER_CONFIG,
                      OmegaConf.to_yaml(OmegaConf.create(config)))
    return target


def load_adapter_config(adapter_dir: str | os.PathLike) -> DictConfig:
    """``adapter.yaml`` as a read-only DictConfig (stage -> entry)."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise ReleaseError(f"{adapter_dir}: not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    config = OmegaConf.load(path)
    OmegaConf.set_readonly(config, True)
    return config


def load_adapted_model(release_dir: str | os.PathLike, adapter_dir: str | os.PathLike,
                       stage: str, device: str | torch.device = "cpu",
                       force: bool = False) -> nn.Module:
    """``stage`` of the release with the adapters injected and loaded (unmerged), eval mode.

    Raises ``ReleaseError`` when the release's stage is not the adapter's base (another model,
    other kwargs, or other weights unless ``force``) or the adapter tensors do not fit.
    """
    entry = _entry(adapter_dir, stage)
    _check_base(release_dir, stage, entry, force)
    model = load_stage(release_dir, stage, device=device)
    apply_lora(model, entry.lora)
    tensors = load_file(str(adapter_weights_path(adapter_dir, stage)), device=str(device))
    expected = set(adapter_state_dict(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ReleaseError(f"{adapter_dir} ({stage}): adapter tensors do not match its lora "
                           f"config: missing {missing[:4]}, unexpected {extra[:4]}")
    model.load_state_dict(tensors, strict=False)
    return model.eval()


def merge_adapter(release_dir: str | os.PathLike, adapter_dir: str | os.PathLike,
                  out_dir: str | os.PathLike, force: bool = False,
                  overwrite: bool = False) -> Path:
    """Write a full release to ``out_dir``: ``release_dir`` with ``adapter_dir``'s adapters merged.

    Every stage of the base release is copied; each adapted stage is replaced by its merged
    plain model (config extras such as the DiT's objective are kept; ``meta.json`` records the
    adapter). ``force`` skips the base weights-hash check. An ``out_dir`` that exists and is
    not empty is refused unless ``overwrite``, and then replaced whole (no stage of the old
    release is left in the new one). The release is assembled beside ``out_dir`` and renamed
    into place, so a failed merge leaves ``out_dir`` as it was. Returns ``out_dir``.
    """
    release_dir, adapter_dir, out_dir = Path(release_dir), Path(adapter_dir), Path(out_dir)
    if out_dir.resolve() == release_dir.resolve():
        raise ValueError("merge into a new folder: out_dir must not be the base release")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ValueError(f"{out_dir}: already exists and is not empty; merge into a new "
                         "folder, or pass --overwrite to replace it")
    adapter = load_adapter_config(adapter_dir)
    base_config = load_release_config(release_dir)
    for stage in adapter:
        _check_base(release_dir, str(stage), adapter[stage], force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = out_dir.with_name(f".{out_dir.name}.merging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    building.mkdir()  # mode 0o777 less the umask, as a release folder made directly would be
    try:
        _write_merged(release_dir, adapter_dir, building, adapter, base_config, force)
        _replace_folder(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return out_dir


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``, moving an existing ``target`` aside first."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def _write_merged(release_dir: Path, adapter_dir: Path, out_dir: Path, adapter: DictConfig,
                  base_config: DictConfig, force: bool) -> None:
    combine_releases(out_dir, **{str(s): release_dir for s in base_config if s != "audio"})
    base_meta = read_meta(release_dir).get("stages", {})
    for stage in map(str, adapter):
        entry = adapter[stage]
        model = load_adapted_model(release_dir, adapter_dir, stage, force=force)
        merged = exportable(model)
        extra = {k: v for k, v in plain(base_config[stage]).items()
                 if k not in ("model", "kwargs")}
        meta = {**base_meta.get(stage, {}), "lora_adapter": {
            "source": str(adapter_dir.resolve()), "lora": plain(entry.lora),
            "adapter_sha256": file_sha256(adapter_weights_path(adapter_dir, stage)),
            "base_weights_sha256": file_sha256(weights_path(release_dir, stage))}}
        save_stage(out_dir, stage, merged, extra=extra, meta=meta,
                   audio=base_config.get("audio"))


def _entry(adapter_dir: str | os.PathLike, stage: str) -> DictConfig:
    config = load_adapter_config(adapter_dir)
    if stage not in config or not adapter_weights_path(adapter_dir, stage).is_file():
        raise ReleaseError(f"{adapter_dir}: no adapter for stage '{stage}' "
                           f"(it holds {sorted(config)})")
    return config[stage]


def _check_base(release_dir: str | os.PathLike, stage: str, entry: DictConfig,
                force: bool) -> None:
    """The release's ``stage`` must be the model the adapter was trained on."""
    config = load_release_config(release_dir)
    if stage not in config or not weights_path(release_dir, stage).is_file():
        raise ReleaseError(f"stage '{stage}' of the adapter is not in release {release_dir}")
    same_model = (str(config[stage].model) == str(entry.model)
                  and plain(config[stage].kwargs) == plain(entry.kwargs))
    if not same_model:
        raise ReleaseError(f"stage '{stage}': release {release_dir} holds another model "
                           f"({config[stage].model} {plain(config[stage].kwargs)}) than the "
                           f"adapter's base ({entry.model} {plain(entry.kwargs)})")
    if force:
        return
    if entry.base is None:
        raise ReleaseError(f"stage '{stage}': the adapter was trained on a randomly initialised "
                           "model (no init_from), which no release holds; use the run's merged "
                           "release, or force=True to merge anyway")
    found = file_sha256(weights_path(release_dir, stage))
    if found != entry.base.weights_sha256:
        raise ReleaseError(f"stage '{stage}': release {release_dir} is not the adapter's base "
                           f"{entry.base.release} (weights {found[:12]} != "
                           f"{entry.base.weights_sha256[:12]}); pass force=True (--force) to "
                           "merge anyway")


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / ADAPTER_CONFIG
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}

"""Fine-tuning a stage's model: start from a release, freeze parts, train LoRA adapters.

``fit`` first passes the config through ``inherit_from_release`` (the model's name and sizes
come from the ``init_from`` release, so recipes work with any release).
Every stage builds its model through ``adapt_model`` (``init_from``, then ``lora``, then
``freeze``) and exports it through ``export_model`` (a plain model with any adapters merged;
with LoRA the adapters alone are also written to ``train.adapter_dir``).
``init_from_release`` loads a release's weights (checked against its ``meta.json``).

``freeze`` is a list of parameter-name prefixes of the stage's model (``[in_proj, blocks.0]``
for the DiT's input projection and first block); a prefix matches whole name components, so
``blocks.1`` does not freeze ``blocks.10``. With LoRA, adapters under a frozen prefix freeze too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_model
from torch import nn

from hireslm.config import freeze
from hireslm.release import ReleaseError, load_release_config, verify_weights, weights_path
from hireslm.training.adapters import ADAPTER_DIR, save_adapter
from hireslm.training.data import resolve_path
from hireslm.training.lora import apply_lora, exportable, has_lora

logger = logging.getLogger(__name__)

# Release fields a fine-tuned stage must keep: the DiT's training objective (the release was
# trained on it) and its sampling defaults.
RELEASE_FIELDS: dict[str, tuple[str, ...]] = {"dit": ("objective", "sampling")}


def inherit_from_release(cfg: DictConfig) -> DictConfig:
    """With ``init_from``, take the stage's model (and fields the release fixes) from the release.

    Strict loading needs the release's exact model, so a fine-tuning recipe need not repeat
    its sizes: ``model.name`` and ``model.kwargs`` are replaced by the release's, and so are
    ``RELEASE_FIELDS[stage]`` (the DiT's objective and sampling). Returns ``cfg`` unchanged
    without ``init_from`` or ``stage``.
    """
    source, stage = cfg.get("init_from"), cfg.get("stage")
    if not source or not stage:
        return cfg
    release = resolve_path(source)
    config = load_release_config(release)
    if stage not in config:
        raise ReleaseError(f"init_from: stage '{stage}' is not in release {release}")
    entry = OmegaConf.to_container(config[stage], resolve=True)
    merged = OmegaConf.to_container(cfg, resolve=True)
    name = str(entry["model"])
    before = (merged["model"].get("name"), merged["model"].get("kwargs"))
    merged["model"]["name"] = name
    merged["model"]["kwargs"] = entry["kwargs"]
    if before != (name, entry["kwargs"]):
        logger.info("init_from %s: %s model %s %s from the release", release, stage, name,
                    entry["kwargs"])
    for key in RELEASE_FIELDS.get(stage, ()):
        if key in entry:
            merged[key] = entry[key]
    return freeze(OmegaConf.create(merged))


def adapt_model(model: nn.Module, cfg: DictConfig, stage: str) -> nn.Module:
    """Load ``cfg.init_from``'s weights for ``stage``, add ``cfg.lora`` adapters, apply
    ``cfg.freeze``; in place, returns ``model``. Raises if nothing is left to train."""
    init_from_release(model, cfg, stage)
    apply_lora(model, cfg.get("lora"))
    prefixes = list(cfg.get("freeze") or [])
    if prefixes:
        frozen = freeze_parameters(model, prefixes)
        logger.info("freeze %s: %d parameter tensors frozen", prefixes, len(frozen))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"{stage}: freeze {prefixes} (with lora {cfg.get('lora')}) leaves "
                         "no trainable parameter")
    total = sum(p.numel() for p in model.parameters())
    if trainable < total:
        logger.info("%s: training %d of %d parameters (%.2f%%)", stage, trainable, total,
                    100.0 * trainable / total)
    return model


def freeze_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on parameters under any of ``prefixes``; returns their names.

    Names are matched without peft's ``.base_layer`` component, i.e. as the plain model (and
    its release) names them. A prefix that matches nothing is an error (a typo would otherwise
    silently train everything).
    """
    named = [(name.replace(".base_layer", ""), param) for name, param in model.named_parameters()]
    frozen: list[str] = []
    for prefix in prefixes:
        prefix = str(prefix).rstrip(".")
        hits = [(n, p) for n, p in named if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            roots = sorted({n.split(".")[0] for n, _ in named})
            raise ValueError(f"freeze prefix '{prefix}' matches no parameter of "
                             f"{type(model).__name__} (top-level names: {roots})")
        for name, param in hits:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def export_model(cfg: DictConfig, stage: str, model: nn.Module,
                 adapters: str | os.PathLike | None = None) -> nn.Module:
    """The plain model to release (adapters merged); call with the EMA weights in.

    With LoRA adapters, also writes them alone (with their config and the base release's
    identity) to ``adapters`` (``train.adapter_dir``; default ``run_dir/adapter``, beside
    ``run_dir/release``), for ``hireslm release merge-lora``.
    """
    if has_lora(model):
        base = cfg.get("init_from")
        save_adapter(Path(adapters or Path(cfg.run_dir) / ADAPTER_DIR), stage, model, cfg.lora,
                     base_release=resolve_path(base) if base else None)
    return exportable(model)


def init_from_release(model: nn.Module, cfg: DictConfig, stage: str) -> None:
    """Start from ``cfg.init_from``'s weights for ``stage`` (fine-tuning), when it is set.

    The release must hold ``stage`` with the same model name and kwargs as ``cfg.model``
    describes; its weights must match the sha256 its ``meta.json`` records
    (``verify_weights``), and loading is strict. A resumed run then overrides these with its
    checkpoint.
    """
    source = cfg.get("init_from")
    if not source:
        return
    release = resolve_path(source)
    config = load_release_config(release)
    if stage not in config or not weights_path(release, stage).is_file():
        raise ReleaseError(f"init_from: stage '{stage}' is not in release {release}")
    verify_weights(release, stage)
    load_model(model, str(weights_path(release, stage)), strict=True)

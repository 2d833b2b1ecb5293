"""LoRA fine-tuning (peft): adapters on chosen layers, merged back at export.

``cfg.lora`` (null: off) = ``{r, alpha, dropout, target_modules}``; ``target_modules`` are
module names or name suffixes (e.g. ``[qkv, proj]`` for the DiT's attention). Every other
weight is frozen. The release always holds a plain model: the adapters are merged into the
weights under the model's own parameter names, so loading needs no peft.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from hireslm.models import build_model, model_spec


def apply_lora(model: nn.Module, lora: Mapping[str, Any] | DictConfig | None) -> nn.Module:
    """Inject LoRA adapters per ``lora`` (in place) and freeze all other parameters.

    Returns ``model`` unchanged when ``lora`` is empty or its rank is 0.
    """
    if not lora or int(lora.get("r", 0)) <= 0:
        return model
    lora = OmegaConf.to_container(lora, resolve=True) if OmegaConf.is_config(lora) else dict(lora)
    targets = list(lora.get("target_modules") or [])
    if not targets:
        raise ValueError("lora.target_modules must name at least one layer")
    rank = int(lora["r"])
    config = LoraConfig(r=rank, lora_alpha=float(lora.get("alpha", 2 * rank)),
                        lora_dropout=float(lora.get("dropout", 0.0)), target_modules=targets)
    try:
        inject_adapter_in_model(config, model)
    except ValueError as exc:
        raise ValueError(f"lora.target_modules {targets} match no layer of "
                         f"{type(model).__name__}: {exc}") from exc
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(module, LoraLayer) for module in model.modules())


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights with adapters merged in, under the plain model's parameter names."""
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    return {key.replace(".base_layer", ""): value
            for key, value in clone.state_dict().items() if "lora_" not in key}


def exportable(model: nn.Module) -> nn.Module:
    """``model`` itself, or (with adapters) a plain model of its spec with merged weights."""
    if not has_lora(model):
        return model
    spec = model_spec(model)
    plain = build_model(spec.name, spec.kwargs)
    plain.load_state_dict(merged_state_dict(model), strict=True)
    return plain.eval()


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimizer should update (all of them unless LoRA froze some)."""
    return [p for p in model.parameters() if p.requires_grad]

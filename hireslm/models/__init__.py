"""Models: mel VAE, latent DiT, vocoders (+ discriminators), recovery.

``MODELS`` maps a name to a class; every constructor takes explicit JSON/YAML-serialisable
keyword arguments, so a release stores ``{name, kwargs}`` and ``build_model`` rebuilds it.
A model made by ``build_model`` carries that pair as ``model.spec`` (``ModelSpec``), so
whoever saves, exports or merges it needs nothing else to describe it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from hireslm.models.dit import DiT
from hireslm.models.recovery import RecoveryNet
from hireslm.models.vae import MelVAE
from hireslm.models.vocoder import (
    HiFiGANVocoder,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    VocosVocoder,
)

MODELS: dict[str, type[nn.Module]] = {
    "mel_vae": MelVAE,
    "dit": DiT,
    "recovery": RecoveryNet,
    "vocos": VocosVocoder,
    "hifigan": HiFiGANVocoder,
    "mpd": MultiPeriodDiscriminator,
    "mrd": MultiResolutionDiscriminator,
}


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a model: its ``MODELS`` name and constructor keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def build_model(name: str, kwargs: Mapping) -> nn.Module:
    """Instantiate ``MODELS[name](**kwargs)``, with ``model.spec`` recording both; unknown
    names or arguments raise ``ValueError``.

    ``kwargs`` may be an OmegaConf ``DictConfig``; lists stay lists (constructors accept them).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    cls = MODELS[name]
    kwargs = _to_plain(kwargs)
    params = inspect.signature(cls.__init__).parameters
    unknown = set(kwargs) - set(params) - {"self"}
    if unknown:
        raise ValueError(f"unknown arguments for {name!r}: {sorted(unknown)}")
    model = cls(**kwargs)
    model.spec = ModelSpec(name, kwargs)
    return model


def model_spec(model: nn.Module) -> ModelSpec:
    """The spec ``build_model`` gave ``model`` (``ValueError`` for a model built otherwise)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"{type(model).__name__} was not made by build_model: it has no spec "
                         "to save it with")
    return spec


def _to_plain(kwargs: Mapping) -> dict:
    if isinstance(kwargs, DictConfig):
        return dict(OmegaConf.to_container(kwargs, resolve=True))
    return dict(kwargs)


__all__ = ["MODELS", "ModelSpec", "build_model", "model_spec"]

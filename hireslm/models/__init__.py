"""Models: mel VAE, latent DiT, vocoders (+ discriminators), recovery.

``MODELS`` maps a name to a class; every constructor takes explicit JSON/YAML-serialisable
keyword arguments, so a release stores ``{name, kwargs}`` and ``build_model`` rebuilds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

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


def build_model(name: str, kwargs: Mapping) -> nn.Module:
    """Instantiate ``MODELS[name](**kwargs)``; unknown names or arguments raise ``ValueError``.

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
    return cls(**kwargs)


def _to_plain(kwargs: Mapping) -> dict:
    if isinstance(kwargs, DictConfig):
        return dict(OmegaConf.to_container(kwargs, resolve=True))
    return dict(kwargs)


__all__ = ["MODELS", "build_model"]

"""Exponential moving average of a model's weights; the EMA weights are what a release holds."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """A float32 shadow copy of a module's parameters and buffers.

    ``decay`` applies once the model has taken ``warmup_steps`` updates; before that the
    effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not
    dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup_steps: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: value.detach().clone().float() for name, value in _tracked(model)
        }

    def current_decay(self) -> float:
        if self.num_updates < self.warmup_steps:
            return 0.0
        n = self.num_updates - self.warmup_steps
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow toward ``model``'s current weights (call after an optimizer step)."""
        decay = self.current_decay()
        for name, value in _tracked(model):
            shadow = self.shadow[name]
            if shadow.device != value.device:
                shadow = self.shadow[name] = shadow.to(value.device)
            if value.dtype.is_floating_point:
                shadow.lerp_(value.detach().float(), 1.0 - decay)
            else:  # integer buffers (counters) are copied, not averaged
                shadow.copy_(value.detach())
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the EMA weights into ``model`` in place."""
        for name, value in _tracked(model):
            value.copy_(self.shadow[name].to(device=value.device, dtype=value.dtype))

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model``; the live weights return on exit."""
        backup = {name: value.detach().clone() for name, value in _tracked(model)}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in _tracked(model):
                    value.copy_(backup[name])

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the EMA weights (the live model is untouched)."""
        clone = copy.deepcopy(model)
        self.copy_to(clone)
        return clone

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "num_updates": self.num_updates,
            "shadow": {name: value.cpu() for name, value in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model: {sorted(missing)[:5]}")
        wrong = [name for name, value in state["shadow"].items()
                 if tuple(value.shape) != tuple(self.shadow[name].shape)]
        if wrong:
            raise ValueError(f"EMA state has other shapes than the model: {wrong[:5]}")
        self.decay = float(state["decay"])
        self.warmup_steps = int(state["warmup_steps"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name] = value.to(self.shadow[name].device).float()


def _tracked(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()

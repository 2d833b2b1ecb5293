"""The protocol every training stage fills in, and the parts a stage hands to the loop.

``fit`` calls ``build`` once, prepares the returned parts with accelerate in place (so the
stage keeps reading them through ``self.parts``), then calls ``train_step`` per micro-batch
inside ``accelerator.accumulate``, ``validate`` every ``val_every`` steps with the EMA
weights swapped in, and ``export`` with the EMA weights at the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from safetensors.torch import load_model
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from hireslm.release import ReleaseError, load_release_config, verify_weights, weights_path
from hireslm.training.data import resolve_path


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops before the bad update is applied."""


class NonFiniteWeightsError(NonFiniteLossError):
    """Weights, EMA or optimizer state became NaN/inf (an update with a finite loss diverged)."""


@dataclass
class TrainingParts:
    """What ``Stage.build`` returns; the loop swaps in the prepared objects.

    Attributes:
        models: trainable modules by name (prepared: DDP/FSDP-wrapped).
        optimizers: one optimizer per trained model, by name (keys need not match models).
        train_loader, val_loader: batches of dicts of tensors.
        ema_models: names in ``models`` whose weights are averaged and exported.
        frozen: modules used but not trained (moved to the device, never wrapped).
        schedulers: filled by the loop, one per optimizer, stepped in ``step_optimizer``.
    """

    models: dict[str, nn.Module]
    optimizers: dict[str, Optimizer]
    train_loader: DataLoader
    val_loader: DataLoader | None = None
    ema_models: tuple[str, ...] = ()
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    """A trainable stage (VAE, DiT, vocoder ...).

    The loop sets ``parts`` (the prepared objects), ``generator`` (a checkpointed
    ``torch.Generator`` for the stage's own noise) and ``steps_done`` (before ``export``).
    """

    parts: TrainingParts
    generator: torch.Generator | None
    steps_done: int

    def build(self, cfg: DictConfig, accelerator: Accelerator) -> TrainingParts: ...

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]: ...

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]: ...

    def export(self, release_dir: Path) -> None: ...


class StageBase:
    """Shared plumbing: the guarded backward/step every stage uses for each optimizer."""

    def __init__(self) -> None:
        self.cfg: DictConfig | None = None
        self.accelerator: Accelerator | None = None
        self.parts: TrainingParts | None = None
        self.steps_done = 0  # set by the loop before export
        # Set by the loop; checkpointed, so stage randomness resumes exactly.
        self.generator: torch.Generator | None = None

    def step_optimizer(self, name: str, loss: torch.Tensor,
                       parameters: Iterable[nn.Parameter]) -> None:
        """Backward ``loss``; on a sync step clip ``parameters``, step ``name``'s optimizer and
        scheduler.

        Raises ``NonFiniteLossError`` on every rank when any rank's loss is NaN/inf, before
        the gradients touch the weights.
        """
        check_finite(self.accelerator, loss, name)
        optimizer = self.parts.optimizers[name]
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            max_norm = float(self.cfg.train.get("grad_clip", 0.0) or 0.0)
            if max_norm > 0:
                self.accelerator.clip_grad_norm_(parameters, max_norm)
            optimizer.step()
            if not getattr(optimizer, "step_was_skipped", False):
                self.parts.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)


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


def check_finite(accelerator: Accelerator, loss: torch.Tensor, name: str) -> None:
    """Raise ``NonFiniteLossError`` on all ranks if ``loss`` is not finite on any rank."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0],
                       device=loss.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if float(bad.item()) > 0:
        value = float(loss.detach().float().mean().item())
        raise NonFiniteLossError(
            f"loss for '{name}' is not finite ({value if math.isfinite(value) else 'nan/inf'}"
            " on at least one rank); lower the learning rate, enable grad_clip or check the data"
        )

"""The protocol every training stage fills in, its template, and the parts it hands the loop.

``fit`` calls ``build(cfg, settings, accelerator)`` once (``settings``: the typed ``train:``
and ``optim:`` sections, ``hireslm.training.settings``), prepares the returned parts with
accelerate in place (so the stage keeps reading them through ``self.parts``), then calls
``train_step`` per micro-batch inside ``accelerator.accumulate``, ``validate`` every
``val_every`` steps with the EMA weights swapped in, and ``export`` with the EMA weights at
the end. ``StageBase`` is the template the stages fill in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset

from hireslm.audio import AudioConfig, LogMelSpectrogram
from hireslm.models import build_model
from hireslm.release import save_stage
from hireslm.training.data import build_datasets, data_fingerprint, make_loader
from hireslm.training.finetune import adapt_model, export_model
from hireslm.training.finetune import init_from_release as init_from_release  # re-exported
from hireslm.training.settings import OptimSettings, Settings


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

    name: str
    parts: TrainingParts
    generator: torch.Generator | None
    steps_done: int

    def build(self, cfg: DictConfig, settings: Settings,
              accelerator: Accelerator) -> TrainingParts: ...

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]: ...

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]: ...

    def export(self, release_dir: Path) -> None: ...


def make_optimizer(params: Iterable[nn.Parameter], optim: OptimSettings,
                   lr: float | None = None,
                   default_betas: tuple[float, float] = (0.9, 0.99)) -> Optimizer:
    """AdamW over ``params`` per ``optim`` (``lr`` overrides ``optim.lr``; ``default_betas``
    apply when ``optim.betas`` is unset)."""
    return torch.optim.AdamW(params, lr=optim.lr if lr is None else lr,
                             betas=optim.betas or default_betas,
                             weight_decay=optim.weight_decay)


class StageBase:
    """The template every stage fills in: what is common to building, stepping and exporting.

    ``build`` reads the front end (``self.audio``, ``self.mel``) and calls the stage's
    ``build_parts``; the stage builds its model with ``build_model``, its optimizers with
    ``make_optimizer`` and returns ``training_parts(...)``. ``export`` saves the EMA weights of
    ``models[export_model]`` as the stage ``name`` with the common meta (steps, data,
    run folder, front end) plus the stage's ``export_extra`` and ``export_meta``.

    Args:
        datasets: optional ``(train, val)`` datasets; by default built from ``cfg.data``.
    """

    name: ClassVar[str] = ""
    export_key: ClassVar[str] = ""  # the model in ``parts.models`` that is released
    betas: ClassVar[tuple[float, float]] = (0.9, 0.99)  # AdamW's when optim.betas is unset

    def __init__(self, datasets: tuple[Dataset, Dataset | None] | None = None) -> None:
        self.datasets = datasets
        self.cfg: DictConfig | None = None
        self.settings: Settings | None = None
        self.accelerator: Accelerator | None = None
        self.parts: TrainingParts | None = None
        self.audio: AudioConfig | None = None
        self.mel: LogMelSpectrogram | None = None
        self.steps_done = 0  # set by the loop before export
        # Set by the loop; checkpointed, so stage randomness resumes exactly.
        self.generator: torch.Generator | None = None

    def build(self, cfg: DictConfig, settings: Settings,
              accelerator: Accelerator) -> TrainingParts:
        self.cfg, self.settings, self.accelerator = cfg, settings, accelerator
        self.audio = AudioConfig.from_dict(dict(cfg.get("audio", {})))
        self.mel = LogMelSpectrogram(self.audio)
        return self.build_parts()

    def build_parts(self) -> TrainingParts:
        """The stage's models, optimizers and data (``self.cfg`` etc. are set)."""
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        """``cfg.model`` built and adapted for fine-tuning (``init_from``, ``lora``, ``freeze``)."""
        model = build_model(str(self.cfg.model.name), self.cfg.model.kwargs)
        return adapt_model(model, self.cfg, self.name)

    def make_optimizer(self, params: Iterable[nn.Parameter], lr: float | None = None,
                       ) -> Optimizer:
        return make_optimizer(params, self.settings.optim, lr=lr, default_betas=self.betas)

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        """The datasets given to the constructor, else those of ``cfg.data``."""
        return self.datasets or build_datasets(self.cfg)

    def training_parts(self, models: dict[str, nn.Module], optimizers: dict[str, Optimizer],
                       datasets: tuple[Dataset, Dataset | None],
                       frozen: dict[str, nn.Module] | None = None) -> TrainingParts:
        """The parts with the train/val loader pair; ``export_key`` is EMA'd, ``mel`` frozen."""
        train_set, val_set = datasets
        batch_size = self.settings.train.batch_size
        return TrainingParts(
            models=models, optimizers=optimizers,
            train_loader=make_loader(train_set, self.cfg.data, batch_size, shuffle=True),
            val_loader=(make_loader(val_set, self.cfg.data, batch_size, shuffle=False)
                        if val_set is not None else None),
            ema_models=(self.export_key,),
            frozen={"mel": self.mel, **(frozen or {})},
        )

    def unwrapped(self, key: str) -> nn.Module:
        """``parts.models[key]`` without its DDP/FSDP wrapper."""
        return self.accelerator.unwrap_model(self.parts.models[key])

    def export(self, release_dir: Path) -> None:
        """Save ``models[export_key]`` (call with the EMA weights in) as stage ``name``."""
        adapters = self.settings.train.adapter_dir
        model = export_model(self.cfg, self.name, self.unwrapped(self.export_key), adapters)
        self.save(release_dir, model, self.export_extra(model), self.export_meta())

    def export_extra(self, model: nn.Module) -> dict[str, Any]:
        """Fields of the release's ``config.yaml[name]`` beside the model's spec."""
        return {}

    def export_meta(self) -> dict[str, Any]:
        """The stage's own entries of ``meta.json``, after the common ones."""
        return {}

    def save(self, release_dir: Path, model: nn.Module, extra: dict[str, Any] | None = None,
             meta: dict[str, Any] | None = None) -> None:
        """``save_stage`` with the common meta: steps, data fingerprint, run folder, audio."""
        save_stage(release_dir, self.name, model, extra=extra,
                   meta={"steps": self.steps_done, "data": data_fingerprint(self.cfg),
                         "run_dir": str(self.cfg.run_dir), **(meta or {})},
                   audio=self.audio)

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
            max_norm = self.settings.train.grad_clip
            if max_norm > 0:
                self.accelerator.clip_grad_norm_(parameters, max_norm)
            optimizer.step()
            if not getattr(optimizer, "step_was_skipped", False):
                self.parts.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)


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

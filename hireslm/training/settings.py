"""Typed ``train:`` and ``optim:`` sections of a stage config, parsed once by ``fit``.

Each section is a frozen dataclass whose fields are the keys the training code reads, with
their defaults; ``from_dict`` refuses a key that is not a field (naming the valid ones and the
closest match, so ``train.max_step=4`` fails instead of training the configured steps) and a
value of the wrong type (naming the key). ``data:`` differs by stage and is read by functions
also used outside ``fit`` (latent caching), so its keys are checked against a per-stage list
(``check_data_keys``) rather than parsed into a dataclass. The resolved config saved with the
run is the config as given, not these objects.
"""

from __future__ import annotations

import difflib
import math
import numbers
import types
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf

from hireslm.training.tracking import tracker_names


class SettingsError(ValueError):
    """A config section holds an unknown key, misses a required one or has a wrong type."""


class _Section:
    """``from_dict`` for a frozen dataclass of settings (``SECTION`` names it in errors)."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, section: str | None = None) -> Any:
        """Build from a mapping (or ``DictConfig``), strictly: see the module docstring."""
        section = section or cls.SECTION
        values = _plain(values) if values is not None else {}
        if not isinstance(values, Mapping):
            raise SettingsError(f"{section} must be a mapping of keys to values, not "
                                f"{values!r}")
        values = cls._normalize(dict(values))
        hints = get_type_hints(cls)
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {section}.{close[0]}?" if close else ""
                raise SettingsError(f"{section}.{key} is not a setting{hint} Valid keys: "
                                    f"{', '.join(sorted(known))}")
        missing = [f.name for f in fields(cls) if f.default is MISSING
                   and f.default_factory is MISSING and f.name not in values]
        if missing:
            raise SettingsError(f"{section} needs {', '.join(missing)}")
        return cls(**{key: _convert(f"{section}.{key}", value, hints[key])
                      for key, value in values.items()})

    @classmethod
    def _normalize(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Section-specific spellings mapped to the canonical value, before type checks."""
        return values


@dataclass(frozen=True)
class EarlyStoppingSettings(_Section):
    """``train.early_stopping`` (see ``hireslm.training.early_stopping``); off without
    ``patience`` (or with 0)."""

    SECTION: ClassVar[str] = "train.early_stopping"

    metric: str = "loss"
    patience: int = 0
    min_delta: float = 0.0
    mode: str = "min"


@dataclass(frozen=True)
class TrainSettings(_Section):
    """``train:``, the loop's settings (docs/training.md has a table of them)."""

    SECTION: ClassVar[str] = "train"

    max_steps: int
    batch_size: int
    grad_accum: int = 1
    mixed_precision: str = "no"
    grad_clip: float = 0.0
    find_unused_parameters: bool = False
    # LR schedule (per optimizer): warm-up, then decay to min_lr_ratio over schedule_steps
    # (default: the run's max_steps).
    warmup_steps: int = 0
    schedule_steps: int | None = None
    lr_decay: str = "cosine"
    min_lr_ratio: float = 0.0
    ema_decay: float = 0.999
    ema_warmup: int = 0
    log_every: int = 50
    val_every: int = 0
    val_batches: int = 2
    ckpt_every: int = 0
    keep_last: int = 3
    early_stopping: EarlyStoppingSettings | None = None
    # Small-data guards (hireslm.training.small_data.plan_max_steps).
    min_items: int = 0
    min_items_per_batch: float = 0.0
    max_epochs: float | None = None
    log_with: tuple[str, ...] = ()
    wandb_mode: str | None = None
    progress: bool | str = "auto"
    export_dir: str | None = None
    adapter_dir: str | None = None
    write_weights_hash: bool = False

    @classmethod
    def _normalize(cls, values: dict[str, Any]) -> dict[str, Any]:
        # A bare `no` (on the command line or in YAML 1.1) reads as false.
        if values.get("mixed_precision", "no") in (False, None):
            values["mixed_precision"] = "no"
        if "log_with" in values:
            log_with = values["log_with"]
            if log_with is not None and not isinstance(log_with, str | Sequence):
                raise SettingsError(f"train.log_with must be a tracker name or a list of them, "
                                    f"not {log_with!r}")
            try:
                values["log_with"] = tuple(tracker_names(log_with))
            except (TypeError, ValueError) as error:
                raise SettingsError(f"train.log_with: {error}") from error
        progress = values.get("progress", "auto")
        if progress is None:
            values["progress"] = "auto"
        elif not isinstance(progress, bool) and progress != "auto":
            raise SettingsError(f"train.progress must be auto, true or false, got {progress!r}")
        for key in ("grad_clip", "min_items", "min_items_per_batch"):
            if key in values and values[key] is None:  # `key: null` meant off, as 0 does
                values[key] = 0
        if values.get("early_stopping") is not None:
            stopping = EarlyStoppingSettings.from_dict(values["early_stopping"],
                                                       "train.early_stopping")
            values["early_stopping"] = stopping if stopping.patience else None
        return values


@dataclass(frozen=True)
class OptimSettings(_Section):
    """``optim:``, AdamW for every optimizer of a stage.

    ``betas`` defaults to the stage's own (``StageBase.betas``); ``lr_disc`` (GAN stages,
    the discriminators' LR) to ``lr``.
    """

    SECTION: ClassVar[str] = "optim"

    lr: float
    lr_disc: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Settings:
    """The typed sections ``fit`` parses once and hands to the loop and the stage."""

    train: TrainSettings
    optim: OptimSettings

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any]) -> Settings:
        return cls(TrainSettings.from_dict(cfg.get("train")),
                   OptimSettings.from_dict(cfg.get("optim")))


# The ``data:`` keys each stage reads (hireslm.training.data; the DiT's latent cache).
DATA_KEYS = frozenset({
    "train_manifest", "valid_manifest", "folders", "noise_manifest", "rir_manifest", "chain",
    "segment_seconds", "val_segment_seconds", "min_bandwidth_hz", "val_items", "length",
    "holdout", "num_workers", "pin_memory",
})
STAGE_DATA_KEYS: dict[str, frozenset[str]] = {"dit": frozenset({"latent_cache", "crop_frames"})}
MODEL_KEYS = ("name", "kwargs")


def check_data_keys(data: Mapping[str, Any] | None, stage: str) -> None:
    """Refuse ``data:`` keys that ``stage`` does not read (with the closest valid key)."""
    known = sorted(DATA_KEYS | STAGE_DATA_KEYS.get(stage, frozenset()))
    for key in data or {}:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean data.{close[0]}?" if close else ""
            raise SettingsError(f"data.{key} is not read by the {stage} stage{hint} Valid "
                                f"keys: {', '.join(known)}")


def check_model_section(model: Mapping[str, Any] | None) -> None:
    """``model:`` is ``{name, kwargs}``; an old ``model.<name>:`` block is refused."""
    model = model or {}
    extra = [str(key) for key in model if key not in MODEL_KEYS]
    if extra:
        raise SettingsError(
            f"model.{extra[0]} is no longer read: move that block to model.kwargs (the model's "
            "constructor arguments, under the same key for every stage); model holds only "
            f"{' and '.join(MODEL_KEYS)}")
    for key in MODEL_KEYS:
        if key not in model:
            raise SettingsError(f"model.{key} is missing: a stage's model is model.name and "
                                "its constructor arguments model.kwargs")


def _convert(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against type ``hint`` (ints pass as floats); raises naming ``key``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        for option in options:
            try:
                return _convert(key, value, option)
            except SettingsError:
                continue
        raise SettingsError(f"{key} must be {' or '.join(map(_describe, args))}, "
                            f"not {value!r}")
    if is_dataclass(hint):
        return value if isinstance(value, hint) else hint.from_dict(value, section=key)
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise SettingsError(f"{key} must be {_describe(hint)}, not {value!r}")
        item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise SettingsError(f"{key} must be {_describe(hint)}, not {value!r}")
        return tuple(_convert(f"{key}[{i}]", v, t)
                     for i, (v, t) in enumerate(zip(value, item_types, strict=True)))
    valid = {
        bool: isinstance(value, bool),
        int: isinstance(value, numbers.Integral) and not isinstance(value, bool),
        float: isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value),
        str: isinstance(value, str),
    }[hint]
    if not valid:
        raise SettingsError(f"{key} must be {_describe(hint)}, not {value!r}")
    return hint(value)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        items = {float: "numbers", int: "integers", str: "strings"}.get(args[0], "values")
        return f"a list of {items}" if args[-1] is Ellipsis else f"a list of {len(args)} {items}"
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _plain(values: Any) -> Any:
    return OmegaConf.to_container(values, resolve=True) if OmegaConf.is_config(values) else values

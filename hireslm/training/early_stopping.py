"""Early stopping on a validation metric (``train.early_stopping``).

``{metric: val/mel_l1, patience: 5, min_delta: 0.0, mode: min}``: every validation either
improves the best value by more than ``min_delta`` (the loop then exports the EMA weights as
the release) or counts as a bad validation; after ``patience`` bad validations in a row the run
stops. The state is checkpointed, so a resumed run keeps its best value and count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hireslm.training.settings import EarlyStoppingSettings

MODES = ("min", "max")


class EarlyStopping:
    """Tracks the best value of one validation metric and counts validations without progress.

    Args:
        metric: a key of the validation metrics, with or without the ``val/`` prefix.
        patience: bad validations in a row that stop the run (at least 1).
        min_delta: the smallest change that counts as an improvement (absolute, >= 0).
        mode: ``min`` (losses) or ``max`` (scores).
    """

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0,
                 mode: str = "min") -> None:
        if patience < 1:
            raise ValueError(f"early_stopping.patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"early_stopping.min_delta must be >= 0, got {min_delta}")
        if mode not in MODES:
            raise ValueError(f"early_stopping.mode must be one of {MODES}, got {mode!r}")
        self.metric = metric.removeprefix("val/")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_validations = 0
        self.stopped = False

    @classmethod
    def from_config(cls, config: EarlyStoppingSettings | Mapping[str, Any] | None,
                    ) -> EarlyStopping | None:
        """From ``train.early_stopping``, typed or as a mapping (None or without
        ``patience``: off)."""
        if config is None:
            return None
        if not isinstance(config, EarlyStoppingSettings):
            config = EarlyStoppingSettings.from_dict(config)
        if not config.patience:
            return None
        return cls(config.metric, config.patience, config.min_delta, config.mode)

    def update(self, metrics: Mapping[str, float], step: int) -> bool:
        """Record one validation's ``metrics`` (keys without ``val/``); True if it improved.

        A NaN/inf value never improves. Sets ``stopped`` once ``patience`` is used up.
        """
        if self.metric not in metrics:
            raise KeyError(f"early_stopping.metric 'val/{self.metric}' is not among the "
                           f"validation metrics {sorted(f'val/{k}' for k in metrics)}")
        value = float(metrics[self.metric])
        improved = math.isfinite(value) and (self.best is None or self._better(value))
        if improved:
            self.best, self.best_step, self.bad_validations = value, step, 0
        else:
            self.bad_validations += 1
            self.stopped = self.bad_validations >= self.patience
        return improved

    def _better(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def summary(self) -> dict[str, Any]:
        """What the run reports: metric, best value and step, and whether it stopped early."""
        return {"metric": f"val/{self.metric}", "mode": self.mode, "best": self.best,
                "best_step": self.best_step, "bad_validations": self.bad_validations,
                "patience": self.patience, "min_delta": self.min_delta,
                "stopped": self.stopped}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step,
                "bad_validations": self.bad_validations, "stopped": self.stopped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.best_step = None if state["best_step"] is None else int(state["best_step"])
        self.bad_validations = int(state["bad_validations"])
        self.stopped = bool(state["stopped"])

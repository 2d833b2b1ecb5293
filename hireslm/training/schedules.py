"""Learning-rate schedules: linear warm-up, then cosine or linear decay (or constant)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

DECAYS = ("cosine", "linear", "constant")


def lr_factor(
    step: int, warmup_steps: int, total_steps: int, decay: str = "cosine", min_ratio: float = 0.0
) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer updates.

    Warm-up rises linearly from ``1 / (warmup_steps + 1)`` to 1; the decay then falls to
    ``min_ratio`` at ``total_steps`` and stays there.
    """
    if decay not in DECAYS:
        raise ValueError(f"unknown LR decay '{decay}', expected one of {DECAYS}")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if decay == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    if decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def build_scheduler(
    optimizer: Optimizer,
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    min_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` over ``lr_factor``; step it once per optimizer update."""
    if decay not in DECAYS:
        raise ValueError(f"unknown LR decay '{decay}', expected one of {DECAYS}")
    return LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, decay, min_ratio)
    )

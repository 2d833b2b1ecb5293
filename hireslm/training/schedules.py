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


def build_lr_schedule(
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


def rebase_lr_schedule(scheduler: LambdaLR, base_lrs: list[float]) -> list[tuple[float, float]]:
    """Give a restored ``scheduler`` new base learning rates (one per param group).

    The schedule keeps its position; each group's current LR becomes
    ``base_lr * lr_factor(position)``. Returns ``(old, new)`` base LRs of the groups that
    changed (empty when none did).
    """
    if len(base_lrs) != len(scheduler.base_lrs):
        raise ValueError(f"{len(base_lrs)} base LRs for {len(scheduler.base_lrs)} param groups")
    changed = [(old, float(new)) for old, new in zip(scheduler.base_lrs, base_lrs, strict=True)
               if old != new]
    if not changed:
        return []
    scheduler.base_lrs = [float(lr) for lr in base_lrs]
    current = [base * factor(scheduler.last_epoch)
               for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, base, lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, current,
                               strict=True):
        group["initial_lr"], group["lr"] = base, lr
    scheduler._last_lr = current
    return changed

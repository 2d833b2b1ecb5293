"""What the degradation chain knows of each degradation: one ``DegradationEntry`` apiece.

An entry holds the pure function (``apply``), how one draw turns the config's parameter specs
into its keyword arguments and a JSON record (``prepare``), when it can apply at all
(``available``), and the parameters the chain itself consumes (``chain_keys``: a noise file's
probability, a talker count). Each degradation's module defines its entry beside its
function; ``hireslm.data.degradations.REGISTRY`` lists them. Adding a degradation is a
function and its entry in one module, and one line in that list; the chain needs no change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SPEC_KINDS = ("uniform", "loguniform", "int", "choice")

Degradation = Callable[..., np.ndarray]
# (keyword arguments for the function, JSON-serialisable record of the draw)
Prepared = tuple[dict[str, Any], dict[str, Any]]


class Resources(Protocol):
    """Audio files a draw may use, and a cached way to decode them (the chain provides it)."""

    noise_files: Sequence[Path]
    rir_files: Sequence[Path]
    babble_files: Sequence[Path]

    def load(self, path: Path) -> tuple[np.ndarray, int]:
        """``((C, M) float32, rate)`` of ``path``."""
        ...


@dataclass(frozen=True)
class Draw:
    """The context of one draw: the rate, the generator, the parameters the caller fixed
    (``apply_named``'s keywords) and the chain's files."""

    sample_rate: int
    rng: np.random.Generator
    fixed: frozenset[str]
    resources: Resources


def sample_param(spec: Any, rng: np.random.Generator) -> Any:
    """Draw a value: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{int: [lo, hi]}``
    (inclusive), ``{choice: [...]}``; anything else is a fixed value returned as is."""
    if not isinstance(spec, Mapping):
        return spec
    if len(spec) != 1 or next(iter(spec)) not in SPEC_KINDS:
        raise ValueError(f"parameter spec must be one of {SPEC_KINDS} or a value, got {spec}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if len(values) == 0:
            raise ValueError("choice spec needs at least one value")
        return plain(values[int(rng.integers(0, len(values)))])
    low, high = values
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        if low <= 0 or high <= 0:
            raise ValueError(f"loguniform bounds must be positive, got {values}")
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return int(rng.integers(int(low), int(high) + 1))


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def draw_each(spec: dict[str, Any], draw: Draw) -> Prepared | None:
    """The default preparation: every parameter drawn from its spec, in the config's order."""
    drawn = {key: sample_param(value, draw.rng) for key, value in spec.items()}
    return drawn, dict(drawn)


def required(spec: dict[str, Any], key: str, name: str) -> Any:
    """Take ``key`` out of ``spec``; a ``ValueError`` naming it when absent."""
    if key not in spec:
        raise ValueError(f"{name}: '{key}' is neither in the config's params nor given")
    return spec.pop(key)


def always(resources: Resources, sample_rate: int) -> bool:
    return True


@dataclass(frozen=True)
class DegradationEntry:
    """One degradation as the chain sees it.

    ``prepare(spec, draw)`` gets a copy of the parameter specs (config merged with the
    caller's fixed values) and returns the function's keyword arguments with the draw's
    record, or None when this draw cannot apply (a rate too high to resample to).
    """

    apply: Degradation
    prepare: Callable[[dict[str, Any], Draw], Prepared | None] = draw_each
    available: Callable[[Resources, int], bool] = always
    chain_keys: frozenset[str] = field(default_factory=frozenset)

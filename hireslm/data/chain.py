"""The random degradation chain that turns a clean crop into its degraded training partner.

``configs/degradations.yaml`` lists *stages* in the order they run (coloration, reverb, noise,
band-limit, codec, clipping, packet loss, gain: the order a signal meets them on its way from
a room through a channel to a file). Each stage fires with its probability and then applies
one of its weighted *choices*; each choice draws its parameters from the ``params`` ranges.
Same generator state, same output; every applied step is reported with JSON-serialisable
parameters.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from hireslm.audio.io import load_audio
from hireslm.config import load_config
from hireslm.data.degradations import REGISTRY
from hireslm.data.degradations.registry import Draw

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ChainStep:
    """One step of the chain: fires with ``prob``, then applies one of ``choices`` (by weight)."""

    name: str
    prob: float
    choices: Mapping[str, float]


def param_names(name: str) -> set[str]:
    """Parameters ``name`` accepts: its function's keyword arguments plus the chain's own."""
    if name not in REGISTRY:
        raise ValueError(f"unknown degradation {name!r}; known: {sorted(REGISTRY)}")
    entry = REGISTRY[name]
    accepted = set(inspect.signature(entry.apply).parameters)
    return (accepted - {"wave", "sample_rate", "rng"}) | set(entry.chain_keys)


def check_param_names(name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming any parameter ``name`` does not accept (typos fail early)."""
    unknown = set(params) - param_names(name)
    if unknown:
        raise ValueError(
            f"{name}: unknown parameters {sorted(unknown)}; known: {sorted(param_names(name))}"
        )


class DegradationChain:
    """Config-driven random chain over the degradations of ``REGISTRY``.

    Args:
        stages: run in order.
        params: per-degradation parameter specs (see ``sample_param``) plus each entry's
            ``chain_keys``: ``reverb.rir_file_prob``, ``noise.file_prob``, ``babble.n_talkers``.
        noise_files / rir_files / babble_files: audio files for recorded noise, measured RIRs
            and babble talkers. Without noise files, noise is synthetic (coloured); without
            RIR files, rooms are simulated; without babble files, babble is never chosen.
        cache_size: decoded files kept per instance (least recently used dropped first).
    """

    def __init__(
        self,
        stages: Sequence[ChainStep],
        params: Mapping[str, Mapping[str, Any]],
        noise_files: Sequence[str | Path] = (),
        rir_files: Sequence[str | Path] = (),
        babble_files: Sequence[str | Path] = (),
        cache_size: int = 64,
    ) -> None:
        for stage in stages:
            if not 0.0 <= stage.prob <= 1.0:
                raise ValueError(f"stage {stage.name}: prob must be in [0, 1], got {stage.prob}")
            unknown = set(stage.choices) - set(REGISTRY)
            if unknown:
                raise ValueError(f"stage {stage.name}: unknown degradations {sorted(unknown)}")
            if any(w < 0 for w in stage.choices.values()):
                raise ValueError(f"stage {stage.name}: choice weights must be >= 0")
        unknown = set(params) - set(REGISTRY)
        if unknown:
            raise ValueError(f"params for unknown degradations: {sorted(unknown)}")
        for name, spec in params.items():
            check_param_names(name, spec)
        self.stages = list(stages)
        self.params = {name: dict(spec) for name, spec in params.items()}
        self.noise_files = [Path(p) for p in noise_files]
        self.rir_files = [Path(p) for p in rir_files]
        self.babble_files = [Path(p) for p in babble_files]
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[Path, tuple[np.ndarray, int]] = OrderedDict()

    @classmethod
    def from_config(
        cls,
        config: Mapping,
        noise_files: Sequence[str | Path] = (),
        rir_files: Sequence[str | Path] = (),
        babble_files: Sequence[str | Path] = (),
    ) -> DegradationChain:
        """Build from a mapping (or DictConfig) with ``stages`` and ``params``."""
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        if "stages" not in config:
            raise ValueError("degradation config needs a 'stages' list")
        stages = [
            ChainStep(name=str(s["name"]), prob=float(s["prob"]), choices=dict(s["choices"]))
            for s in config["stages"]
        ]
        return cls(stages, config.get("params", {}), noise_files, rir_files, babble_files)

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        overrides: Sequence[str] = (),
        noise_files: Sequence[str | Path] = (),
        rir_files: Sequence[str | Path] = (),
        babble_files: Sequence[str | Path] = (),
    ) -> DegradationChain:
        """``from_config`` on ``hireslm.config.load_config(path, overrides)``."""
        return cls.from_config(
            load_config(path, overrides), noise_files, rir_files, babble_files
        )

    def __call__(
        self, wave: np.ndarray, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[dict]]:
        """Degrade ``(C, N)`` float32.

        Returns:
            (degraded ``(C, N)`` float32, ``[{"name", "params"}, ...]`` in the order applied).
            The result has no NaN/inf and its peak is at most ``max(1, peak of wave)``: when
            the chain (gain, reverb, noise) pushes it higher, the whole signal is scaled down
            and a ``peak_safety`` step reports the gain.
        """
        out = np.asarray(wave, dtype=np.float32)
        applied: list[dict] = []
        for stage in self.stages:
            if rng.random() >= stage.prob:
                continue
            name = self._pick(stage, sample_rate, rng)
            if name is None:
                continue
            result = self._apply(name, out, sample_rate, rng, {})
            if result is not None:
                out, record = result
                applied.append(record)
        out, safety = make_safe(out, wave)
        if safety is not None:
            applied.append(safety)
        return out, applied

    def apply_named(
        self,
        name: str,
        wave: np.ndarray,
        sample_rate: int,
        rng: np.random.Generator,
        **params: Any,
    ) -> tuple[np.ndarray, dict]:
        """Apply one degradation ``name``; ``params`` fix values, the rest are drawn from the
        config's ranges. Returns (``(C, N)`` float32 made safe as in ``__call__``, record)."""
        check_param_names(name, params)
        result = self._apply(name, np.asarray(wave, dtype=np.float32), sample_rate, rng, params)
        if result is None:
            raise ValueError(f"{name} cannot apply at {sample_rate} Hz with {params}")
        out, record = result
        out, safety = make_safe(out, wave)
        if safety is not None:
            record["params"]["peak_safety_gain_db"] = safety["params"]["gain_db"]
        return out, record

    def _pick(self, stage: ChainStep, sample_rate: int, rng: np.random.Generator) -> str | None:
        names = [n for n, w in stage.choices.items()
                 if w > 0 and REGISTRY[n].available(self, sample_rate)]
        if not names:
            return None
        weights = np.array([stage.choices[n] for n in names], dtype=np.float64)
        return names[int(rng.choice(len(names), p=weights / weights.sum()))]

    def _apply(
        self,
        name: str,
        wave: np.ndarray,
        sample_rate: int,
        rng: np.random.Generator,
        overrides: Mapping[str, Any],
    ) -> tuple[np.ndarray, dict] | None:
        """Draw parameters for ``name`` and apply it; ``None`` if it cannot apply here."""
        spec = {**self.params.get(name, {}), **overrides}
        entry = REGISTRY[name]
        prepared = entry.prepare(spec, Draw(sample_rate, rng, frozenset(overrides), self))
        if prepared is None:
            return None
        kwargs, record = prepared
        missing = [
            p.name for p in inspect.signature(entry.apply).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in kwargs
        ]
        if missing:
            raise ValueError(f"{name}: {missing} neither in the config's params nor given")
        out = entry.apply(wave, sample_rate, rng, **kwargs)
        return out, {"name": name, "params": record}

    def load(self, path: Path) -> tuple[np.ndarray, int]:
        """Decode ``path`` once per instance (LRU-bounded): ``((C, M) float32, rate)``."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        loaded = load_audio(path)
        self._cache[path] = loaded
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return loaded


def make_safe(out: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """Replace NaN/inf by 0 and scale down so ``max|out| <= max(1, max|clean|)``.

    Returns (safe ``(C, N)`` float32, a ``peak_safety`` record or ``None`` if untouched).
    """
    if not np.isfinite(out).all():
        logger.warning("degradation produced %d non-finite samples; zeroed",
                       int((~np.isfinite(out)).sum()))
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    limit = max(1.0, float(np.max(np.abs(clean))) if clean.size else 1.0)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak <= limit:
        return out.astype(np.float32, copy=False), None
    scale = limit / peak
    record = {"name": "peak_safety", "params": {"gain_db": float(20 * np.log10(scale))}}
    return (out * np.float32(scale)).astype(np.float32), record

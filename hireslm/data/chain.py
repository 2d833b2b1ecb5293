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
from hireslm.audio.resample import resample
from hireslm.config import load_config
from hireslm.data.degradations import DEGRADATIONS
from hireslm.data.degradations.filters import random_eq_bands
from hireslm.data.degradations.reverb import simulate_rir

logger = logging.getLogger(__name__)

SPEC_KINDS = ("uniform", "loguniform", "int", "choice")
# Parameters the chain itself consumes (file choice, talker count) besides the functions' own.
CHAIN_KEYS: dict[str, set[str]] = {
    "noise": {"file_prob", "noise_file"},
    "babble": {"n_talkers"},
    "reverb": {"rir_file_prob", "rir_file"},
}
# The band edge must stay clear of Nyquist for a filter to mean anything.
MAX_CUTOFF_FRACTION = 0.45


@dataclass(frozen=True)
class Stage:
    """One step of the chain: fires with ``prob``, then applies one of ``choices`` (by weight)."""

    name: str
    prob: float
    choices: Mapping[str, float]


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
        return _plain(values[int(rng.integers(0, len(values)))])
    low, high = values
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        if low <= 0 or high <= 0:
            raise ValueError(f"loguniform bounds must be positive, got {values}")
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))
    return int(rng.integers(int(low), int(high) + 1))


def param_names(name: str) -> set[str]:
    """Parameters ``name`` accepts: its function's keyword arguments plus the chain's own."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; known: {sorted(DEGRADATIONS)}")
    accepted = set(inspect.signature(DEGRADATIONS[name]).parameters)
    return (accepted - {"wave", "sample_rate", "rng"}) | CHAIN_KEYS.get(name, set())


def check_param_names(name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming any parameter ``name`` does not accept (typos fail early)."""
    unknown = set(params) - param_names(name)
    if unknown:
        raise ValueError(
            f"{name}: unknown parameters {sorted(unknown)}; known: {sorted(param_names(name))}"
        )


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON)."""
    return value.item() if isinstance(value, np.generic) else value


class DegradationChain:
    """Config-driven random chain over ``DEGRADATIONS``.

    Args:
        stages: run in order.
        params: per-degradation parameter specs (see ``sample_param``) plus the chain's own
            keys: ``reverb.rir_file_prob``, ``noise.file_prob``, ``babble.n_talkers``,
            ``eq.n_bands``/``eq.max_gain_db``.
        noise_files / rir_files / babble_files: audio files for recorded noise, measured RIRs
            and babble talkers. Without noise files, noise is synthetic (coloured); without
            RIR files, rooms are simulated; without babble files, babble is never chosen.
        cache_size: decoded files kept per instance (least recently used dropped first).
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        params: Mapping[str, Mapping[str, Any]],
        noise_files: Sequence[str | Path] = (),
        rir_files: Sequence[str | Path] = (),
        babble_files: Sequence[str | Path] = (),
        cache_size: int = 64,
    ) -> None:
        for stage in stages:
            if not 0.0 <= stage.prob <= 1.0:
                raise ValueError(f"stage {stage.name}: prob must be in [0, 1], got {stage.prob}")
            unknown = set(stage.choices) - set(DEGRADATIONS)
            if unknown:
                raise ValueError(f"stage {stage.name}: unknown degradations {sorted(unknown)}")
            if any(w < 0 for w in stage.choices.values()):
                raise ValueError(f"stage {stage.name}: choice weights must be >= 0")
        unknown = set(params) - set(DEGRADATIONS)
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
            Stage(name=str(s["name"]), prob=float(s["prob"]), choices=dict(s["choices"]))
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

    def _available(self, name: str, sample_rate: int) -> bool:
        if name == "babble":
            return bool(self.babble_files)
        if name == "resample":
            return sample_rate > 8000
        return True

    def _pick(self, stage: Stage, sample_rate: int, rng: np.random.Generator) -> str | None:
        names = [n for n, w in stage.choices.items() if w > 0 and self._available(n, sample_rate)]
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
        prepared = self._prepare(name, spec, set(overrides), sample_rate, rng)
        if prepared is None:
            return None
        kwargs, record = prepared
        function = DEGRADATIONS[name]
        missing = [
            p.name for p in inspect.signature(function).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in kwargs
        ]
        if missing:
            raise ValueError(f"{name}: {missing} neither in the config's params nor given")
        out = function(wave, sample_rate, rng, **kwargs)
        return out, {"name": name, "params": record}

    def _prepare(
        self,
        name: str,
        spec: dict[str, Any],
        fixed: set[str],
        sample_rate: int,
        rng: np.random.Generator,
    ) -> tuple[dict, dict] | None:
        """(keyword arguments for the function, JSON-serialisable record) for one draw;
        ``fixed`` names the parameters the caller set."""
        if name == "noise":
            return self._prepare_noise(spec, "color" in fixed, rng)
        if name == "babble":
            return self._prepare_babble(spec, rng)
        if name == "reverb":
            return self._prepare_reverb(spec, sample_rate, rng)
        if name == "eq":
            n_bands = sample_param(spec.pop("n_bands", 3), rng)
            max_gain_db = sample_param(spec.pop("max_gain_db", 9.0), rng)
            bands = spec.pop("bands", None) or random_eq_bands(
                sample_rate, rng, n_bands, max_gain_db
            )
            return {"bands": bands}, {"bands": bands}
        drawn = {key: sample_param(value, rng) for key, value in spec.items()}
        if name == "lowpass" and "cutoff_hz" in drawn:
            drawn["cutoff_hz"] = min(drawn["cutoff_hz"], MAX_CUTOFF_FRACTION * sample_rate)
        if name == "resample" and drawn.get("low_rate", 0) >= sample_rate:
            return None
        if name == "vorbis" and drawn.get("codec_sample_rate"):
            # Coding above the input's rate would only add bandwidth the input never had.
            drawn["codec_sample_rate"] = min(drawn["codec_sample_rate"], sample_rate)
        return drawn, dict(drawn)

    def _prepare_noise(
        self, spec: dict, color_fixed: bool, rng: np.random.Generator
    ) -> tuple[dict, dict]:
        file_prob = float(spec.pop("file_prob", 1.0))
        path = spec.pop("noise_file", None)
        snr_db = float(sample_param(_required(spec, "snr_db", "noise"), rng))
        color = spec.pop("color", "white")
        if spec:
            raise ValueError(f"noise: unknown parameters {sorted(spec)}")
        use_file = path is not None or (
            bool(self.noise_files) and not color_fixed and rng.random() < file_prob
        )
        if use_file:
            if path is None:
                path = self.noise_files[int(rng.integers(0, len(self.noise_files)))]
            noise_wave, noise_rate = self._load(Path(path))
            kwargs = {"snr_db": snr_db, "noise": noise_wave, "noise_sample_rate": noise_rate}
            return kwargs, {"snr_db": snr_db, "noise_file": str(path)}
        color = sample_param(color, rng)
        return {"snr_db": snr_db, "color": color}, {"snr_db": snr_db, "color": color}

    def _prepare_babble(self, spec: dict, rng: np.random.Generator) -> tuple[dict, dict]:
        if not self.babble_files:
            raise ValueError("babble needs babble (speech) files")
        snr_db = float(sample_param(_required(spec, "snr_db", "babble"), rng))
        n_talkers = int(sample_param(spec.pop("n_talkers", 4), rng))
        picks = rng.integers(0, len(self.babble_files), size=n_talkers)
        paths = [self.babble_files[int(i)] for i in picks]
        loaded = [self._load(p) for p in paths]
        rate = loaded[0][1]
        # babble() takes talkers at one rate: bring all to the first file's.
        talkers = [resample(w, r, rate) for w, r in loaded]
        kwargs = {"snr_db": snr_db, "talkers": talkers, "talkers_sample_rate": rate}
        return kwargs, {"snr_db": snr_db, "talker_files": [str(p) for p in paths]}

    def _prepare_reverb(
        self, spec: dict, sample_rate: int, rng: np.random.Generator
    ) -> tuple[dict, dict]:
        file_prob = float(spec.pop("rir_file_prob", 1.0))
        path = spec.pop("rir_file", None)
        rt60_s = sample_param(spec.pop("rt60_s", 0.5), rng)
        max_order = sample_param(spec.pop("max_order", None), rng)
        dims = spec.pop("room_dims_m", None)
        match_rt60 = bool(sample_param(spec.pop("match_rt60", True), rng))
        if spec:
            raise ValueError(f"reverb: unknown parameters {sorted(spec)}")
        if path is not None or (self.rir_files and rng.random() < file_prob):
            if path is None:
                path = self.rir_files[int(rng.integers(0, len(self.rir_files)))]
            rir, rir_rate = self._load(Path(path))
            return {"rir": rir, "rir_sample_rate": rir_rate}, {"rir_file": str(path)}
        room = simulate_rir(
            sample_rate, rng, rt60_s=float(rt60_s), room_dims_m=dims, max_order=max_order,
            match_rt60=match_rt60,
        )
        record = {
            "rt60_target_s": room.rt60_target_s,
            "rt60_asked_s": room.rt60_asked_s,
            "rt60_measured_s": room.rt60_measured_s,
            "room_dims_m": list(room.room_dims_m),
            "source_m": list(room.source_m),
            "mic_m": list(room.mic_m),
            "max_order": room.max_order,
        }
        return {"rir": room.rir, "rir_sample_rate": sample_rate}, record

    def _load(self, path: Path) -> tuple[np.ndarray, int]:
        """Decode ``path`` once per instance (LRU-bounded): ``((C, M) float32, rate)``."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        loaded = load_audio(path)
        self._cache[path] = loaded
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return loaded


def _required(spec: dict, key: str, name: str) -> Any:
    if key not in spec:
        raise ValueError(f"{name}: '{key}' is neither in the config's params nor given")
    return spec.pop(key)


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

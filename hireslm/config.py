"""OmegaConf configs: a YAML file (optionally extending a base) plus ``key=value`` overrides.

A config names its parent with ``_base_: relative/or/absolute.yaml``; parents merge first.
The result is resolved once and made read-only, then saved with the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

BASE_KEY = "_base_"


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load ``path`` with its ``_base_`` chain, apply dotlist ``overrides``, resolve, freeze."""
    config = _load_with_bases(Path(path), seen=())
    if overrides:
        config = OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))
    return freeze(config)


def freeze(config: DictConfig) -> DictConfig:
    """Resolve interpolations and make the config read-only."""
    resolved = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    OmegaConf.set_readonly(resolved, True)
    return resolved


def plain(value: Any) -> Any:
    """OmegaConf nodes, mappings and sequences as plain dicts and lists (for YAML/JSON)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def _load_with_bases(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"config inheritance cycle: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    config = OmegaConf.load(path)
    base = config.pop(BASE_KEY, None)
    if base is None:
        return config
    parent = _load_with_bases((path.parent / str(base)), seen + (path,))
    return OmegaConf.merge(parent, config)


def save_config(config: DictConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(OmegaConf.to_yaml(config, resolve=True))

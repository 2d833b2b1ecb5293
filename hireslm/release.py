"""Release folders: one ``<stage>.safetensors`` per stage, ``config.yaml`` and ``meta.json``.

``config.yaml`` holds the audio front end under ``audio`` and, per stage, the model name, its
constructor kwargs and stage extras (e.g. the VAE's ``latent_scale``, the DiT's objective);
``meta.json`` records the package version and, per stage, git commit, steps, data hash and
whatever else the trainer reports. Stages may come from different runs (``combine_releases``).
All files are written atomically; loading is strict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

import hireslm
from hireslm.audio import AudioConfig
from hireslm.config import plain
from hireslm.fileio import atomic_path, file_sha256, write_json_atomic, write_text_atomic
from hireslm.models import build_model
from hireslm.models.recovery import PRETRAINED_RECOVERY

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"


class ReleaseError(FileNotFoundError):
    """A release folder, or a stage inside it, is missing or inconsistent."""


def weights_path(release_dir: str | os.PathLike, stage: str) -> Path:
    return Path(release_dir) / f"{stage}.safetensors"


def save_stage(
    release_dir: str | os.PathLike,
    stage: str,
    model: nn.Module,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    audio: AudioConfig | Mapping[str, Any] | None = None,
) -> None:
    """Write ``model``'s weights as ``<stage>.safetensors`` and record it in the release.

    ``config.yaml[stage]`` becomes ``{"model": model_name, "kwargs": model_kwargs, **extra}``;
    ``meta.json["stages"][stage]`` gets ``meta`` plus the git commit and weights hash.
    ``audio`` (default: the standard front end) is written when given or when absent.
    Other stages already in the folder are kept.
    """
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    if {"model", "kwargs"} & set(extra):
        raise ValueError("extra must not override 'model' or 'kwargs'")
    target = weights_path(release_dir, stage)
    with atomic_path(target) as tmp:
        save_model(model, str(tmp), metadata={"stage": stage, "model": model_name})

    config = _read_config(release_dir)
    if audio is not None or "audio" not in config:
        config["audio"] = _audio_dict(audio)
    config[stage] = {"model": model_name, "kwargs": plain(model_kwargs), **plain(extra)}
    write_text_atomic(release_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(config)))

    info = _read_meta(release_dir)
    info["version"] = hireslm.__version__
    info.setdefault("stages", {})[stage] = {
        **plain(meta or {}),
        "git_commit": git_commit(),
        "weights_sha256": file_sha256(target),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    write_json_atomic(release_dir / META_FILE, info)


def save_pretrained_entry(
    release_dir: str | os.PathLike,
    stage: str,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Record a stage whose weights ship with a library, not the release (DeepFilterNet3).

    ``config.yaml[stage]`` becomes ``{"model": model_name, "kwargs": model_kwargs, **extra}``;
    no weights file is written, and one left from an earlier trained stage is removed.
    """
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    config = _read_config(release_dir)
    config.setdefault("audio", _audio_dict(None))
    config[stage] = {"model": model_name, "kwargs": plain(model_kwargs), **plain(extra or {})}
    write_text_atomic(release_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(config)))
    weights_path(release_dir, stage).unlink(missing_ok=True)
    info = _read_meta(release_dir)
    info["version"] = hireslm.__version__
    info.setdefault("stages", {})[stage] = {"pretrained": model_name}
    write_json_atomic(release_dir / META_FILE, info)


def store_half(release_dir: str | os.PathLike, stage: str) -> Path:
    """Rewrite ``stage``'s weights as float16 (halving the file); loading casts them back to
    the model's float32. Its ``meta.json`` entry gets the new hash and the float32 file's
    hash as ``float32_weights_sha256``, so what the stage was trained as stays traceable.
    """
    path = weights_path(release_dir, stage)
    if not path.is_file():
        raise ReleaseError(f"stage '{stage}': weights file {path} is missing")
    tensors = load_file(str(path))
    if all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point()):
        return path
    before = file_sha256(path)
    half = {k: t.half() if t.is_floating_point() else t for k, t in tensors.items()}
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    with atomic_path(path) as tmp:
        save_file(half, str(tmp), metadata=metadata)
    info = _read_meta(Path(release_dir))
    entry = info.setdefault("stages", {}).setdefault(stage, {})
    entry.setdefault("float32_weights_sha256", entry.get("weights_sha256", before))
    entry.update(weights_sha256=file_sha256(path), stored_dtype="float16")
    write_json_atomic(Path(release_dir) / META_FILE, info)
    return path


def load_release_config(release_dir: str | os.PathLike) -> DictConfig:
    """The release's ``config.yaml`` as a read-only DictConfig."""
    path = Path(release_dir) / CONFIG_FILE
    if not path.is_file():
        raise ReleaseError(f"{release_dir}: not a release folder (no {CONFIG_FILE})")
    config = OmegaConf.load(path)
    OmegaConf.set_readonly(config, True)
    return config


def load_stage(release_dir: str | os.PathLike, stage: str,
               device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild ``stage``'s model from the release and load its weights strictly, in eval mode."""
    config = load_release_config(release_dir)
    if stage not in config:
        present = sorted(k for k in config if k != "audio")
        raise ReleaseError(
            f"stage '{stage}' is not in release {release_dir} (it holds {present or 'no stage'})"
        )
    path = weights_path(release_dir, stage)
    if not path.is_file():
        raise ReleaseError(f"stage '{stage}': weights file {path} is missing")
    entry = config[stage]
    model = build_model(str(entry.model), entry.kwargs)
    missing, unexpected = load_model(model, str(path), strict=True, device=str(device))
    if missing or unexpected:  # strict=True raises first; kept for safetensors versions that don't
        raise ReleaseError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()


def read_meta(release_dir: str | os.PathLike) -> dict[str, Any]:
    """The release's ``meta.json`` (empty dict when absent)."""
    return _read_meta(Path(release_dir))


def combine_releases(out_dir: str | os.PathLike, **sources: str | os.PathLike) -> Path:
    """Assemble a release from stages of other releases: ``combine_releases(out, vae=a, dit=b)``.

    Every source must hold its stage, and all sources must share one audio front end.
    Writes into ``out_dir`` (created; stages already there but not named are kept).
    """
    if not sources:
        raise ValueError("name at least one stage=source_dir")
    out_dir = Path(out_dir)
    audio = None
    entries = {}
    for stage, source in sources.items():
        config = load_release_config(source)
        pretrained = stage in config and str(config[stage].model) in PRETRAINED_RECOVERY
        if stage not in config or not (pretrained or weights_path(source, stage).is_file()):
            raise ReleaseError(f"stage '{stage}' is not in release {source}")
        source_audio = OmegaConf.to_container(config.get("audio", {}))
        if audio is not None and source_audio != audio:
            raise ReleaseError(
                f"stage '{stage}' from {source} uses a different audio front end: "
                f"{source_audio} vs {audio}"
            )
        audio = source_audio
        entries[stage] = (Path(source), OmegaConf.to_container(config[stage]))
    out_dir.mkdir(parents=True, exist_ok=True)
    config = _read_config(out_dir)
    info = _read_meta(out_dir)
    info["version"] = hireslm.__version__
    for stage, (source, entry) in entries.items():
        target = weights_path(out_dir, stage)
        if str(entry["model"]) in PRETRAINED_RECOVERY:
            target.unlink(missing_ok=True)
        elif weights_path(source, stage).resolve() != target.resolve():
            with atomic_path(target) as tmp:
                shutil.copyfile(weights_path(source, stage), tmp)
        config[stage] = entry
        stage_meta = _read_meta(source).get("stages", {}).get(stage, {})
        info.setdefault("stages", {})[stage] = {**stage_meta, "source": str(source.resolve())}
    config["audio"] = audio
    write_text_atomic(out_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(config)))
    write_json_atomic(out_dir / META_FILE, info)
    return out_dir


def git_commit() -> str | None:
    """The source tree's commit hash, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(hireslm.__file__).parent,
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _audio_dict(audio: AudioConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if audio is None:
        return AudioConfig().to_dict()
    if isinstance(audio, AudioConfig):
        return audio.to_dict()
    return AudioConfig.from_dict(plain(audio)).to_dict()


def _read_config(release_dir: Path) -> dict[str, Any]:
    path = release_dir / CONFIG_FILE
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def _read_meta(release_dir: Path) -> dict[str, Any]:
    path = release_dir / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}

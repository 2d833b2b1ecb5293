"""Release folders: one ``<stage>.safetensors`` per stage, ``config.yaml`` and ``meta.json``.

``config.yaml`` holds the audio front end under ``audio`` and, per stage, the model name, its
constructor kwargs and stage extras (e.g. the VAE's ``latent_scale``, the DiT's objective);
``meta.json`` records the package version and, per stage, git commit, steps, data hash and
whatever else the trainer reports, including the sha256 of the stage's weights file
(``weights_sha256``). Stages may come from different runs (``combine_releases``).
All files are written atomically; loading is strict: every weights file is checked against its
recorded sha256 before it is loaded (``verify_weights``), and every problem with the folder
raises ``ReleaseError`` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError, safe_open

import hireslm
from hireslm.audio.config import AudioConfig
from hireslm.config import plain
from hireslm.fileio import atomic_path, file_sha256, write_json_atomic, write_text_atomic
from hireslm.recovery import PRETRAINED_RECOVERY

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch and the model classes are imported where a model is built, saved or loaded: reading
# a release's config, hashes and front end (a run that needs only recovery) loads no torch.

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_PLAIN_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


# The stages every release holds; a release may add a ``recovery`` stage.
REQUIRED_STAGES = ("vae", "dit", "vocoder")


def generative_stages(specs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The stages of a release's ``specs`` (stage -> entry) that are trained models (torch):
    VAE, DiT, vocoder, and a trained mel recovery (a pretrained waveform one is not)."""
    recovery = specs.get("recovery")
    mel_recovery = recovery is not None and recovery["model"] not in PRETRAINED_RECOVERY
    return [*REQUIRED_STAGES, *(["recovery"] if mel_recovery else [])]


class ReleaseError(Exception):
    """A release folder, or a stage inside it, is missing, damaged or inconsistent; the
    message is one line naming the file."""


def weights_path(release_dir: str | os.PathLike, stage: str) -> Path:
    return Path(release_dir) / f"{stage}.safetensors"


def save_stage(
    release_dir: str | os.PathLike,
    stage: str,
    model: nn.Module,
    extra: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    audio: AudioConfig | Mapping[str, Any] | None = None,
) -> None:
    """Write ``model``'s weights as ``<stage>.safetensors`` and record it in the release.

    ``config.yaml[stage]`` becomes ``{"model": spec.name, "kwargs": spec.kwargs, **extra}``
    from the model's own ``spec`` (``hireslm.models.build_model``);
    ``meta.json["stages"][stage]`` gets ``meta`` plus the git commit and weights hash.
    ``audio`` (default: the standard front end) is written when given or when absent.
    Other stages already in the folder are kept.
    """
    release_dir = Path(release_dir)
    release_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    if {"model", "kwargs"} & set(extra):
        raise ValueError("extra must not override 'model' or 'kwargs'")
    from safetensors.torch import save_model

    from hireslm.models import model_spec

    spec = model_spec(model)
    target = weights_path(release_dir, stage)
    with atomic_path(target) as tmp:
        save_model(model, str(tmp), metadata=weights_metadata(stage, spec.name))

    config = _read_config(release_dir)
    if audio is not None or "audio" not in config:
        config["audio"] = _audio_dict(audio)
    config[stage] = {"model": spec.name, "kwargs": plain(spec.kwargs), **plain(extra)}
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


def weights_metadata(stage: str, model_name: str) -> dict[str, str]:
    """The header metadata of a weights file: one key, so the file's bytes (and its recorded
    sha256) do not depend on the order safetensors happens to write several keys in."""
    return {"hireslm": json.dumps({"model": model_name, "stage": stage}, sort_keys=True)}


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
    import torch
    from safetensors.torch import load_file, save_file

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
    """The release's ``config.yaml`` as a read-only DictConfig (section name -> entry)."""
    path = Path(release_dir) / CONFIG_FILE
    if not path.is_file():
        raise ReleaseError(f"{release_dir}: not a release folder (no {CONFIG_FILE})")
    try:
        config = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise ReleaseError(f"{path} is not readable YAML: {_one_line(exc)}") from exc
    if not isinstance(config, DictConfig):
        raise ReleaseError(f"{path} must map section names to entries, not hold a list")
    OmegaConf.set_readonly(config, True)
    return config


def stage_entry(release_dir: str | os.PathLike, stage: str) -> DictConfig:
    """``config.yaml``'s entry for ``stage``: a mapping with a ``model`` name, optional
    constructor ``kwargs`` (absent means the constructor's defaults, which the strict weights
    load must still fit) and stage extras. Raises ``ReleaseError`` for any other shape."""
    config = load_release_config(release_dir)
    if stage not in config:
        present = sorted(k for k in config if k != "audio")
        raise ReleaseError(
            f"stage '{stage}' is not in release {release_dir} (it holds {present or 'no stage'})"
        )
    entry = config[stage]
    where = f"{Path(release_dir) / CONFIG_FILE}: stage '{stage}'"
    if not isinstance(entry, DictConfig):
        raise ReleaseError(f"{where} must be a mapping with 'model' and 'kwargs', not {entry!r}")
    if not isinstance(entry.get("model"), str) or not entry.model:
        from hireslm.models import MODELS

        known = sorted(MODELS) + sorted(PRETRAINED_RECOVERY)
        raise ReleaseError(f"{where} has no 'model' name (one of {known})")
    if "kwargs" in entry and not isinstance(entry.kwargs, DictConfig):
        raise ReleaseError(f"{where}: 'kwargs' must map constructor arguments to values, "
                           f"not {entry.kwargs!r}")
    return entry


def load_audio_config(release_dir: str | os.PathLike) -> AudioConfig:
    """The audio front end the release's stages were trained with (``config.yaml[audio]``)."""
    config = load_release_config(release_dir)
    path = Path(release_dir) / CONFIG_FILE
    if not isinstance(config.get("audio"), DictConfig):
        raise ReleaseError(f"{path}: 'audio' must map the front end's settings to values, "
                           f"not {config.get('audio')!r}")
    try:
        return AudioConfig.from_dict(plain(config.audio))
    except (TypeError, ValueError) as exc:
        raise ReleaseError(f"{path}: {_one_line(exc)}") from exc


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this process can run on.

    Raises:
        ValueError: a device torch does not know (``tpu``), or a CUDA or MPS GPU this
            process does not have, said so in one line (not as a weights file that fails to
            load).
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {str(device)!r}: use cpu, cuda or cuda:N") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: no CUDA GPU is available to this "
                             "process (none found, or torch built without CUDA); use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {str(device)!r}: this process sees {count} GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: no Apple GPU (MPS) is available")
    # Other kinds torch knows (xpu, hpu, ...) are left to torch and their own backends.
    return parsed


def load_stage(release_dir: str | os.PathLike, stage: str,
               device: str | torch.device = "cpu", *, verify: bool = True) -> nn.Module:
    """Rebuild ``stage``'s model from the release and load its weights strictly, in eval mode.

    The weights file is checked against its recorded sha256 first (``verify_weights``;
    ``verify=False`` where the caller checked it already). A
    missing or damaged file, a config entry of the wrong shape or value types, or tensors
    that do not fit the model raise ``ReleaseError`` with a one-line message naming the file;
    a device this process cannot use, ``ValueError`` (``check_device``).
    """
    check_device(device)
    entry = stage_entry(release_dir, stage)
    path = weights_path(release_dir, stage)
    if not path.is_file():
        raise ReleaseError(f"stage '{stage}': weights file {path} is missing")
    if verify:
        verify_weights(release_dir, stage)
    name, kwargs = str(entry.model), plain(entry.get("kwargs", {}))
    _check_kwarg_types(f"{Path(release_dir) / CONFIG_FILE}: stage '{stage}'", name, kwargs)
    with config_errors(release_dir, f"stage '{stage}' ({name})"):
        from hireslm.models import build_model

        model = build_model(name, kwargs)
    _load_weights(model, path, stage, device)
    return model.to(device).eval()


def recorded_sha256(release_dir: str | os.PathLike, stage: str) -> str | None:
    """The sha256 ``meta.json`` records for ``stage``'s weights file, or None where it records
    none (no ``meta.json``, no entry for the stage, or an entry without ``weights_sha256``)."""
    path = Path(release_dir) / META_FILE
    stages = _read_meta(Path(release_dir)).get("stages", {})
    entry = stages.get(stage, {}) if isinstance(stages, dict) else None
    if not isinstance(entry, dict):
        raise ReleaseError(f"{path}: 'stages' must map stage names to mappings")
    recorded = entry.get("weights_sha256")
    if recorded is not None and not (isinstance(recorded, str) and _SHA256.fullmatch(recorded)):
        raise ReleaseError(f"{path}: stage '{stage}' weights_sha256 is not a sha256 hex "
                           f"digest: {recorded!r}")
    return recorded.lower() if recorded is not None else None


def verify_weights(release_dir: str | os.PathLike, stage: str) -> bool:
    """Check ``stage``'s weights file against the sha256 ``meta.json`` records for it.

    Returns True when it matches. A mismatch raises ``ReleaseError``: the file was damaged or
    changed after the release was written, and weights that still happen to load would
    restore audio wrongly with no other sign. Where no hash is recorded (no ``meta.json``, or
    none for this stage: older releases, folders assembled by hand) it logs a warning and
    returns False; such a release loads unverified rather than being refused, since nothing
    says which bytes are right, and the strict load still rejects files that do not fit.
    """
    path = weights_path(release_dir, stage)
    recorded = recorded_sha256(release_dir, stage)
    if recorded is None:
        why = (f"{META_FILE} records no sha256 for stage '{stage}'"
               if (path.parent / META_FILE).is_file() else f"the release has no {META_FILE}")
        logger.warning("%s: %s; loading it unverified", path, why)
        return False
    found = file_sha256(path)
    if found != recorded:
        raise ReleaseError(
            f"{path} does not match the sha256 recorded in {Path(release_dir) / META_FILE}: "
            "the file is damaged or was changed; copy the release again from its source, or "
            f"save the stage anew if the change was meant (sha256 {found[:12]}..., recorded "
            f"{recorded[:12]}...)"
        )
    return True


@contextmanager
def config_errors(release_dir: str | os.PathLike, what: str) -> Iterator[None]:
    """Re-raise an error from building ``what`` out of ``config.yaml`` as a one-line
    ``ReleaseError`` naming the file: a bad value there otherwise surfaces deep inside a
    constructor, in a traceback that does not say where the value came from."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise ReleaseError(f"{Path(release_dir) / CONFIG_FILE}: {what}: {_one_line(exc)}") from exc


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
    # A DiT only works on latents scaled as in its training: refuse a VAE with another scale.
    merged = {**_read_config(out_dir), **{s: entry for s, (_, entry) in entries.items()}}
    trained_on = merged.get("dit", {}).get("vae_latent_scale")
    vae_scale = merged.get("vae", {}).get("latent_scale")
    if trained_on is not None and vae_scale is not None and (
            abs(float(trained_on) - float(vae_scale)) > 1e-6 * abs(float(vae_scale))):
        raise ReleaseError(
            f"the DiT was trained on latents scaled by {float(trained_on):.6g}, but the VAE's "
            f"latent_scale is {float(vae_scale):.6g}: combine the DiT with the VAE release it "
            "was trained on (its dit.vae_release), or retrain the DiT on this VAE")
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
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReleaseError(f"{path} is not valid JSON: {_one_line(exc)}") from exc
    if not isinstance(info, dict):
        raise ReleaseError(f"{path} must hold a JSON object, not {type(info).__name__}")
    return info


def _check_kwarg_types(where: str, name: str, kwargs: Mapping[str, Any]) -> None:
    """Constructor arguments annotated plain ``int``/``float``/``bool``/``str`` (or ``X | None``)
    must hold one: a quoted number in config.yaml otherwise fails deep inside torch."""
    from hireslm.models import MODELS

    if name not in MODELS:
        return  # build_model names the unknown model
    params = inspect.signature(MODELS[name].__init__).parameters
    for key, value in kwargs.items():
        annotation = params[key].annotation if key in params else None
        if isinstance(annotation, type):
            annotation = annotation.__name__
        if not isinstance(annotation, str):
            continue
        optional = annotation.endswith(" | None")
        expected = _PLAIN_TYPES.get(annotation.removesuffix(" | None"))
        if expected is None or (optional and value is None):
            continue
        if not _is_instance(value, expected):
            raise ReleaseError(f"{where}: kwargs.{key} must be {annotation}, not {value!r}")


def _is_instance(value: Any, expected: type) -> bool:
    if expected is not bool and isinstance(value, bool):
        return False
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _load_weights(model: nn.Module, path: Path, stage: str, device: str | torch.device) -> None:
    """Load ``path`` into ``model`` strictly, any failure as a one-line ``ReleaseError``."""
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(model, str(path), strict=True, device=str(device))
    except SafetensorError as exc:
        raise ReleaseError(f"{path} is not a readable safetensors file ({_one_line(exc)}): "
                           "it is damaged or incomplete") from exc
    except RuntimeError as exc:
        raise ReleaseError(f"{path} does not fit the model {CONFIG_FILE} describes for stage "
                           f"'{stage}': {_one_line(exc, limit=300)}") from exc
    if missing or unexpected:  # strict=True raises first; kept for safetensors versions that don't
        raise ReleaseError(f"{path}: missing {missing}, unexpected {unexpected}")


def _one_line(exc: BaseException, limit: int = 500) -> str:
    """``exc``'s message on one line (YAML, OmegaConf and torch messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc) is KeyError:
        text = f"no key {text}"
    return text if len(text) <= limit else text[:limit] + "..."


def release_hash(release_dir: str | Path) -> str:
    """Short sha256 over a release's config and weights: which model made an output."""
    digest = hashlib.sha256()
    release_dir = Path(release_dir)
    for path in [release_dir / "config.yaml", *sorted(release_dir.glob("*.safetensors"))]:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]

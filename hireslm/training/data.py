"""Training data for every stage: paired (clean, degraded) datasets and their loaders.

``cfg.data`` names a clean-speech manifest (JSONL) or folders to index on the fly, the crop
length and the degradation chain; ``hireslm.data.dataset.PairedSpeechDataset`` makes the
pairs. Relative paths resolve against the working directory, then the repository root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

import hireslm
from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset
from hireslm.data.manifest import index_folders, read_manifest
from hireslm.training.early_stopping import EarlyStopping
from hireslm.training.small_data import holdout_split

logger = logging.getLogger(__name__)

REPO_ROOT = Path(hireslm.__file__).resolve().parents[1]


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` as given if it exists (or is absolute), else relative to the repository root."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def load_records(data: DictConfig, split: str) -> list[dict[str, Any]]:
    """Clean-speech records for ``split`` ("train" or "valid").

    From ``data.<split>_manifest`` when set; else ``data.train_manifest`` filtered by its
    ``split`` field when records carry one; else every file under ``data.folders``.
    """
    manifest = data.get(f"{split}_manifest") or data.get("train_manifest")
    if manifest:
        records = read_manifest(resolve_path(manifest))
        # A manifest named for this split is used whole; the train manifest is filtered for
        # training too, or its valid/test records would be trained on.
        dedicated = split != "train" and data.get(f"{split}_manifest")
        if any("split" in r for r in records) and not dedicated:
            records = [r for r in records if r.get("split", "train") == split]
    elif data.get("folders"):
        records, failures = index_folders([resolve_path(f) for f in data.folders])
        if failures:
            logger.warning("%d unreadable files skipped under %s", len(failures),
                           list(data.folders))
    else:
        raise ValueError("cfg.data needs train_manifest (JSONL) or folders to index")
    if not records:
        raise ValueError(f"no '{split}' records in the configured data ({manifest or 'folders'})")
    return records


def build_datasets(cfg: DictConfig) -> tuple[Dataset, Dataset | None]:
    """``(train, val)`` paired datasets from ``cfg.data`` (val is None when ``val_items`` is 0).

    ``data.length`` sets the virtual epoch size of the training set (random crops drawn per
    ``(seed, epoch, index)``); validation uses fixed centre crops of ``val_items`` items.
    """
    data = cfg.data
    common: dict[str, Any] = {
        "sample_rate": int(cfg.get("audio", {}).get("sample_rate", 48000)),
        "chain_config": _chain_config(data.get("chain")),
        "noise": _optional_path(data.get("noise_manifest")),
        "rirs": _optional_path(data.get("rir_manifest")),
        "min_bandwidth_hz": float(data.get("min_bandwidth_hz", 0.0)),
    }
    seed = int(cfg.get("seed", 0))
    train_records, valid_records = split_records(cfg)
    train = PairedSpeechDataset(
        train_records, float(data.segment_seconds), seed=seed,
        length=data.get("length"), **common,
    )
    val = None
    if int(data.get("val_items", 0)) > 0:
        val = PairedSpeechDataset(
            valid_records,
            float(data.get("val_segment_seconds") or data.segment_seconds),
            seed=seed + 1, length=int(data.val_items), validation=True, **common,
        )
    return train, val


def split_records(cfg: DictConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, valid)`` clean-speech records per ``cfg.data``.

    With ``data.holdout`` set and no validation split in the data (no ``valid_manifest``, no
    record with ``split: valid``), the validation files are held out of the training files
    (``hireslm.training.small_data.holdout_split``). Validation files that are also training
    files are reported, and refused when ``train.early_stopping`` would stop on them.
    """
    data = cfg.data
    train = load_records(data, "train")
    holdout = float(data.get("holdout") or 0)
    if holdout > 0 and not _has_valid_split(data):
        train, valid = holdout_split(train, holdout)
        logger.info("data.holdout: %d files for validation, %d for training",
                    len(valid), len(train))
        return train, valid
    # Without a manifest both splits are every file under data.folders: index them once.
    from_folders = not (data.get("valid_manifest") or data.get("train_manifest"))
    valid = list(train) if from_folders else load_records(data, "valid")
    shared = {str(r["path"]) for r in train} & {str(r["path"]) for r in valid}
    if shared:
        message = (f"{len(shared)} of {len(valid)} validation files are training files: "
                   "validation then measures memorisation; set data.holdout or "
                   "data.valid_manifest")
        if EarlyStopping.from_config(cfg.get("train", {}).get("early_stopping")) is not None:
            raise ValueError(f"train.early_stopping: {message}")
        logger.warning(message)
    return train, valid


def _has_valid_split(data: DictConfig) -> bool:
    if data.get("valid_manifest"):
        return True
    manifest = data.get("train_manifest")
    return bool(manifest) and any(
        r.get("split") == "valid" for r in read_manifest(resolve_path(manifest)))


def make_loader(dataset: Dataset, data: DictConfig, batch_size: int,
                shuffle: bool) -> DataLoader:
    """A loader over ``dataset`` with ``data.num_workers``; accelerate shards it later."""
    workers = int(data.get("num_workers", 0))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        num_workers=workers,
        # Workers are recreated each epoch so they see the dataset's new epoch (set_epoch).
        persistent_workers=False,
        pin_memory=bool(data.get("pin_memory", False)),
    )


def data_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """What the model was trained on, for ``meta.json``: sources and a hash of the manifest."""
    data = cfg.data
    info: dict[str, Any] = {"segment_seconds": float(data.segment_seconds)}
    manifest = data.get("train_manifest")
    if manifest:
        path = resolve_path(manifest)
        info["manifest"] = str(path)
        info["manifest_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        info["folders"] = [str(f) for f in data.get("folders", [])]
    chain = data.get("chain")
    if chain is not None:
        text = json.dumps(_chain_config(chain), sort_keys=True, default=str)
        info["chain_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return info


def _optional_path(path: str | None) -> Path | None:
    return resolve_path(path) if path else None


def _chain_config(chain: Any) -> Any:
    """The degradation chain as a plain mapping (a YAML path is loaded with its ``_base_``)."""
    if chain is None:
        return None
    if isinstance(chain, str):
        return OmegaConf.to_container(load_config(resolve_path(chain)), resolve=True)
    return OmegaConf.to_container(chain, resolve=True) if OmegaConf.is_config(chain) else chain

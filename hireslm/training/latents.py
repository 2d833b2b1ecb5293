"""VAE latents for the DiT stage: encoding on the fly, and a precomputed latent cache.

The cache is a folder of ``shard_XXXXX.safetensors`` files (``clean`` and ``degraded``:
``(N, C, L)`` float32 latents, already multiplied by the VAE's latent scale) and
``index.json`` naming the VAE (and recovery) weights they came from, so a DiT never trains
on latents of different models by mistake. ``index.json`` is written last: a cache without
it is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hireslm.audio import LogMelSpectrogram
from hireslm.fileio import atomic_path, write_json_atomic
from hireslm.release import read_meta

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"


@torch.no_grad()
def encode_pair(vae: nn.Module, mel: LogMelSpectrogram, batch: dict[str, torch.Tensor],
                scale: float, recovery: nn.Module | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Waves ``{"clean", "degraded": (B, 1, S)}`` -> scaled latent means ``(B, C, L)`` each.

    The posterior mean (not a sample) is used so the same audio always gives the same latent;
    the pipeline encodes its condition the same way, after the optional ``recovery`` model
    (applied to the degraded mel only).
    """
    clean, degraded = mel(batch["clean"]), mel(batch["degraded"])
    if recovery is not None:
        degraded = recovery(degraded).float()
    z = vae.encode(torch.cat([clean, degraded], dim=0)).mode().float() * scale
    return z.chunk(2, dim=0)


def stage_identity(release_dir: str | os.PathLike, stage: str = "vae") -> str:
    """A stage's weights hash as recorded in its release (identifies who made latents)."""
    stages = read_meta(release_dir).get("stages", {})
    if stage in stages and stages[stage].get("weights_sha256"):
        return str(stages[stage]["weights_sha256"])
    digest = hashlib.sha256(Path(release_dir, f"{stage}.safetensors").read_bytes())
    return digest.hexdigest()


def vae_identity(release_dir: str | os.PathLike) -> str:
    """The VAE weights' hash recorded in a release."""
    return stage_identity(release_dir, "vae")


def latent_source_id(vae_release: str | os.PathLike,
                     recovery_release: str | os.PathLike | None = None) -> str:
    """Identifies the models that turn audio into DiT latents: VAE (+ recovery)."""
    vae_id = vae_identity(vae_release)
    if recovery_release is None:
        return vae_id
    return f"{vae_id}+recovery:{stage_identity(recovery_release, 'recovery')}"


@torch.no_grad()
def write_latent_cache(
    out_dir: str | os.PathLike,
    vae: nn.Module,
    mel: LogMelSpectrogram,
    dataset: Dataset,
    *,
    scale: float,
    source_id: str,
    passes: int = 1,
    batch_size: int = 16,
    shard_items: int = 4096,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    info: dict[str, Any] | None = None,
    recovery: nn.Module | None = None,
) -> Path:
    """Encode ``passes`` epochs of ``dataset`` (fresh random pairs per epoch) into shards.

    Returns the cache folder. Each shard is written atomically; ``index.json`` last.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_FILE).unlink(missing_ok=True)
    vae = vae.to(device).eval()
    mel = mel.to(device)
    if recovery is not None:
        recovery = recovery.to(device).eval()
    shards: list[dict[str, Any]] = []
    pending: dict[str, list[torch.Tensor]] = {"clean": [], "degraded": []}
    total = 0

    def flush() -> None:
        if not pending["clean"]:
            return
        tensors = {k: torch.cat(v).contiguous() for k, v in pending.items()}
        name = f"shard_{len(shards):05d}.safetensors"
        _save_atomic(tensors, out_dir / name)
        shards.append({"file": name, "items": int(tensors["clean"].shape[0])})
        pending["clean"].clear()
        pending["degraded"].clear()

    for epoch in range(passes):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            clean, degraded = encode_pair(vae, mel, batch, scale, recovery)
            pending["clean"].append(clean.cpu())
            pending["degraded"].append(degraded.cpu())
            total += clean.shape[0]
            if sum(x.shape[0] for x in pending["clean"]) >= shard_items:
                flush()
        logger.info("latent cache: pass %d/%d done, %d items", epoch + 1, passes, total)
    flush()
    if total == 0:
        raise ValueError("the dataset gave no items to cache")
    write_json_atomic(out_dir / INDEX_FILE, {
        "latent_scale": scale, "source_sha256": source_id, "num_items": total,
        "shards": shards, "passes": passes, **(info or {}),
    })
    return out_dir


class LatentCacheDataset(Dataset):
    """Items ``{"z_clean": (C, L), "z_cond": (C, L)}`` from a latent cache (held in memory).

    Args:
        cache_dir: folder written by ``write_latent_cache``.
        expect_source: when given, the cache must come from these models
            (``latent_source_id``: the VAE's weights hash, plus the recovery model's).
        crop_frames: random crops of this many latent frames (None: whole items).
        seed: crops are a function of ``(seed, epoch, index)``.
    """

    def __init__(self, cache_dir: str | os.PathLike, expect_source: str | None = None,
                 crop_frames: int | None = None, seed: int = 0) -> None:
        cache_dir = Path(cache_dir)
        index_path = cache_dir / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"{cache_dir}: no {INDEX_FILE}; the latent cache is missing "
                                    "or incomplete (run train/cache_latents.py)")
        self.index = json.loads(index_path.read_text())
        found = self.index["source_sha256"]
        if expect_source is not None and found != expect_source:
            raise ValueError(f"latent cache {cache_dir} was made with another VAE or recovery "
                             f"model ({found[:24]} != {expect_source[:24]})")
        shards = [load_file(str(cache_dir / s["file"])) for s in self.index["shards"]]
        self.clean = torch.cat([s["clean"] for s in shards])
        self.degraded = torch.cat([s["degraded"] for s in shards])
        self.crop_frames = crop_frames
        self.seed = seed
        self.epoch = 0
        if crop_frames is not None and crop_frames > self.clean.shape[-1]:
            raise ValueError(f"crop_frames {crop_frames} > cached length {self.clean.shape[-1]}")

    @property
    def latent_scale(self) -> float:
        return float(self.index["latent_scale"])

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clean, degraded = self.clean[index], self.degraded[index]
        if self.crop_frames is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, clean.shape[-1] - self.crop_frames + 1))
            clean = clean[:, start:start + self.crop_frames]
            degraded = degraded[:, start:start + self.crop_frames]
        return {"z_clean": clean, "z_cond": degraded}


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))



def cache_from_config(cfg: Any, out_dir: str | os.PathLike, passes: int = 1,
                      batch_size: int | None = None, device: str = "cpu") -> Path:
    """Cache latents of ``cfg.data``'s training pairs with the VAE in ``cfg.dit.vae_release``."""
    from hireslm.audio import AudioConfig
    from hireslm.release import load_release_config, load_stage
    from hireslm.training.data import build_datasets, data_fingerprint, resolve_path
    from hireslm.training.settings import TrainSettings

    release = resolve_path(cfg.dit.vae_release)
    recovery_release = cfg.dit.get("recovery_release")
    recovery_release = resolve_path(recovery_release) if recovery_release else None
    recovery = (load_stage(recovery_release, "recovery", device=device)
                if recovery_release else None)
    vae = load_stage(release, "vae", device=device)
    scale = float(load_release_config(release).vae.latent_scale)
    audio = AudioConfig.from_dict(dict(cfg.get("audio", {})))
    train_set, _ = build_datasets(cfg)
    return write_latent_cache(
        out_dir, vae, LogMelSpectrogram(audio), train_set, scale=scale,
        source_id=latent_source_id(release, recovery_release), passes=passes, recovery=recovery,
        batch_size=batch_size or TrainSettings.from_dict(cfg.train).batch_size,
        num_workers=int(cfg.data.get("num_workers", 0)), device=device,
        info={"vae_release": str(release), "data": data_fingerprint(cfg)},
    )

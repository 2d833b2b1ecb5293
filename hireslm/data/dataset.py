"""Paired training data made on the fly: a clean 48 kHz crop and its degraded copy.

Every item is a pure function of ``(seed, epoch, index)``: the random generator is built from
those numbers alone, so items are reproducible and identical whatever the number of
DataLoader workers, and workers share no mutable state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from hireslm.audio import (
    NonFiniteAudioError,
    UnreadableAudioError,
    measure_loudness,
    normalize_loudness,
    resample,
)
from hireslm.data.chain import DegradationChain
from hireslm.data.manifest import filter_records, read_manifest

# A crop quieter than this is mostly pause; training tries another crop instead.
ACTIVE_LUFS = -55.0
# Headroom after loudness normalisation so the clean target never clips.
PEAK_LIMIT = 0.99
# Extra source samples read on each side of a crop so the resampler's filter sees real
# signal, not zeros, at the crop's edges.
RESAMPLE_MARGIN_SECONDS = 0.02

Records = Sequence[Mapping[str, Any]] | str | os.PathLike


def _as_records(source: Records) -> list[dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        return read_manifest(source)
    return [dict(r) for r in source]


def _paths_of(source: Records | None) -> list[str]:
    return [str(r["path"]) for r in _as_records(source)] if source is not None else []


def read_segment(
    path: str, start: int, frames: int, expected_rate: int | None = None
) -> np.ndarray:
    """Frames ``[start, start + frames)`` of a file as ``(C, frames)`` float32, seeking
    rather than decoding the whole file; the parts outside the file are zeros.

    Raises:
        UnreadableAudioError (also when the file's rate is not ``expected_rate``, i.e. the
        manifest is stale), NonFiniteAudioError.
    """
    try:
        with sf.SoundFile(path) as handle:
            channels, total = handle.channels, handle.frames
            if expected_rate is not None and handle.samplerate != expected_rate:
                raise UnreadableAudioError(
                    f"{path}: manifest says {expected_rate} Hz but the file is "
                    f"{handle.samplerate} Hz; re-index it")
            out = np.zeros((channels, frames), dtype=np.float32)
            lo, hi = max(start, 0), min(start + frames, total)
            if hi > lo:
                handle.seek(lo)
                data = handle.read(hi - lo, dtype="float32", always_2d=True)
                out[:, lo - start:lo - start + data.shape[0]] = data.T
    except UnreadableAudioError:
        raise
    except Exception as exc:  # libsndfile raises several types for corrupt files
        raise UnreadableAudioError(f"{path}: cannot decode audio ({exc})") from exc
    if not np.isfinite(out).all():
        raise NonFiniteAudioError(f"{path}: NaN or infinite samples near frame {start}")
    return out


class PairedSpeechDataset(Dataset):
    """Clean/degraded pairs of fixed length ``S = round(segment_seconds * sample_rate)``.

    Items are ``{"clean": (C, S) float32 tensor, "degraded": (C, S) float32 tensor}`` with
    ``C = 1`` when ``mono`` (channels averaged), else the file's channel count (collating
    then needs files with equal channel counts). ``torch.utils.data.default_collate`` stacks
    them to ``(B, C, S)``.

    Clean: a crop of a manifest file, resampled to ``sample_rate``, normalised to a random
    loudness ``target_lufs +- lufs_spread_db`` (BS.1770, measured on the crop), then scaled
    down if its peak exceeds 0.99. Files shorter than ``S`` are zero-padded (placed at a random
    offset in training, at 0 in validation). Degraded: the degradation chain applied to the
    clean crop (the clean crop itself when ``chain_config`` is None).

    Training mode draws files with probability proportional to duration and random crops;
    ``set_epoch`` changes the draw. Validation mode (``validation=True``) maps index ``i`` to
    file ``i % n_files`` with its centre crop and ignores the epoch, so every evaluation sees
    the same pairs.

    Args:
        clean: manifest records or a manifest path (clean speech).
        segment_seconds: crop length in seconds.
        sample_rate: output rate (Hz).
        chain_config: mapping for ``DegradationChain.from_config``; None for no degradation.
        noise, rirs, babble: manifest records or paths of noise, room impulse response and
            babble-talker (speech) files for the chain; without them it synthesises noise and
            rooms and never picks babble.
        min_bandwidth_hz: clean files with smaller measured ``bandwidth_hz`` are dropped.
        seed: base seed of every item.
        length: virtual epoch size; default the number of clean files.
        mono: average channels to one.
        target_lufs, lufs_spread_db: loudness target and the half-width of its uniform jitter.
        validation: fixed crops (see above).
        max_tries: training crops tried per item to find one louder than ``ACTIVE_LUFS``.
        return_info: also return ``"path"`` and ``"applied"`` (JSON of the chain's record).
    """

    def __init__(
        self,
        clean: Records,
        segment_seconds: float,
        *,
        sample_rate: int = 48000,
        chain_config: Mapping[str, Any] | None = None,
        noise: Records | None = None,
        rirs: Records | None = None,
        babble: Records | None = None,
        min_bandwidth_hz: float = 0.0,
        seed: int = 0,
        length: int | None = None,
        mono: bool = True,
        target_lufs: float = -20.0,
        lufs_spread_db: float = 3.0,
        validation: bool = False,
        max_tries: int = 4,
        return_info: bool = False,
    ) -> None:
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        records = _as_records(clean)
        if min_bandwidth_hz > 0:
            if any("bandwidth_hz" not in r for r in records):
                raise ValueError("min_bandwidth_hz needs records with 'bandwidth_hz'; "
                                 "rebuild the manifest with 'hireslm data index'")
            records = filter_records(records, min_bandwidth_hz=min_bandwidth_hz)
        records = [r for r in records if int(r["frames"]) > 0]
        if not records:
            raise ValueError(f"no clean files left (min_bandwidth_hz={min_bandwidth_hz})")
        # numpy arrays, not lists of dicts: worker processes then share the pages instead of
        # copying them as reference counts change.
        self._paths = np.array([str(r["path"]) for r in records])
        self._frames = np.array([int(r["frames"]) for r in records], dtype=np.int64)
        self._rates = np.array([int(r["sample_rate"]) for r in records], dtype=np.int64)
        durations = self._frames / self._rates
        self._cumulative = np.cumsum(durations) / durations.sum()
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.seed = int(seed)
        self.length = int(length) if length is not None else len(records)
        if self.length <= 0:
            raise ValueError(f"length must be positive, got {self.length}")
        self.mono = mono
        self.target_lufs = float(target_lufs)
        self.lufs_spread_db = float(lufs_spread_db)
        self.validation = validation
        self.max_tries = max(1, int(max_tries))
        self.return_info = return_info
        self.epoch = 0
        self.chain = None
        if chain_config is not None:
            self.chain = DegradationChain.from_config(
                chain_config, noise_files=_paths_of(noise), rir_files=_paths_of(rirs),
                babble_files=_paths_of(babble),
            )

    @property
    def num_files(self) -> int:
        """Number of clean files after filtering."""
        return len(self._paths)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Draw different training crops in each epoch (set before creating the iterator;
        persistent workers keep the epoch they were started with)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        epoch = 0 if self.validation else self.epoch
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for length {self.length}")
        rng = self._rng(index)
        if self.validation:
            file_index = index % self.num_files
            clean = self._crop(file_index, rng, centre=True)
        else:
            for _ in range(self.max_tries):
                file_index = int(np.searchsorted(self._cumulative, rng.random(), side="right"))
                file_index = min(file_index, self.num_files - 1)
                clean = self._crop(file_index, rng, centre=False)
                if measure_loudness(clean, self.sample_rate) > ACTIVE_LUFS:
                    break
        clean = self._normalise(clean, rng)
        applied: list[dict[str, Any]] = []
        if self.chain is not None:
            degraded, applied = self.chain(clean.copy(), self.sample_rate, rng)
            degraded = np.asarray(degraded, dtype=np.float32)
            if degraded.shape != clean.shape:
                raise RuntimeError(f"degradation chain changed shape {clean.shape} -> "
                                   f"{degraded.shape}")
        else:
            degraded = clean.copy()
        item: dict[str, Any] = {
            "clean": torch.from_numpy(np.ascontiguousarray(clean)),
            "degraded": torch.from_numpy(np.ascontiguousarray(degraded)),
        }
        if self.return_info:
            item["path"] = str(self._paths[file_index])
            item["applied"] = json.dumps(applied, default=float)
        return item

    def _crop(self, file_index: int, rng: np.random.Generator, *, centre: bool) -> np.ndarray:
        """A ``(C, S)`` float32 crop at ``self.sample_rate`` (C = 1 when mono)."""
        path = str(self._paths[file_index])
        sr_in = int(self._rates[file_index])
        frames_in = int(self._frames[file_index])
        segment = self.segment_samples
        length_out = int(round(frames_in * self.sample_rate / sr_in))
        if length_out >= segment:
            start_out = (length_out - segment) // 2 if centre else int(
                rng.integers(0, length_out - segment + 1))
            offset = 0
        else:
            start_out = 0
            offset = 0 if centre else int(rng.integers(0, segment - length_out + 1))
        start_in = int(math.floor(start_out * sr_in / self.sample_rate))
        need_in = int(math.ceil(segment * sr_in / self.sample_rate))
        margin = int(math.ceil(RESAMPLE_MARGIN_SECONDS * sr_in)) if sr_in != self.sample_rate else 0
        raw = read_segment(path, start_in - margin, need_in + 2 * margin, sr_in)
        if self.mono:
            raw = raw.mean(axis=0, keepdims=True)
        wave = resample(raw, sr_in, self.sample_rate)
        skip = int(round(margin * self.sample_rate / sr_in))
        # Sub-sample alignment of start_in to start_out differs by < 1 output sample.
        wave = wave[:, skip:skip + segment]
        # Zero everything past the file's end (the resampler rings slightly into the padding).
        valid = max(0, min(segment, length_out - start_out))
        out = np.zeros((wave.shape[0], segment), dtype=np.float32)
        out[:, offset:offset + valid] = wave[:, :valid]
        return out

    def _normalise(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = self.target_lufs
        if self.lufs_spread_db > 0:
            target += float(rng.uniform(-self.lufs_spread_db, self.lufs_spread_db))
        wave, _ = normalize_loudness(wave, self.sample_rate, target)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > PEAK_LIMIT:
            wave = wave * np.float32(PEAK_LIMIT / peak)
        return wave.astype(np.float32, copy=False)


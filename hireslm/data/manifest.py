"""Data manifests: one JSON record per audio file, one record per line (JSONL).

A record holds ``path`` (absolute), ``duration`` (s), ``sample_rate``, ``channels``,
``frames``, ``bandwidth_hz`` (measured, see ``hireslm.audio.estimate_bandwidth``),
``loudness_lufs`` (BS.1770 integrated), and optionally ``speaker`` and ``split``.
Clean speech, noise and room impulse responses each get their own manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from hireslm.audio import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnreadableAudioError,
    audio_info,
    estimate_bandwidth,
    measure_loudness,
)
from hireslm.audio.av_io import AvInfo
from hireslm.audio.io import AUDIO_EXTENSIONS
from hireslm.audiotree import scan_audio
from hireslm.fileio import atomic_path

logger = logging.getLogger(__name__)

REQUIRED_KEYS: tuple[str, ...] = ("path", "duration", "sample_rate", "channels", "frames")
# Long files are measured on evenly spaced blocks; bandwidth and loudness of a few minutes
# of speech are as good as of hours, and memory stays bounded.
ANALYSIS_BLOCK_SECONDS = 30.0
MAX_ANALYSIS_SECONDS = 600.0
# The folders index_folders announced last: training reads its train and validation records
# from the same data.folders, one after the other, and the "indexing" line should show once.
_last_announced: dict[str, tuple[Any, ...]] = {}


def _no_speaker(path: Path) -> str | None:
    return None


def _parent(path: Path) -> str | None:
    return path.parent.name


def _grandparent(path: Path) -> str | None:
    return path.parent.parent.name


def _stem_prefix(path: Path) -> str | None:
    return path.stem.split("_", 1)[0]


# How to read a speaker id from a file's path, by name (``--speaker-from``).
SPEAKER_RULES: dict[str, Callable[[Path], str | None]] = {
    "none": _no_speaker,
    "parent": _parent,
    "grandparent": _grandparent,
    "stem-prefix": _stem_prefix,
}


def find_audio_files(
    dirs: Sequence[str | os.PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Path]:
    """All files under ``dirs`` (``hireslm.audiotree`` rules) whose suffix is in ``extensions``,
    resolved and sorted; what the walk could not take is logged.

    Raises:
        FileNotFoundError: a directory does not exist.
    """
    wanted = {ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions}
    found: set[Path] = set()
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        tree = scan_audio(root, extensions=wanted)
        for problem in tree.problems:
            logger.warning("%s: %s", problem.path, problem.reason)
        found.update((root / rel).resolve() for rel in tree.files)
    return sorted(found)


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """Measure one file and return its manifest record (without speaker/split).

    Raises:
        UnreadableAudioError (also for formats only FFmpeg reads: crops need exact seeks),
        EmptyAudioError, NonFiniteAudioError.
    """
    path = Path(path).resolve()
    info = audio_info(path)
    if isinstance(info, AvInfo):
        raise UnreadableAudioError(
            f"{path}: {info.subtype} is read through FFmpeg, which cannot seek to a sample, and "
            "training reads random crops: convert it to FLAC or WAV first")
    sample_rate, channels = int(info.samplerate), int(info.channels)
    if info.frames <= 0:
        raise EmptyAudioError(f"{path}: no samples")
    wave, frames = _read_for_analysis(path, sample_rate)
    if frames <= 0 or wave.size == 0:
        raise EmptyAudioError(f"{path}: no samples")
    loudness = measure_loudness(wave, sample_rate)
    return {
        "path": str(path),
        "duration": round(frames / sample_rate, 6),
        "sample_rate": sample_rate,
        "channels": channels,
        "frames": int(frames),
        "bandwidth_hz": round(estimate_bandwidth(wave, sample_rate), 1),
        "loudness_lufs": round(loudness, 2) if math.isfinite(loudness) else None,
    }


def _read_for_analysis(path: Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """Decode the whole file (checking every sample is finite) but keep at most
    ``MAX_ANALYSIS_SECONDS`` of evenly spaced blocks. Returns ``((C, n) float32, total frames)``.
    """
    block = max(1, int(ANALYSIS_BLOCK_SECONDS * sample_rate))
    try:
        with sf.SoundFile(str(path)) as handle:
            n_blocks = max(1, math.ceil(handle.frames / block))
            stride = max(1, math.ceil(n_blocks / (MAX_ANALYSIS_SECONDS / ANALYSIS_BLOCK_SECONDS)))
            kept: list[np.ndarray] = []
            frames = 0
            for i, data in enumerate(handle.blocks(blocksize=block, dtype="float32",
                                                   always_2d=True)):
                if not np.isfinite(data).all():
                    bad = int((~np.isfinite(data)).sum())
                    raise NonFiniteAudioError(
                        f"{path}: {bad} NaN or infinite samples near {frames / sample_rate:.1f} s"
                    )
                frames += data.shape[0]
                if i % stride == 0:
                    kept.append(data.T)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile raises several types for corrupt files
        raise UnreadableAudioError(f"{path}: cannot decode audio ({exc})") from exc
    wave = np.concatenate(kept, axis=1) if kept else np.zeros((1, 0), np.float32)
    return np.ascontiguousarray(wave), frames


def _describe_or_error(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return describe_file(path), None
    except AudioError as exc:
        return None, str(exc)
    except Exception as exc:  # one odd file must never stop an index of thousands
        return None, f"{path}: {type(exc).__name__}: {exc}"


def index_files(
    paths: Sequence[str | os.PathLike],
    *,
    workers: int = 1,
    speakers: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Measure ``paths`` in a process pool.

    Args:
        speakers: optional map from absolute path (str) to speaker id.
    Returns:
        (records sorted by path, failures as ``{"path", "error"}``), unreadable, empty and
        non-finite files are reported in failures, never raised.
    """
    names = [str(Path(p).resolve()) for p in paths]
    if workers <= 1 or len(names) < 2:
        results = [_describe_or_error(p) for p in names]
    else:
        chunksize = max(1, len(names) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_describe_or_error, names, chunksize=chunksize))
    records, failures = [], []
    for name, (record, error) in zip(names, results, strict=True):
        if record is None:
            failures.append({"path": name, "error": error or "unknown error"})
            logger.warning("skipping %s", error)
            continue
        if speakers is not None and name in speakers:
            record["speaker"] = speakers[name]
        records.append(record)
    records.sort(key=lambda r: r["path"])
    return records, failures


def index_folders(
    dirs: Sequence[str | os.PathLike],
    *,
    workers: int = 1,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    speaker_from: str | Callable[[Path], str | None] = "none",
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Index every audio file under ``dirs`` (recursively, in parallel).

    Args:
        speaker_from: a key of ``SPEAKER_RULES`` (``"parent"``: the file's folder, as in
            VCTK/EARS; ``"grandparent"``: LibriTTS-R's speaker/chapter/file; ``"stem-prefix"``:
            the file name up to its first ``_``, as in DAPS ``f1_script1_clean.wav``;
            ``"none"``), or a function from path to speaker id (or None).
    Returns:
        (records, failures) as in ``index_files``.
    """
    if callable(speaker_from):
        speaker_of = speaker_from
    elif speaker_from in SPEAKER_RULES:
        speaker_of = SPEAKER_RULES[speaker_from]
    else:
        raise ValueError(f"speaker_from must be one of {sorted(SPEAKER_RULES)} or a function, "
                         f"got {speaker_from!r}")
    paths = find_audio_files(dirs, extensions)
    speakers = {str(p): s for p in paths if (s := speaker_of(p)) is not None}
    announced = (tuple(str(Path(d).resolve()) for d in dirs), len(paths))
    again = _last_announced.get("folders") == announced
    _last_announced["folders"] = announced
    logger.log(logging.DEBUG if again else logging.INFO,
               "indexing %d files from %d folder(s) with %d worker(s)%s", len(paths), len(dirs),
               workers, " again" if again else "")
    return index_files(paths, workers=workers, speakers=speakers)


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL manifest; blank lines are skipped.

    Raises:
        FileNotFoundError; ValueError naming the file and line for malformed JSON, a line that
        is not an object, or a record missing one of ``REQUIRED_KEYS``.
    """
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: malformed JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, "
                                 f"got {type(record).__name__}")
            missing = [key for key in REQUIRED_KEYS if key not in record]
            if missing:
                raise ValueError(f"{path}:{number}: record lacks {', '.join(missing)}")
            records.append(record)
    return records


def write_manifest(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write records as JSONL atomically (temp file beside it, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(dict(record), ensure_ascii=False, allow_nan=False))
            handle.write("\n")
    return Path(path)


def filter_records(
    records: Iterable[Mapping[str, Any]],
    *,
    min_bandwidth_hz: float | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    split: str | Sequence[str] | None = None,
    speakers: Sequence[str] | None = None,
    exclude_speakers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Records that pass every given condition (None = no condition).

    A record without ``bandwidth_hz`` fails a bandwidth condition; one without ``split`` or
    ``speaker`` fails a split or speaker condition.
    """
    splits = {split} if isinstance(split, str) else set(split) if split is not None else None
    keep_speakers = set(speakers) if speakers is not None else None
    drop_speakers = set(exclude_speakers or ())
    out = []
    for record in records:
        if min_bandwidth_hz is not None and (record.get("bandwidth_hz") or 0.0) < min_bandwidth_hz:
            continue
        if min_duration is not None and record["duration"] < min_duration:
            continue
        if max_duration is not None and record["duration"] > max_duration:
            continue
        if splits is not None and record.get("split") not in splits:
            continue
        speaker = record.get("speaker")
        if keep_speakers is not None and speaker not in keep_speakers:
            continue
        if speaker is not None and speaker in drop_speakers:
            continue
        out.append(dict(record))
    return out


def file_key(path: str | os.PathLike) -> str:
    """``<parent folder>/<file name>``: a file's identity that survives moving the corpus."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def assign_splits(
    records: Iterable[Mapping[str, Any]],
    fractions: Mapping[str, float] | None = None,
    *,
    by: str = "speaker",
    salt: str = "hireslm",
) -> list[dict[str, Any]]:
    """Copy records with a deterministic ``split`` field.

    The split depends only on a hash of the key, never on the order or number of records,
    so adding files never moves old ones between splits.

    Args:
        fractions: split name -> share (normalised); default train 0.9, valid 0.05, test 0.05.
        by: ``"speaker"`` (whole speakers per split; records without a speaker fall back to
            the file) or ``"file"`` (key: parent folder name + file name, portable across
            machines).
    """
    if by not in ("speaker", "file"):
        raise ValueError(f"by must be 'speaker' or 'file', got {by!r}")
    fractions = dict(fractions or {"train": 0.9, "valid": 0.05, "test": 0.05})
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError(f"split fractions must be non-negative with a positive sum: {fractions}")
    names = list(fractions)
    edges = np.cumsum([fractions[n] / total for n in names])
    out = []
    for record in records:
        record = dict(record)
        speaker = record.get("speaker")
        if by == "speaker" and speaker is not None:
            key = f"speaker:{speaker}"
        else:
            key = f"file:{file_key(record['path'])}"
        digest = hashlib.sha1(f"{salt}|{key}".encode()).hexdigest()
        u = int(digest[:12], 16) / float(16**12)
        record["split"] = names[min(int(np.searchsorted(edges, u, side="right")), len(names) - 1)]
        out.append(record)
    return out


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, hours, rates, speakers and a bandwidth histogram (4 kHz bins) of records."""
    bins = [0, 4000, 8000, 12000, 16000, 20000, float("inf")]
    labels = ["<4k", "4-8k", "8-12k", "12-16k", "16-20k", ">=20k"]
    histogram = dict.fromkeys(labels, 0)
    for record in records:
        bandwidth = record.get("bandwidth_hz")
        if bandwidth is None:
            continue
        for label, low, high in zip(labels, bins[:-1], bins[1:], strict=True):
            if low <= bandwidth < high:
                histogram[label] += 1
    rates: dict[str, int] = {}
    for record in records:
        rates[str(record["sample_rate"])] = rates.get(str(record["sample_rate"]), 0) + 1
    hours = sum(float(r["duration"]) for r in records) / 3600.0
    return {
        "files": len(records),
        "hours": round(hours, 4),
        "speakers": len({r["speaker"] for r in records if r.get("speaker") is not None}),
        "sample_rates": dict(sorted(rates.items(), key=lambda kv: int(kv[0]))),
        "bandwidth_histogram": histogram,
    }

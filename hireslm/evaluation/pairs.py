"""Pairing restored files with their references, and loading a pair for scoring.

Files pair by relative path, whatever their audio extension: ``ref/a/b.flac`` pairs with
``est/a/b.wav``. Where two references share a stem (``b.flac``, ``b.mp3``) each keeps its
full name, so ``est/a/b.flac.wav`` pairs with ``ref/a/b.flac``: the naming ``hireslm
restore`` and ``hireslm degrade`` use for such files (``hireslm.audiotree.mirror_names``).
A reference that no file pairs with this way pairs with the file of its own name, if any:
a folder scored against itself (or a copy), ``b.flac`` with ``b.flac``, ``b.mp3`` with
``b.mp3``.
Alignment is never searched: a restored file must be sample-aligned with its reference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hireslm.audio.errors import AudioError
from hireslm.audio.io import load_audio
from hireslm.audio.resample import resample
from hireslm.audiotree import output_key, reference_keys, scan_audio

CHANNEL_MODES = ("mix", "each")
ALL = "all"  # the group of every file when there is no grouping
TOP = "(top)"  # the group of files directly in the reference folder, grouped by folder


class LengthMismatchError(AudioError):
    """A restored file and its reference differ in length by more than the tolerance."""


class ChannelMismatchError(AudioError):
    """Per-channel scoring of files whose channel counts cannot be paired."""


@dataclass(frozen=True)
class Pair:
    """One reference and what it is compared with."""

    key: str  # relative path of the reference without its extension, posix
    group: str
    reference: Path
    estimate: Path | None  # None: no restored file found
    problem: str | None = None  # why the pair cannot be scored, besides a missing file
    degraded: Path | None = None  # the degraded input, whose cutoff lsd_bwe splits at


@dataclass
class Matching:
    pairs: list[Pair]
    unmatched: list[Path] = field(default_factory=list)  # restored files with no reference


@dataclass
class LoadedPair:
    """A pair at the evaluation rate, equal length.

    ``reference``, ``estimate``: ``(C, N)`` float32; ``C = 1`` when channels are mixed.
    """

    reference: np.ndarray
    estimate: np.ndarray
    sample_rate: int
    trimmed: int  # samples cut from the longer file (within the tolerance)


def find_audio(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Audio files under ``root`` as paths relative to it, sorted (``hireslm.audiotree``
    rules; ``exclude`` trees skipped)."""
    return scan_audio(root, exclude).files


def match_tree(
    ref_dir: Path, est_dir: Path, group: str | None = None, exclude: Iterable[Path] = ()
) -> Matching:
    """Pair every reference under ``ref_dir`` with its file under ``est_dir``.

    ``group`` names the group of every pair; ``None`` groups by the reference's first
    sub-folder (``TOP`` for files directly in ``ref_dir``).
    """
    exclude = list(exclude)
    refs = reference_keys(find_audio(ref_dir, exclude))
    found_here = find_audio(est_dir, exclude)
    estimates: dict[str, list[Path]] = defaultdict(list)
    for rel in found_here:
        estimates[output_key(rel)].append(rel)
    same_name = set(found_here)
    pairs: list[Pair] = []
    used: set[Path] = set()
    for key, rel in sorted(refs.items()):
        found = estimates.get(key, [])
        if not found and rel in same_name:
            found = [rel]  # the tree itself, or a copy: take1.mp3 and take1.wav each
        used.update(found)
        pair_group = group if group is not None else (
            rel.parts[0] if len(rel.parts) > 1 else TOP)
        problem = None
        if len(found) > 1:
            names = ", ".join(p.as_posix() for p in found)
            problem = f"several restored files match {rel.as_posix()}: {names}"
        pairs.append(Pair(key, pair_group, ref_dir / rel,
                          est_dir / found[0] if found else None, problem))
    unmatched = [est_dir / p for _, paths in sorted(estimates.items()) for p in paths
                 if p not in used]
    return Matching(pairs, unmatched)


def match_files(
    ref_dir: Path,
    est_dir: Path,
    *,
    kinds: bool = False,
    group_by_folder: bool = False,
    exclude: Iterable[Path] = (),
) -> Matching:
    """Pairs for a whole evaluation.

    Args:
        kinds: ``est_dir`` holds one sub-folder per degradation kind, each mirroring
            ``ref_dir``; every kind is a group. ``ref_dir`` itself is skipped when it is one of
            those sub-folders (a test set's ``clean/``): references against themselves would
            only inflate the ``all`` row.
        group_by_folder: group by the references' first sub-folder (else one group, ``ALL``).
        exclude: folders never searched (the report folder).
    """
    ref_dir, est_dir = Path(ref_dir), Path(est_dir)
    for folder in (ref_dir, est_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a directory")
    exclude = [Path(p) for p in exclude]
    if not kinds:
        return match_tree(ref_dir, est_dir, None if group_by_folder else ALL, exclude)
    excluded = {p.resolve() for p in exclude} | {ref_dir.resolve()}
    folders = [d for d in sorted(est_dir.iterdir())
               if d.is_dir() and not d.name.startswith(".") and d.resolve() not in excluded
               and find_audio(d, exclude)]
    if not folders:
        raise FileNotFoundError(f"{est_dir}: no sub-folder with audio files (one per kind)")
    matching = Matching([])
    for folder in folders:
        part = match_tree(ref_dir, folder, folder.name, exclude)
        matching.pairs.extend(part.pairs)
        matching.unmatched.extend(part.unmatched)
    return matching


def to_channels(wave: np.ndarray, mode: str) -> np.ndarray:
    """``(C, N)`` -> ``(1, N)`` channel mean (``mix``) or unchanged (``each``)."""
    if mode not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {mode!r}")
    return wave.mean(axis=0, keepdims=True) if mode == "mix" else wave


def load_pair(
    reference: Path,
    estimate: Path,
    *,
    sample_rate: int = 48000,
    channels: str = "mix",
    length_tolerance_s: float = 0.01,
) -> LoadedPair:
    """Load both files at ``sample_rate`` with the channel policy and the length policy.

    Channels: ``mix`` averages each file's channels to mono; ``each`` pairs channel i with
    channel i (a mono file is paired with every channel of the other).
    Length: a difference up to ``length_tolerance_s`` (resampling rounding, codec padding) is
    trimmed from the longer file's end; a larger one raises, since a restoration must keep
    the input's exact duration.

    Raises:
        UnreadableAudioError, EmptyAudioError, NonFiniteAudioError: from ``load_audio``.
        LengthMismatchError, ChannelMismatchError.
    """
    waves = []
    for path in (reference, estimate):
        wave, rate = load_audio(path)
        waves.append(to_channels(resample(wave, rate, sample_rate), channels))
    ref, est = waves
    if ref.shape[0] != est.shape[0]:
        if min(ref.shape[0], est.shape[0]) != 1:
            raise ChannelMismatchError(
                f"{estimate}: {est.shape[0]} channels vs {ref.shape[0]} in the reference; "
                "per-channel scoring needs equal counts or a mono file (or use channels 'mix')"
            )
        count = max(ref.shape[0], est.shape[0])
        ref = np.broadcast_to(ref, (count, ref.shape[1]))
        est = np.broadcast_to(est, (count, est.shape[1]))
    difference = est.shape[1] - ref.shape[1]
    tolerance = int(round(length_tolerance_s * sample_rate))
    if abs(difference) > tolerance:
        longer = "longer" if difference > 0 else "shorter"
        raise LengthMismatchError(
            f"{estimate} is {abs(difference) / sample_rate * 1000:.1f} ms {longer} than its "
            f"reference {reference} ({est.shape[1]} vs {ref.shape[1]} samples at "
            f"{sample_rate} Hz; tolerance {length_tolerance_s * 1000:g} ms). Restored files "
            "must be sample-aligned with their references and of the same duration"
        )
    n = min(ref.shape[1], est.shape[1])
    return LoadedPair(np.ascontiguousarray(ref[:, :n]), np.ascontiguousarray(est[:, :n]),
                      sample_rate, abs(difference))

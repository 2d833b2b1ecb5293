"""What made each output, written into the file itself, and when a rerun may take it as done.

Every restored file carries a record of the release (its hash) and the settings that shaped
its audio, in the file's comment tag (WAV ``ICMT``, FLAC Vorbis comment), so it travels with
the file and needs no side file. On a rerun an existing output counts as done only when it
reads, holds the full length, and was made by this release with these settings. An empty,
unreadable or short file is redone; a whole file made otherwise (another release, other
``--steps``, or not by hireslm at all) is kept and reported, and ``--force`` redoes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

import hireslm
from hireslm.audio import audio_info
from hireslm.audio.errors import AudioError
from hireslm.audio.stream import output_length
from hireslm.options import RestoreOptions

TAG = "hireslm-restore "
OUTPUT_RATE = 48000


def make_provenance(release: str, options: RestoreOptions, *, subtype: str) -> dict[str, Any]:
    """The record an output carries: the release hash and every setting that shapes the audio.

    ``options`` are resolved (``RestorationPipeline.resolve``: the release's default steps and
    scheduler filled in), so "the release's default" and the same number explicitly match.
    """
    settings = {
        "steps": options.num_steps, "scheduler": options.scheduler,
        "strength": options.strength, "keep": options.keep, "seed": options.seed,
        "denoise": options.denoise, "atten_limit_db": options.atten_limit_db,
        "min_generated_hz": options.min_generated_hz,
        "chunk_seconds": options.chunk_seconds, "overlap_seconds": options.overlap_seconds,
        "precision": options.precision, "target_lufs": options.target_lufs,
        "subtype": subtype,
    }
    return {"release": release, "settings": settings, "hireslm": hireslm.__version__}


def provenance_comment(provenance: dict[str, Any]) -> str:
    return TAG + json.dumps(provenance, sort_keys=True)


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The record in an output's comment tag; None when it has none or it is not ours."""
    try:
        with sf.SoundFile(str(path)) as handle:
            comment = handle.comment or ""
    except Exception:  # noqa: BLE001 - libsndfile raises several types for bad files
        return None
    if not comment.startswith(TAG):
        return None
    try:
        record = json.loads(comment[len(TAG):])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class ExistingOutput:
    """What is at an output path: ``missing``, ``done`` (take as is), ``redo`` (broken:
    replace it) or ``other`` (whole, but made otherwise: keep it unless forced)."""

    state: str
    reason: str | None = None


def inspect_output(input_path: Path, output_path: Path,
                   provenance: dict[str, Any]) -> ExistingOutput:
    """Decide whether ``output_path`` is the finished restoration of ``input_path``."""
    if not output_path.exists():
        return ExistingOutput("missing")
    if output_path.stat().st_size == 0:
        return ExistingOutput("redo", "an empty file was at the output name")
    try:
        info = audio_info(output_path)
    except AudioError:
        return ExistingOutput("redo", "the file at the output name is not readable audio")
    try:
        source = audio_info(input_path)
    except AudioError:
        return ExistingOutput("redo", "the input's header cannot be read")
    expected = output_length(source.frames, source.samplerate, OUTPUT_RATE)
    if (info.samplerate, info.channels, info.frames) != (OUTPUT_RATE, source.channels, expected):
        return ExistingOutput(
            "redo", f"the file at the output name holds {info.frames} frames x "
            f"{info.channels} channels at {info.samplerate} Hz, not {expected} x "
            f"{source.channels} at {OUTPUT_RATE} Hz")
    made = read_provenance(output_path)
    if made is None:
        return ExistingOutput("other", "the existing output has no hireslm record of what made "
                              "it (made elsewhere, or by an older hireslm); kept: --force "
                              "redoes it")
    differences = _differences(made, provenance)
    if differences:
        return ExistingOutput("other", f"the existing output was made with {differences}; "
                              "kept: --force redoes it")
    return ExistingOutput("done")


def _differences(made: dict[str, Any], wanted: dict[str, Any]) -> str:
    """``"release 1a2b.. (this run: 3c4d..), steps 8 (this run: 4)"``, or "" when equal."""
    found = []
    if made.get("release") != wanted["release"]:
        found.append(f"release {made.get('release')} (this run: {wanted['release']})")
    settings = made.get("settings") if isinstance(made.get("settings"), dict) else {}
    for key, value in wanted["settings"].items():
        if settings.get(key) != value:
            found.append(f"{key} {settings.get(key)} (this run: {value})")
    return ", ".join(found)

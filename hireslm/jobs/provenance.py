"""What made each output, written into the file itself, and when a rerun may take it as done.

Every restored file carries a record of the release (its hash) and the settings that shaped
its audio, and a fingerprint of the input it was made from (size, modification time, a
sha256 of its first and last MiB), in the file's comment tag (WAV ``ICMT``, FLAC Vorbis
comment), so it travels with the file and needs no side file.

Only a file that carries this tag is ever replaced without ``--force``: the tool can prove
it wrote it. On a rerun a tagged output counts as done when it reads, holds the full length,
was made by this release with these settings and from the input as it is now; a tagged
output that is short or unreadable past its header, or whose input has changed since, is
redone; one made by another release or with other settings is kept and reported. A file
without the tag, whatever its shape, is the user's (or an older hireslm's) and is kept;
only an empty (0-byte) file, which holds nothing to lose, is replaced. ``--force`` redoes
everything. An output tagged by an older hireslm, without the input's fingerprint, is done
when all else matches.
"""

from __future__ import annotations

import hashlib
import json
import os
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
# The input's head and tail this many bytes each are hashed (the whole file when it is no
# longer than twice this): a replaced recording differs there, and hours of audio need not
# be read again to know it.
FINGERPRINT_BYTES = 1 << 20


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
        "complete_band_hz": options.complete_band_hz, "repair": options.repair,
        "chunk_seconds": options.chunk_seconds, "overlap_seconds": options.overlap_seconds,
        "precision": options.precision, "target_lufs": options.target_lufs,
        "subtype": subtype,
    }
    return {"release": release, "settings": settings, "hireslm": hireslm.__version__}


def input_fingerprint(path: str | Path) -> dict[str, Any]:
    """What identifies the input an output was made from: ``{"size", "mtime_ns", "sha256"}``,
    the hash over the first and last ``FINGERPRINT_BYTES`` (the whole file when small).

    Raises:
        OSError: the input cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if stat.st_size <= 2 * FINGERPRINT_BYTES:
            for block in iter(lambda: handle.read(FINGERPRINT_BYTES), b""):
                digest.update(block)
        else:
            digest.update(handle.read(FINGERPRINT_BYTES))
            handle.seek(stat.st_size - FINGERPRINT_BYTES)
            digest.update(handle.read(FINGERPRINT_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def with_input(provenance: dict[str, Any], fingerprint: dict[str, Any] | None
               ) -> dict[str, Any]:
    """``provenance`` for one output: the run's record and its input's fingerprint."""
    return provenance if fingerprint is None else {**provenance, "input": fingerprint}


def provenance_comment(provenance: dict[str, Any]) -> str:
    return TAG + json.dumps(provenance, sort_keys=True)


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The record in an output's comment tag; None when it has none or it is not ours."""
    try:
        # Opened by handle: libsndfile cannot open a name that is not valid UTF-8.
        with open(path, "rb") as raw, sf.SoundFile(raw) as handle:
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
    """Decide whether ``output_path`` is the finished restoration of ``input_path``
    (the module's docstring says when each state is chosen)."""
    if not output_path.exists():
        return ExistingOutput("missing")
    if output_path.stat().st_size == 0:
        return ExistingOutput("redo", "an empty file was at the output name")
    made = read_provenance(output_path)
    if made is None:
        return _not_ours(output_path)
    try:
        info = audio_info(output_path)
    except AudioError:
        return ExistingOutput("redo", "the earlier output at this name is not readable audio")
    changed = _input_changed(input_path, made.get("input"))
    if changed:
        return ExistingOutput("redo", f"input changed since its output was made ({changed})")
    try:
        source = audio_info(input_path)
    except AudioError:
        return ExistingOutput("redo", "the input's header cannot be read")
    expected = output_length(source.frames, source.samplerate, OUTPUT_RATE)
    if (info.samplerate, info.channels, info.frames) != (OUTPUT_RATE, source.channels, expected):
        return ExistingOutput(
            "redo", f"the earlier output at this name holds {info.frames} frames x "
            f"{info.channels} channels at {info.samplerate} Hz, not {expected} x "
            f"{source.channels} at {OUTPUT_RATE} Hz")
    differences = _differences(made, provenance)
    if differences:
        return ExistingOutput("other", f"the existing output was made with {differences}; "
                              "kept: --force redoes it")
    return ExistingOutput("done")


def _not_ours(output_path: Path) -> ExistingOutput:
    """A non-empty file without hireslm's record: kept, whatever its shape."""
    try:
        audio_info(output_path)
    except AudioError:
        return ExistingOutput("other", "a file that is not readable audio and has no hireslm "
                              "record is at the output name; kept: move it away, or --force "
                              "replaces it")
    return ExistingOutput("other", "the file at the output name has no hireslm record of what "
                          "made it (made elsewhere, or by an older hireslm); kept: --force "
                          "redoes it")


def _input_changed(input_path: Path, recorded: Any) -> str:
    """What differs between the input now and the fingerprint its output recorded; "" when
    nothing does, or when the output records none (made by an older hireslm)."""
    if not isinstance(recorded, dict):
        return ""
    try:
        now = input_fingerprint(input_path)
    except OSError:
        return ""  # the restore itself reports an input it cannot read
    found = []
    if recorded.get("size") != now["size"]:
        found.append(f"size {recorded.get('size')} -> {now['size']} bytes")
    if recorded.get("mtime_ns") != now["mtime_ns"]:
        found.append("modification time differs")
    if recorded.get("sha256") != now["sha256"] and recorded.get("size") == now["size"]:
        found.append("contents differ")
    return ", ".join(found)


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

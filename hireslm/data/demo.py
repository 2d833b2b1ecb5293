"""Demo training data from Debian packages: real speech and real noise, fetched offline-safe.

``apt-get download`` + ``dpkg -x`` unpack each package under ``OUT/raw/<package>`` (nothing
is installed); the audio is then indexed into manifests under ``OUT``:

- ``speech_all.jsonl``: every speech clip, any bandwidth, ``split`` train/valid/heldout.
- ``speech_fullband.jsonl``: train/valid speech whose measured bandwidth >= the threshold.
- ``speech_heldout.jsonl``: whole held-out languages (default Danish), same bandwidth rule.
- ``noise.jsonl``: sonic-pi ambience/hiss/effect FLACs and tuxpaint stamp sound effects.

Each tuxpaint/klettres language is read by about one speaker, so ``<package>:<language>``
is the speaker id. The packages are GPL/CC licensed: fetch them, never commit the audio.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hireslm.data.manifest import (
    assign_splits,
    filter_records,
    index_files,
    summarize,
    write_manifest,
)
from hireslm.fileio import write_json_atomic

logger = logging.getLogger(__name__)

DEFAULT_PACKAGES: tuple[str, ...] = ("tuxpaint-stamps-default", "klettres-data", "sonic-pi-samples")
EXTRA_PACKAGES: tuple[str, ...] = ("ktuberling-data", "hedgewars-data")
DEFAULT_HELDOUT_LANGUAGES: tuple[str, ...] = ("da",)
DEFAULT_MIN_BANDWIDTH_HZ = 16000.0
COMPLETE_MARKER = ".hireslm-complete"

# Speech descriptions: "apple_desc_fr.ogg"; no language suffix means English; one file in
# the package carries a doubled ".ogg.ogg".
_DESC_RE = re.compile(r"_desc(?:_([a-z]{2,3}(?:_[A-Z]{2})?))?(?:\.ogg)?\.(?:ogg|wav)$")
_LANG_SUFFIX_RE = re.compile(r"_[a-z]{2,3}(?:_[A-Za-z]{2})?$")
# sonic-pi samples that sound like background noise rather than music or drums.
_SONIC_PI_NOISE_PREFIXES: tuple[str, ...] = (
    "ambi_", "vinyl_", "misc_", "glitch_", "loop_3d_printer", "loop_industrial", "loop_drone",
    "perc_door", "perc_swash", "perc_swoosh",
)


class DemoDataError(RuntimeError):
    """The demo data cannot be fetched or unpacked; the message says what to do."""


def _tuxpaint_speech(rel: Path) -> str | None:
    match = _DESC_RE.search(rel.name)
    return f"tuxpaint:{match.group(1) or 'en'}" if match else None


def _tuxpaint_noise(rel: Path) -> str | None:
    # Stamp sounds; symbols/ holds spoken letters and digits, and "_<lang>" files are speech.
    if rel.suffix != ".ogg" or "_desc" in rel.name or rel.parts[0] == "symbols":
        return None
    return None if _LANG_SUFFIX_RE.search(rel.stem) else "tuxpaint-effect"


def _first_dir_speaker(prefix: str, suffixes: tuple[str, ...]) -> Callable[[Path], str | None]:
    def select(rel: Path) -> str | None:
        if len(rel.parts) < 2 or rel.suffix.lower() not in suffixes:
            return None
        return f"{prefix}:{rel.parts[0]}"

    return select


def _sonic_pi_noise(rel: Path) -> str | None:
    if rel.suffix != ".flac" or not rel.name.startswith(_SONIC_PI_NOISE_PREFIXES):
        return None
    return "sonic-pi"


@dataclass(frozen=True)
class DemoSource:
    """Which files of an unpacked package to use, and as what.

    ``select`` maps a path relative to ``root`` to a speaker id (speech) or a source label
    (noise), or None to skip the file.
    """

    package: str
    kind: str  # "speech" or "noise"
    root: str
    select: Callable[[Path], str | None]


def demo_sources() -> list[DemoSource]:
    """The file rules for every known package (defaults and extras)."""
    return [
        DemoSource("tuxpaint-stamps-default", "speech", "usr/share/tuxpaint/stamps",
                   _tuxpaint_speech),
        DemoSource("tuxpaint-stamps-default", "noise", "usr/share/tuxpaint/stamps",
                   _tuxpaint_noise),
        DemoSource("klettres-data", "speech", "usr/share/klettres",
                   _first_dir_speaker("klettres", (".ogg",))),
        DemoSource("sonic-pi-samples", "noise", "usr/share/sonic-pi/samples", _sonic_pi_noise),
        DemoSource("ktuberling-data", "speech", "usr/share/ktuberling/sounds",
                   _first_dir_speaker("ktuberling", (".ogg", ".wav"))),
        DemoSource("hedgewars-data", "speech", "usr/share/games/hedgewars/Data/Sounds/voices",
                   _first_dir_speaker("hedgewars", (".ogg",))),
    ]


def fetch_package(name: str, raw_dir: str | os.PathLike) -> Path:
    """Download one Debian package and unpack it to ``raw_dir/name``; skip if already done.

    Raises:
        DemoDataError: apt-get/dpkg missing, or the download/unpack failed.
    """
    raw_dir = Path(raw_dir)
    target = raw_dir / name
    if (target / COMPLETE_MARKER).is_file():
        logger.info("%s: already unpacked, skipping", name)
        return target
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DemoDataError(
                f"'{tool}' not found on PATH: fetch-demo needs a Debian/Ubuntu system with "
                f"apt-get and dpkg (it runs 'apt-get download {name}' and 'dpkg -x')"
            )
    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=raw_dir) as tmp:
        tmp_dir = Path(tmp)
        _apt_download(name, tmp_dir)
        debs = sorted(tmp_dir.glob(f"{name}_*.deb"))
        if not debs:
            raise DemoDataError(f"apt-get download {name} produced no .deb file")
        unpacked = tmp_dir / "root"
        _run(["dpkg", "-x", str(debs[0]), str(unpacked)], f"dpkg -x {debs[0].name}")
        (unpacked / COMPLETE_MARKER).write_text(debs[0].name + "\n", encoding="utf-8")
        if target.exists():  # a half-unpacked folder from an interrupted run
            shutil.rmtree(target)
        os.replace(unpacked, target)
    logger.info("%s: unpacked to %s", name, target)
    return target


def _apt_download(name: str, cwd: Path) -> None:
    result = subprocess.run(["apt-get", "download", name], cwd=cwd, capture_output=True,
                            text=True)
    if result.returncode != 0:
        # Fresh containers often lack package lists; one update is enough to fix that.
        logger.info("apt-get download %s failed, running apt-get update once", name)
        _run(["apt-get", "update"], "apt-get update")
        result = subprocess.run(["apt-get", "download", name], cwd=cwd, capture_output=True,
                                text=True)
    if result.returncode != 0:
        raise DemoDataError(f"apt-get download {name} failed: {result.stderr.strip()[-500:]}")


def _run(cmd: Sequence[str], what: str) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoDataError(f"{what} failed (exit {result.returncode}): "
                            f"{result.stderr.strip()[-500:]}")


def collect_demo_files(
    raw_dir: str | os.PathLike, packages: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Find the speech and noise files of unpacked ``packages`` under ``raw_dir``.

    Returns:
        (speech: absolute path -> speaker id, noise: absolute path -> source label).
    """
    raw_dir = Path(raw_dir)
    speech: dict[str, str] = {}
    noise: dict[str, str] = {}
    for source in demo_sources():
        if source.package not in packages:
            continue
        root = raw_dir / source.package / source.root
        if not root.is_dir():
            raise DemoDataError(f"{root}: expected folder missing; is {source.package} unpacked?")
        found = speech if source.kind == "speech" else noise
        for path in sorted(root.rglob("*")):
            if path.is_file() and (label := source.select(path.relative_to(root))) is not None:
                found[str(path.resolve())] = label
    return speech, noise


def build_demo_manifests(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    workers: int = 1,
    min_bandwidth_hz: float = DEFAULT_MIN_BANDWIDTH_HZ,
    heldout_languages: Sequence[str] = DEFAULT_HELDOUT_LANGUAGES,
    valid_fraction: float = 0.03,
) -> dict[str, Any]:
    """Index the unpacked packages and write the four manifests plus ``summary.json``.

    Speakers whose language (the part after ``:``) is in ``heldout_languages`` get split
    ``heldout``; the rest get ``train``/``valid`` by file hash.

    Returns:
        the summary (per-manifest file counts, hours, bandwidth histograms; failures).
    """
    out_dir = Path(out_dir)
    speech_files, noise_files = collect_demo_files(raw_dir, packages)
    if not speech_files:
        raise DemoDataError(f"no speech files found under {raw_dir} for {list(packages)}")
    logger.info("indexing %d speech and %d noise files", len(speech_files), len(noise_files))
    speech, speech_failures = index_files(list(speech_files), workers=workers,
                                          speakers=speech_files)
    noise, noise_failures = index_files(list(noise_files), workers=workers, speakers=None)
    for record in noise:
        record["source"] = noise_files[record["path"]]
    heldout = set(heldout_languages)
    is_heldout = [r["speaker"].split(":", 1)[-1] in heldout for r in speech]
    rest = assign_splits([r for r, h in zip(speech, is_heldout, strict=True) if not h],
                         {"train": 1.0 - valid_fraction, "valid": valid_fraction}, by="file")
    held = [dict(r, split="heldout") for r, h in zip(speech, is_heldout, strict=True) if h]
    speech_all = sorted(rest + held, key=lambda r: r["path"])
    manifests = {
        "speech_all": speech_all,
        "speech_fullband": filter_records(speech_all, min_bandwidth_hz=min_bandwidth_hz,
                                          split=("train", "valid")),
        "speech_heldout": filter_records(speech_all, min_bandwidth_hz=min_bandwidth_hz,
                                         split="heldout"),
        "noise": noise,
    }
    for name, records in manifests.items():
        write_manifest(out_dir / f"{name}.jsonl", records)
    summary = {
        "packages": list(packages),
        "min_bandwidth_hz": min_bandwidth_hz,
        "heldout_languages": sorted(heldout),
        "manifests": {name: summarize(records) for name, records in manifests.items()},
        "speakers": _per_speaker(speech_all),
        "failures": speech_failures + noise_failures,
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _per_speaker(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Speaker -> files, minutes and median bandwidth (kHz)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["speaker"], []).append(record)
    out = {}
    for speaker, group in sorted(groups.items()):
        bands = sorted(float(r["bandwidth_hz"]) for r in group)
        out[speaker] = {
            "files": len(group),
            "minutes": round(sum(r["duration"] for r in group) / 60.0, 2),
            "median_bandwidth_khz": round(bands[len(bands) // 2] / 1000.0, 2),
        }
    return out


def fetch_demo(
    out_dir: str | os.PathLike,
    *,
    extras: bool = False,
    workers: int = 1,
    min_bandwidth_hz: float = DEFAULT_MIN_BANDWIDTH_HZ,
    heldout_languages: Sequence[str] = DEFAULT_HELDOUT_LANGUAGES,
) -> dict[str, Any]:
    """Fetch the demo packages into ``out_dir/raw`` (resumable) and write the manifests."""
    packages = DEFAULT_PACKAGES + (EXTRA_PACKAGES if extras else ())
    raw_dir = Path(out_dir) / "raw"
    for name in packages:
        fetch_package(name, raw_dir)
    return build_demo_manifests(raw_dir, out_dir, packages=packages, workers=workers,
                                min_bandwidth_hz=min_bandwidth_hz,
                                heldout_languages=heldout_languages)

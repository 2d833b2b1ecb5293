"""Build a test set of REAL band-limited recordings: telephone-coded prompts, archive readings.

    python benchmarks/make_realset.py [--out data/realset] [--limit-per-source 30] \
        [--sources telephone_gsm_en,librivox,...] [--min-s 1] [--max-s 10] [--force]

Nobody here degraded these clips: each is decoded from a Debian package exactly as it ships
(GSM 06.10, G.711 A-law and G.722 telephone prompts at 8/16 kHz, LibriVox and CMU Sphinx
recordings at 16 kHz, game dialogue at 22.05 kHz) and written at its NATIVE rate, so a
restorer sees the real input. Layout::

    OUT/cache/<package>_<version>_<arch>.deb   the downloaded packages (apt-get download)
    OUT/<source>/<name>.wav              mono 24-bit WAV at the source's own rate
    OUT/realset.json                     per file: package, version, licence, codec, rate,
                                         duration, measured bandwidth; per source: a summary

Clips are taken in a fixed hashed order of their package paths, exact duplicates and
non-speech (beeps, tones, silence) skipped, kept when 1-10 s long; a clip whose decode
overshoots full scale (Vorbis) is scaled to -0.1 dBFS. A re-run with the same settings
finds the set up to date and does nothing; with other settings it rewrites the set (the
download cache is kept). ``telephone_g722_en`` needs PyAV (``pip install av``: FFmpeg's G.722
decoder); without it that source is skipped and the reason stored in realset.json. The
packages are GPL/CC licensed: fetch them with this script, never commit the audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import soundfile as sf

from hireslm.audio import estimate_bandwidth, is_silent, load_audio, save_audio
from hireslm.fileio import write_json_atomic

CACHE = "cache"
PEAK = 10 ** (-0.1 / 20)  # clips above full scale are scaled to -0.1 dBFS
# Asterisk ships these next to its prompts: tones and beeps, not speech.
NON_SPEECH = frozenset({"beep", "beeperr", "ascending-2tone", "descending-2tone",
                        "confbridge-join", "confbridge-leave"})
logger = logging.getLogger("make_realset")

Decoder = Callable[[Path], tuple[np.ndarray, int]]


def _raw(subtype: str, sample_rate: int) -> Decoder:
    """Headerless files (Asterisk's .gsm/.alaw, Sphinx's .raw) through libsndfile."""
    def decode(path: Path) -> tuple[np.ndarray, int]:
        data, rate = sf.read(str(path), format="RAW", subtype=subtype, samplerate=sample_rate,
                             channels=1, endian="LITTLE", dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(rate)
    return decode


def _g722(path: Path) -> tuple[np.ndarray, int]:
    """Raw G.722 (64 kb/s, 16 kHz) through FFmpeg's decoder in PyAV."""
    import av  # optional: only this source needs it

    with av.open(str(path), format="g722") as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        rate = int(stream.rate)
    samples = np.concatenate(frames) if frames else np.zeros(0, np.int16)
    scale = 32768.0 if samples.dtype == np.int16 else 1.0
    return (samples.astype(np.float32) / scale)[None, :], rate


def _g722_available() -> str | None:
    try:
        import av  # noqa: F401
    except ImportError:
        return "PyAV is not installed (pip install av): it decodes G.722"
    return None


@dataclass(frozen=True)
class RealSource:
    """One folder of one Debian package, and how its files decode."""

    name: str
    package: str
    root: str  # inside the unpacked package
    patterns: tuple[str, ...]  # globs under root
    codec: str
    licence: str
    what: str
    decode: Decoder
    drop_parts: tuple[str, ...] = ()  # path parts left out of the clip's name
    unavailable: Callable[[], str | None] = lambda: None


_AST = "usr/share/asterisk/sounds"
_SPHINX = "usr/share/pocketsphinx/test/data"
SOURCES: tuple[RealSource, ...] = (
    RealSource("telephone_gsm_en", "asterisk-core-sounds-en-gsm", f"{_AST}/en_US_f_Allison",
               ("**/*.gsm",), "GSM 06.10 full rate (13 kb/s), 8 kHz", "CC-BY-SA-3.0",
               "US English IVR prompts, Allison Smith", _raw("GSM610", 8000)),
    RealSource("telephone_g722_en", "asterisk-core-sounds-en-g722",
               f"{_AST}/en_US_f_Allison", ("**/*.g722",), "G.722 (64 kb/s), 16 kHz",
               "CC-BY-SA-3.0", "US English IVR prompts, Allison Smith (wide-band HD voice)",
               _g722, unavailable=_g722_available),
    RealSource("telephone_alaw_it", "asterisk-prompt-it-menardi-alaw",
               f"{_AST}/it_IT_f_Menardi", ("**/*.alaw",), "G.711 A-law (64 kb/s), 8 kHz",
               "CC-BY-SA-3.0-IT (credit Marco Menardi and Paola Dal Zot, voip.ammdomus.it)",
               "Italian IVR prompts", _raw("ALAW", 8000)),
    RealSource("telephone_gsm_fr", "asterisk-prompt-fr-armelle", f"{_AST}/fr", ("**/*.gsm",),
               "GSM 06.10 full rate (13 kb/s), 8 kHz",
               "BSD-style (Copyright 2006 Michel Gutierrez)",
               "French IVR prompts, Armelle Desjardins", _raw("GSM610", 8000)),
    RealSource("telephone_gsm_es", "asterisk-prompt-es-co", f"{_AST}/es", ("**/*.gsm",),
               "GSM 06.10 full rate (13 kb/s), 8 kHz", "GPL-2",
               "Colombian Spanish IVR prompts, July E. Jimenez", _raw("GSM610", 8000)),
    RealSource("librivox", "pocketsphinx-testdata", f"{_SPHINX}/librivox", ("*.wav",),
               "16 kHz PCM from LibriVox's 64 kb/s MP3",
               "public domain (LibriVox); package BSD-2",
               "LibriVox volunteer reading Sense and Sensibility, ch. 1",
               lambda p: load_audio(p)),
    RealSource("sphinx", "pocketsphinx-testdata", _SPHINX,
               ("cards/*.wav", "goforward.raw", "numbers.raw", "something.raw"),
               "16 kHz 16-bit PCM", "BSD-2 (Carnegie Mellon University)",
               "CMU Sphinx test utterances (commands, numbers)",
               lambda p: _raw("PCM_16", 16000)(p) if p.suffix == ".raw" else load_audio(p)),
    RealSource("fillets_cs", "fillets-ng-data-cs", "usr/share/games/fillets-ng/sound",
               ("**/cs/*.ogg",), "Ogg Vorbis, mostly 22.05 kHz", "GPL-2",
               "Czech acted game dialogue (Fish Fillets NG)", lambda p: load_audio(p),
               drop_parts=("cs",)),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


class RealSetError(RuntimeError):
    """A package cannot be fetched or unpacked; the message says what failed."""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def fetch_deb(package: str, cache: Path) -> Path:
    """``cache/<package>_<version>_<arch>.deb``, downloaded once with ``apt-get download``.

    Only the .deb is kept, not an unpacked tree (hireslm.data.demo.fetch_package keeps one):
    the packages hold .wav/.ogg files that ``hireslm restore data/realset`` would pick up.
    """
    if found := sorted(cache.glob(f"{package}_*.deb")):
        return found[-1]
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RealSetError(f"'{tool}' not found: the real set needs a Debian/Ubuntu system "
                               f"(it runs 'apt-get download {package}' and 'dpkg -x')")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{package}.", dir=cache) as tmp:
        result = _run(["apt-get", "download", package], cwd=Path(tmp))
        if result.returncode != 0:  # fresh containers often lack package lists
            logger.info("apt-get download %s failed, running apt-get update once", package)
            _run(["apt-get", "update"])
            result = _run(["apt-get", "download", package], cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            raise RealSetError(f"apt-get download {package} failed: "
                               f"{result.stderr.strip()[-500:]}")
        target = cache / debs[0].name
        os.replace(debs[0], target)
    logger.info("%s: downloaded %s", package, target.name)
    return target


def unpack_deb(deb: Path, dest: Path) -> Path:
    result = _run(["dpkg", "-x", str(deb), str(dest)])
    if result.returncode != 0:
        raise RealSetError(f"dpkg -x {deb.name} failed: {result.stderr.strip()[-500:]}")
    return dest


def deb_version(deb: Path) -> str:
    """The version in a .deb's name: ``name_1%3a2.0-1_all.deb`` -> ``1:2.0-1``."""
    parts = deb.name.removesuffix(".deb").split("_")
    return unquote(parts[1]) if len(parts) >= 3 else "unknown"


def clip_name(source: RealSource, rel: Path) -> str:
    return "-".join(p for p in rel.with_suffix("").parts if p not in source.drop_parts)


def candidates(source: RealSource, root: Path) -> list[Path]:
    """Speech files of ``source`` under ``root`` in a fixed pseudo-random order (a hash of
    source and path), so every source gets a spread of prompt kinds, not the first letters."""
    found = {p for pattern in source.patterns for p in root.glob(pattern) if p.is_file()}
    speech = [p for p in found if p.stem not in NON_SPEECH
              and "silence" not in p.relative_to(root).parts]
    key = lambda p: hashlib.sha256(f"{source.name}/{p.relative_to(root)}".encode()).hexdigest()  # noqa: E731
    return sorted(speech, key=key)


def select_clips(source: RealSource, root: Path, limit: int, min_s: float,
                 max_s: float) -> list[tuple[Path, np.ndarray, int]]:
    """Decode candidates in order until ``limit`` distinct mono clips of ``min_s..max_s``."""
    picked, seen = [], set()
    for path in candidates(source, root):
        if len(picked) >= limit:
            break
        wave, rate = source.decode(path)
        wave = wave.mean(axis=0, keepdims=True) if wave.shape[0] > 1 else wave
        digest = hashlib.sha256(wave.tobytes()).hexdigest()
        if digest in seen or is_silent(wave) or not min_s <= wave.shape[1] / rate <= max_s:
            continue
        seen.add(digest)
        picked.append((path, wave, rate))
    return picked


def _summary(files: list[dict[str, Any]]) -> dict[str, Any]:
    def span(key: str) -> list[float]:
        values = sorted(f[key] for f in files)
        return [values[0], values[len(values) // 2], values[-1]] if values else []

    return {"count": len(files), "minutes": round(sum(f["duration"] for f in files) / 60, 2),
            "sample_rates": sorted({f["sample_rate"] for f in files}),
            "duration_min_median_max": span("duration"),
            "bandwidth_hz_min_median_max": span("bandwidth_hz"),
            "bandwidth_40db_hz_min_median_max": span("bandwidth_40db_hz")}


def write_source(source: RealSource, unpacked: Path, version: str, out: Path, limit: int,
                 min_s: float, max_s: float) -> list[dict[str, Any]]:
    """Write ``source``'s clips as ``out/<source>/<name>.wav`` (stale ones removed); returns
    their realset.json entries."""
    root = unpacked / source.root
    if not root.is_dir():
        raise RealSetError(f"{root}: expected folder missing in {source.package}")
    folder = out / source.name
    written: set[Path] = set()
    entries = []
    for path, wave, rate in select_clips(source, root, limit, min_s, max_s):
        peak = float(np.max(np.abs(wave)))
        gain = PEAK / peak if peak > PEAK else 1.0  # Vorbis decodes overshoot
        target = folder / f"{clip_name(source, path.relative_to(root))}.wav"
        save_audio(target, wave * gain, rate, subtype="PCM_24")
        written.add(target)
        entries.append({
            "path": str(target.relative_to(out)), "source": source.name,
            "package": source.package, "version": version, "licence": source.licence,
            "origin": str(path.relative_to(unpacked)), "codec": source.codec,
            "sample_rate": rate, "duration": round(wave.shape[1] / rate, 3),
            "bandwidth_hz": round(estimate_bandwidth(wave, rate), 1),
            "bandwidth_40db_hz": round(estimate_bandwidth(wave, rate, floor_db=40.0), 1),
            "gain_db": round(float(20 * np.log10(gain)), 2) + 0.0,
        })
    for stale in folder.glob("*.wav"):
        if stale not in written:
            stale.unlink()
    return sorted(entries, key=lambda e: e["path"])


def _up_to_date(out: Path, settings: dict[str, Any]) -> bool:
    index = out / "realset.json"
    if not index.is_file():
        return False
    description = json.loads(index.read_text(encoding="utf-8"))
    return description.get("settings") == settings and all(
        (out / f["path"]).is_file() for f in description.get("files", []))


def build(out: Path, names: list[str], limit: int, min_s: float, max_s: float,
          force: bool = False) -> dict[str, Any]:
    """Fetch, decode and write the set into ``out``; returns realset.json's content."""
    chosen = [s for s in SOURCES if s.name in names]
    skipped = {s.name: why for s in chosen if (why := s.unavailable())}
    for name, why in skipped.items():
        logger.warning("%s: skipped: %s", name, why)
    chosen = [s for s in chosen if s.name not in skipped]
    settings = {"sources": [s.name for s in chosen], "skipped": skipped,
                "limit_per_source": limit, "min_s": min_s, "max_s": max_s}
    if not force and _up_to_date(out, settings):
        logger.info("%s is up to date (same settings, every file there); --force rebuilds", out)
        return json.loads((out / "realset.json").read_text(encoding="utf-8"))
    cache = out / CACHE
    files: list[dict[str, Any]] = []
    sources: dict[str, Any] = {}
    debs = {s.package: fetch_deb(s.package, cache) for s in chosen}
    with tempfile.TemporaryDirectory(prefix=".unpacked.", dir=cache) as tmp:
        unpacked = {name: unpack_deb(deb, Path(tmp) / name) for name, deb in debs.items()}
        for source in chosen:
            version = deb_version(debs[source.package])
            entries = write_source(source, unpacked[source.package], version, out, limit,
                                   min_s, max_s)
            files += entries
            sources[source.name] = {"package": source.package, "version": version,
                                    "licence": source.licence, "codec": source.codec,
                                    "what": source.what, **_summary(entries)}
            logger.info("%s: %d clips from %s %s (%s)", source.name, len(entries),
                        source.package, version, source.codec)
    for name in SOURCE_NAMES:  # folders of sources no longer in the set
        if name not in settings["sources"] and (out / name).is_dir():
            shutil.rmtree(out / name)
    description = {"settings": settings, "sources": sources, "total": _summary(files),
                   "files": files}
    write_json_atomic(out / "realset.json", description)
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/realset"))
    parser.add_argument("--limit-per-source", type=int, default=30)
    parser.add_argument("--sources", default=",".join(SOURCE_NAMES),
                        help=f"comma-separated subset of {', '.join(SOURCE_NAMES)}")
    parser.add_argument("--min-s", type=float, default=1.0, help="shortest clip kept (s)")
    parser.add_argument("--max-s", type=float, default=10.0, help="longest clip kept (s)")
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    names = [n.strip() for n in args.sources.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SOURCE_NAMES))
    if unknown:
        logger.error("unknown sources %s; known: %s", unknown, ", ".join(SOURCE_NAMES))
        return 2
    try:
        description = build(args.out, names, args.limit_per_source, args.min_s, args.max_s,
                            args.force)
    except (OSError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 1
    total = description["total"]
    logger.info("real set: %d clips, %.1f min, %d sources in %s", total["count"],
                total["minutes"], len(description["sources"]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

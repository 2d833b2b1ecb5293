"""DeepFilterNet3's output for every file of the development set, cached.

    python benchmarks/devset_wet.py [--devset data/devset]

Each degraded input is loudness-normalised to -20 LUFS (as the pipeline does before
recovery), run through ``DeepFilterNet3Recovery()`` (the release's defaults) and both the
normalised input (``dry``) and its recovered version (``wet``) are cached as float WAVs
under ``DEVSET/wet/<id>.{dry,wet}.wav`` with the seconds recovery took; a file whose cache
is newer than its input is not run again. ``load_pair`` is what the evaluation and the
threshold measurements read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hireslm.audio import load_audio, normalize_loudness, save_audio
from hireslm.fileio import write_json_atomic

RATE = 48000
TARGET_LUFS = -20.0
logger = logging.getLogger("devset_wet")


def manifest(devset: Path) -> dict[str, Any]:
    return json.loads((devset / "devset.json").read_text(encoding="utf-8"))


def _paths(devset: Path, ident: str) -> tuple[Path, Path]:
    return devset / "wet" / f"{ident}.dry.wav", devset / "wet" / f"{ident}.wet.wav"


def load_pair(devset: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray, float]:
    """(dry, wet, reference, gain_db): ``(1, n)`` float32 each; dry/wet at -20 LUFS, the
    reference at its file level (metrics here are level-free); ``gain_db`` took the input
    file to -20 LUFS."""
    dry_path, wet_path = _paths(devset, entry["id"])
    dry, _ = load_audio(dry_path, check=False)
    wet, _ = load_audio(wet_path, check=False)
    ref, _ = load_audio(devset / entry["reference"], check=False)
    timing = json.loads((devset / "wet" / "timing.json").read_text(encoding="utf-8"))
    return dry, wet, ref, timing[entry["id"]]["gain_db"]


def run(devset: Path) -> dict[str, Any]:
    from hireslm.recovery import DeepFilterNet3Recovery

    description = manifest(devset)
    timing_path = devset / "wet" / "timing.json"
    timing = (json.loads(timing_path.read_text(encoding="utf-8"))
              if timing_path.is_file() else {})
    recovery = DeepFilterNet3Recovery()
    for i, entry in enumerate(description["files"]):
        source = devset / entry["path"]
        dry_path, wet_path = _paths(devset, entry["id"])
        if (wet_path.is_file() and entry["id"] in timing
                and wet_path.stat().st_mtime >= source.stat().st_mtime):
            continue
        wave, rate = load_audio(source)
        assert rate == RATE, (source, rate)
        dry, gain_db = normalize_loudness(wave, RATE, TARGET_LUFS)
        start = time.perf_counter()
        wet = recovery(dry)
        seconds = time.perf_counter() - start
        save_audio(dry_path, dry, RATE, subtype="FLOAT")
        save_audio(wet_path, wet, RATE, subtype="FLOAT")
        timing[entry["id"]] = {"recovery_s": round(seconds, 4), "gain_db": round(gain_db, 4),
                               "duration": entry["duration"]}
        if i % 10 == 0:
            write_json_atomic(timing_path, timing)
            logger.info("%d/%d %s: %.2f s for %.2f s", i + 1, len(description["files"]),
                        entry["id"], seconds, entry["duration"])
    write_json_atomic(timing_path, timing)
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=Path("data/devset"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    timing = run(args.devset)
    total = sum(t["recovery_s"] for t in timing.values())
    audio = sum(t["duration"] for t in timing.values())
    logger.info("recovery: %.1f s for %.1f s of audio (RTF %.3f)", total, audio, total / audio)
    return 0


if __name__ == "__main__":
    sys.exit(main())

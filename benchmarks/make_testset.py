"""Build the held-out test set: clean 48 kHz references and one degraded copy per kind.

    python benchmarks/make_testset.py [--config configs/testsets/heldout.yaml] \
        [--out data/testset] [--set manifest=PATH --set noise_manifest=PATH] [--limit N] [--force]

Layout (every folder mirrors ``clean/``, so ``hireslm evaluate`` pairs the files)::

    OUT/clean/<source>/<name>.wav        mono 48 kHz references (24-bit)
    OUT/<kind>/<source>/<name>.wav       hireslm degrade output, one folder per kind
    OUT/<kind>/degradations.jsonl        what was applied to each file
    OUT/testset.json                     config, source of each reference, degrade commands

The references come from the manifest's clips (exact duplicates dropped), resampled with
``hireslm.audio.resample``, mixed to mono, and scaled to -0.1 dBFS where they exceed full
scale. Each kind is one ``hireslm degrade`` run (its command line is logged and stored),
seeded per file, so a rebuild is identical byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import build_parser
from hireslm.config import load_config
from hireslm.data.manifest import read_manifest
from hireslm.fileio import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "testsets" / "heldout.yaml"
CLEAN = "clean"
PEAK = 10 ** (-0.1 / 20)  # references above full scale are scaled to -0.1 dBFS
logger = logging.getLogger("make_testset")


def reference_names(records: list[dict[str, Any]]) -> list[str]:
    """``<source>/<stem>`` per record (source: the speaker id before ':'); where stems meet
    within a source, the parent folder's name is prefixed (``cartoon-banana_desc_da``)."""
    def base(record: dict) -> tuple[str, str]:
        source = str(record.get("speaker", "speech")).split(":")[0] or "speech"
        return source, Path(record["path"]).stem

    counts = Counter(base(r) for r in records)
    names = []
    for record in records:
        source, stem = base(record)
        if counts[(source, stem)] > 1:
            stem = f"{Path(record['path']).parent.name}-{stem}"
        names.append(f"{source}/{stem}")
    if len(set(names)) != len(names):
        raise ValueError("reference names still collide; make them unique in the manifest")
    return names


def write_references(
    records: list[dict[str, Any]], clean_dir: Path, sample_rate: int, mono: bool
) -> dict[str, str]:
    """Write each distinct clip as ``clean_dir/<name>.wav``; returns ``{name: source path}``.

    Clips whose decoded samples equal an earlier clip's are skipped (the tuxpaint stamps
    reuse some recordings under two names).
    """
    sources, seen = {}, {}
    for record, name in zip(records, reference_names(records), strict=True):
        wave, rate = load_audio(record["path"])
        digest = hashlib.sha256(wave.tobytes()).hexdigest()
        if digest in seen:
            logger.info("skipping %s: same audio as %s", record["path"], seen[digest])
            continue
        seen[digest] = record["path"]
        wave = resample(wave, rate, sample_rate)
        if mono:
            wave = wave.mean(axis=0, keepdims=True)
        peak = float(np.max(np.abs(wave)))
        if peak > PEAK:
            # Vorbis decodes can overshoot full scale; a float WAV would carry libsndfile's
            # time-stamped PEAK chunk and make rebuilds differ byte-wise.
            wave = wave * (PEAK / peak)
        save_audio(clean_dir / f"{name}.wav", wave, sample_rate, subtype="PCM_24")
        sources[name] = record["path"]
    return sources


def degrade_argv(
    steps: dict[str, dict[str, Any]], clean_dir: Path, out_dir: Path, seed: int,
    noise_manifest: str | None,
) -> list[str]:
    """``hireslm degrade`` arguments for one kind: ``steps`` maps each degradation (in order)
    to its fixed parameters."""
    argv = ["degrade", str(clean_dir), str(out_dir), "--seed", str(seed)]
    for kind, params in steps.items():
        argv += ["--kind", kind]
        for key, value in (params or {}).items():
            text = value if isinstance(value, str) else json.dumps(value)  # YAML-readable
            argv += ["--param", f"{kind}.{key}={text}"]
    if noise_manifest and any(k in ("noise", "babble") for k in steps):
        argv += ["--noise-manifest", str(noise_manifest)]
    return argv


def build(config: Any, out: Path, limit: int | None = None, force: bool = False) -> dict:
    """Build the test set into ``out``; returns the description stored as testset.json."""
    kinds: dict[str, dict] = OmegaConf.to_container(config.kinds)
    managed = [out / CLEAN, *(out / k for k in kinds)]
    existing = [p for p in managed if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; --force rebuilds (removes "
                              f"{', '.join(p.name for p in managed)})")
    for path in existing:
        shutil.rmtree(path)
    records = list({r["path"]: r for r in read_manifest(config.manifest)}.values())
    records = sorted(records, key=lambda r: r["path"])[:limit]
    sources = write_references(records, out / CLEAN, int(config.sample_rate), bool(config.mono))
    logger.info("wrote %d references (%d duplicates skipped) to %s", len(sources),
                len(records) - len(sources), out / CLEAN)
    commands = {}
    parser = build_parser()
    for name, steps in kinds.items():
        argv = degrade_argv(steps, out / CLEAN, out / name, int(config.seed),
                            config.get("noise_manifest"))
        commands[name] = "hireslm " + shlex.join(argv)
        logger.info("%s: %s", name, commands[name])
        args = parser.parse_args(argv)
        if args._run(args) != 0:
            raise RuntimeError(f"{name}: hireslm degrade failed; see {out / name}")
    description = {"config": OmegaConf.to_container(config), "references": len(sources),
                   "sources": sources, "commands": commands}
    write_json_atomic(out / "testset.json", description)
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=Path("data/testset"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override a config value")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only (a quick "
                        "check; the full set is the one to report)")
    parser.add_argument("--force", action="store_true", help="rebuild over an existing set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    config = load_config(args.config, args.overrides)
    try:
        description = build(config, args.out, args.limit, args.force)
    except (FileExistsError, FileNotFoundError, RuntimeError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("test set: %d references x %d kinds in %s", description["references"],
                len(description["commands"]), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``hireslm degrade``: degraded copies of a folder of clean recordings (paired test sets).

Every audio file under CLEAN_DIR gets a degraded copy at the same relative path under OUT_DIR
(as ``.wav``), and ``OUT_DIR/degradations.jsonl`` records, per file, what was applied.
``--kind`` applies fixed degradations (parameters from ``--param`` or drawn from the config's
ranges); ``--chain`` applies the random training chain. Per-file randomness is seeded from
``(--seed, relative path)``, so results do not depend on which files are processed or in what
order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hireslm.audio.errors import AudioError
from hireslm.audio.io import load_audio, save_audio
from hireslm.audio.resample import resample
from hireslm.audiotree import mirror_names, scan_audio
from hireslm.data.chain import DegradationChain, check_param_names
from hireslm.data.degradations import DEGRADATIONS
from hireslm.fileio import write_jsonl_atomic
from hireslm.resources import config_path

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = config_path("degradations.yaml")
REPORT_NAME = "degradations.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clean_dir", type=Path, help="folder of clean recordings (recursive)")
    parser.add_argument("out_dir", type=Path, help="where the degraded tree is written")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--kind", action="append", choices=sorted(DEGRADATIONS),
                      help="a fixed degradation; repeat to apply several in order")
    mode.add_argument("--chain", action="store_true", help="the random degradation chain")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a parameter (YAML value); KIND.KEY=VALUE with several kinds")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="degradation config (ranges and chain stages)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override a config value (dotted key)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed; each file's randomness comes from (seed, relative path)")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="resample inputs to this rate before degrading (default: keep)")
    for what in ("noise", "rir", "babble"):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{what}-dir", type=Path, default=None,
                           help=f"folder of {what} audio files")
        group.add_argument(f"--{what}-manifest", type=Path, default=None,
                           help=f"JSONL manifest of {what} files (key 'path')")


def run(args: argparse.Namespace) -> int:
    """Degrade every file; return 0 when all succeeded, 1 when any failed or none was found."""
    clean_dir, out_dir = args.clean_dir.resolve(), args.out_dir.resolve()
    if not clean_dir.is_dir():
        logger.error("%s: not a directory", clean_dir)
        return 1
    if out_dir == clean_dir or clean_dir in out_dir.parents:
        logger.error("refusing to write into the input tree: %s is inside %s", out_dir, clean_dir)
        return 1
    try:
        params = parse_params(args.param, args.kind or [])
        for kind, fixed in params.items():
            check_param_names(kind, fixed)
        chain = DegradationChain.from_yaml(
            args.config, args.overrides,
            noise_files=_resource_files(args.noise_dir, args.noise_manifest),
            rir_files=_resource_files(args.rir_dir, args.rir_manifest),
            babble_files=_resource_files(args.babble_dir, args.babble_manifest),
        )
    except (ValueError, FileNotFoundError, AudioError) as exc:
        logger.error("%s", exc)
        return 1
    tree = scan_audio(clean_dir)
    inputs = [clean_dir / rel for rel in tree.files]
    if not inputs:
        logger.error("%s: no audio files found", clean_dir)
        return 1
    outputs = output_paths(inputs, clean_dir, out_dir)
    # What the walk could not take is reported like a file that failed.
    records = [{"input": str(p.path), "error": p.reason} for p in tree.problems]
    for record in records:
        logger.error("%s: %s", record["input"], record["error"])
    real_inputs = {path.resolve() for path in inputs}
    for source in inputs:
        records.append(_degrade_file(source, clean_dir, outputs[source], real_inputs, chain,
                                     args, params))
    failures = sum("error" in record for record in records)
    write_jsonl_atomic(out_dir / REPORT_NAME, records)
    logger.info("degraded %d of %d files into %s", len(records) - failures, len(records), out_dir)
    if failures:
        logger.error("%d files failed; see %s", failures, out_dir / REPORT_NAME)
    return 1 if failures else 0


def _degrade_file(
    source: Path,
    clean_dir: Path,
    target: Path,
    inputs: set[Path],
    chain: DegradationChain,
    args: argparse.Namespace,
    params: dict[str, dict[str, Any]],
) -> dict:
    """Degrade one file and write it; a report record (with ``error`` when it failed)."""
    relative = source.relative_to(clean_dir).as_posix()
    file_seed = derive_seed(args.seed, relative)
    record: dict[str, Any] = {"input": str(source), "seed": args.seed, "file_seed": file_seed}
    try:
        if target.resolve() in inputs:
            raise ValueError(f"output {target} would overwrite an input")
        wave, rate = load_audio(source)
        if args.sample_rate and args.sample_rate != rate:
            wave, rate = resample(wave, rate, args.sample_rate), args.sample_rate
        rng = np.random.default_rng(file_seed)
        if args.chain:
            degraded, applied = chain(wave, rate, rng)
        else:
            degraded, applied = wave, []
            for kind in args.kind:
                degraded, step = chain.apply_named(kind, degraded, rate, rng, **params[kind])
                applied.append(step)
        subtype = "PCM_24" if float(np.max(np.abs(degraded))) <= 1.0 else "FLOAT"
        save_audio(target, degraded, rate, subtype=subtype)
    except (AudioError, ValueError, RuntimeError, OSError) as exc:
        # One bad file must not stop a batch; it is reported and skipped.
        logger.error("%s: %s", source, exc)
        record["error"] = str(exc)
        return record
    record.update(output=str(target), sample_rate=rate, degradations=applied)
    return record


def parse_params(items: Sequence[str], kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["snr_db=5", "mp3.bitrate_kbps=32"]`` -> ``{kind: {key: value}}``; values are YAML.

    An unqualified key goes to the only kind; with several kinds it must be qualified.
    """
    params: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        kind, dot, name = key.rpartition(".")
        if not dot:
            if len(kinds) != 1:
                raise ValueError(f"--param {item!r}: name the kind (KIND.KEY=VALUE)")
            kind, name = kinds[0], key
        if kind not in params:
            raise ValueError(f"--param {item!r}: {kind!r} is not among --kind {list(kinds)}")
        params[kind][name] = yaml.safe_load(raw)
    return params


def derive_seed(seed: int, relative_path: str) -> int:
    """A 63-bit seed from the run's seed and a file's relative path (order-independent)."""
    digest = hashlib.sha256(f"{seed}\0{relative_path}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def find_inputs(root: Path) -> list[Path]:
    """Audio files under ``root`` (``hireslm.audiotree`` rules), sorted; what the walk could
    not take is logged."""
    tree = scan_audio(root)
    for problem in tree.problems:
        logger.warning("%s: %s", problem.path, problem.reason)
    return [root / rel for rel in tree.files]


def output_paths(inputs: Sequence[Path], clean_dir: Path, out_dir: Path) -> dict[Path, Path]:
    """Mirror each input under ``out_dir`` as ``.wav``, named as ``hireslm restore`` names
    its outputs (``hireslm.audiotree.mirror_names``), so no two outputs collide."""
    relatives = [path.relative_to(clean_dir) for path in inputs]
    names = mirror_names(relatives, ".wav")
    return {path: out_dir / name for path, name in zip(inputs, names, strict=True)}


def _resource_files(folder: Path | None, manifest: Path | None) -> list[Path]:
    """Audio files from a folder or a JSONL manifest (relative paths: against its folder)."""
    if folder is not None:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a directory")
        files = find_inputs(folder)
        if not files:
            raise ValueError(f"{folder}: no audio files")
        return files
    if manifest is None:
        return []
    files = []
    with open(manifest, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                path = Path(json.loads(line)["path"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{manifest}:{number}: not a record with 'path'") from exc
            files.append(path if path.is_absolute() else manifest.parent / path)
    if not files:
        raise ValueError(f"{manifest}: no records")
    return files



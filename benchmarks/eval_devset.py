"""The default restore on the development set, file by file, against DeepFilterNet3 alone.

    python benchmarks/make_devset.py          # once: the set (data/devset), from Debian
    python benchmarks/eval_devset.py [--devset data/devset] [--out results/devset]
        [--splits heldout,tune] [--release DIR]

Every degraded file of the set is restored the way a user restores a folder
(``hireslm.jobs.run`` with the default options; a rerun finds them done and only scores),
and DeepFilterNet3 is run alone on the same file (the bare denoiser at the file's own
level, ``hireslm.recovery``). All three (input, DFN3 alone, default) are scored against the
clean reference with the project's evaluation (``hireslm.evaluation.score_signals``: LSD
full band and above 4 kHz, SI-SDR, PESQ-WB, ESTOI, DNSMOS, ViSQOL audio mode), which shares
nothing with the evidence the restore decides on.

A file is **never-worse** when its ESTOI is within 0.05 of its input's and, where the
input's band is intact to 8 kHz (every kind but ``lowpass_4k``/``lowpass_5k5``), its PESQ-WB
within 0.5. Per split and kind: never-worse counts, the mean of every metric per system, and
the default's worst file (lowest ESTOI change, then PESQ change) with its numbers; written
as ``OUT/rows.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from hireslm.audio import load_audio, resample
from hireslm.evaluation.dnsmos import DnsmosScorer
from hireslm.evaluation.evaluate import EvaluationOptions, score_signals
from hireslm.evaluation.visqol import VisqolScorer
from hireslm.fileio import write_json_atomic, write_text_atomic
from hireslm.jobs import RunSettings, run
from hireslm.recovery import DeepFilterNet3Recovery

RATE = 48000
SYSTEMS = ("input", "dfn3", "default")
COLUMNS = ("pesq", "estoi", "si_sdr", "lsd", "lsd_hf", "dnsmos_ovrl", "visqol")
BAND_LIMITED_KINDS = ("lowpass_4k", "lowpass_5k5")
ESTOI_TOLERANCE = 0.05
PESQ_TOLERANCE = 0.5
logger = logging.getLogger("eval_devset")


def _mono48(path: Path, frames: int | None = None) -> np.ndarray:
    wave, rate = load_audio(path, check=False)
    wave = resample(wave[:1], rate, RATE)[0]
    return wave if frames is None else np.pad(wave, (0, max(0, frames - wave.size)))[:frames]


def never_worse(kind: str, system: dict[str, float], base: dict[str, float]) -> bool:
    ok = not system["estoi"] < base["estoi"] - ESTOI_TOLERANCE
    if kind not in BAND_LIMITED_KINDS:
        ok = ok and not system["pesq"] < base["pesq"] - PESQ_TOLERANCE
    return ok


def evaluate(devset: Path, out: Path, splits: list[str], release: Path | None) -> list[dict]:
    entries = [e for e in json.loads((devset / "devset.json").read_text())["files"]
               if e["split"] in splits]
    inputs = [devset / e["path"] for e in entries]
    start = time.perf_counter()
    summary = run(inputs, out / "restored", settings=RunSettings(release=release,
                                                                  progress=False))
    logger.info("restored %s in %.0f s", dict(summary.counts), time.perf_counter() - start)
    records = {Path(r["input"]).name: r for r in map(json.loads, (
        out / "restored" / "restore_report.jsonl").read_text().splitlines())}
    options = EvaluationOptions()
    dnsmos, visqol, recovery = DnsmosScorer(), VisqolScorer(), DeepFilterNet3Recovery()
    rows = []
    for entry, path in zip(entries, inputs, strict=True):
        reference = _mono48(devset / entry["reference"])
        record = records[path.name]
        signals = {
            "input": _mono48(path, reference.size),
            "dfn3": recovery(_mono48(path, reference.size)),
            "default": _mono48(Path(record["output"]), reference.size),
        }
        scores = {name: score_signals(reference, wave, RATE, options, dnsmos, visqol)[0]
                  for name, wave in signals.items()}
        rows.append({
            "id": entry["id"], "kind": entry["kind"], "source": entry["source"],
            "split": entry["split"], "duration_s": entry["duration"],
            "scores": {s: {c: _r(scores[s][c]) for c in COLUMNS} for s in SYSTEMS},
            "recovered_share": record["treatment"]["recovered_share"],
            "generated": record["treatment"]["generated"],
        })
        logger.info("%s: %s", entry["id"], {s: rows[-1]["scores"][s]["pesq"] for s in SYSTEMS})
    return rows


def _r(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 3) if kept else None


def summarise(rows: list[dict]) -> dict[str, Any]:
    def change(row: dict, column: str) -> float:
        new, old = row["scores"]["default"][column], row["scores"]["input"][column]
        return math.inf if new is None or old is None else new - old

    out = {"files": len(rows)}
    for system in SYSTEMS:
        out[system] = {c: _mean([r["scores"][system][c] for r in rows]) for c in COLUMNS}
        if system != "input":
            out[system]["never_worse"] = sum(
                never_worse(r["kind"], _filled(r["scores"][system]), _filled(r["scores"]["input"]))
                for r in rows)
    worst = min(rows, key=lambda r: (change(r, "estoi"), change(r, "pesq")))
    out["worst"] = {"id": worst["id"], "input": worst["scores"]["input"],
                    "default": worst["scores"]["default"], "dfn3": worst["scores"]["dfn3"]}
    return out


def _filled(scores: dict[str, float | None]) -> dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in scores.items()}


def table(rows: list[dict], split: str) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["split"] == split:
            groups[row["kind"]].append(row)
            groups["all"].append(row)
    lines = [f"### {split} sources ({', '.join(sorted({r['source'] for r in groups['all']}))})",
             "", "| kind | files | never-worse DFN3 / default | PESQ-WB in / DFN3 / default | "
             "ESTOI | SI-SDR | LSD | LSD >4k | DNSMOS | ViSQOL | default's worst file (in -> out: "
             "PESQ, ESTOI) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in ["all", *sorted(k for k in groups if k != "all")]:
        s = summarise(groups[kind])
        cells = [" / ".join(_fmt(s[sys_][c]) for sys_ in SYSTEMS) for c in COLUMNS]
        w = s["worst"]
        lines.append(
            f"| {kind} | {s['files']} | {s['dfn3']['never_worse']} / "
            f"{s['default']['never_worse']} | " + " | ".join(cells) + f" | {w['id']}: "
            f"{_fmt(w['input']['pesq'])} -> {_fmt(w['default']['pesq'])}, "
            f"{_fmt(w['input']['estoi'])} -> {_fmt(w['default']['estoi'])} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devset", type=Path, default=Path("data/devset"))
    parser.add_argument("--out", type=Path, default=Path("results/devset"))
    parser.add_argument("--splits", default="heldout,tune")
    parser.add_argument("--release", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    splits = args.splits.split(",")
    rows = evaluate(args.devset, args.out, splits, args.release)
    write_json_atomic(args.out / "rows.json", rows)
    text = "\n".join(table(rows, split) for split in splits)
    write_text_atomic(args.out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

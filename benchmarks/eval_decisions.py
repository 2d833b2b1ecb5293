"""The restore decision on the development set: input vs DeepFilterNet3 alone vs the
evidence decision (``hireslm.pipeline.evidence``), against the clean references.

    python benchmarks/devset_wet.py            # once: DFN3 over the set (cached)
    python benchmarks/eval_decisions.py [--devset data/devset] [--out results/decisions]
        [--measure]

For every file of ``benchmarks/make_devset.py``'s set: the input (loudness-normalised to
-20 LUFS, as the pipeline sees it), DeepFilterNet3's output, and "decision": per ~8 s
segment (one segment below 16 s) and channel, the recovered signal where
``evidence.decide`` says ``recovered``, the input elsewhere (``evidence.apply_verdicts``).
Metrics against the clean reference: PESQ-WB and ESTOI at 16 kHz, SI-SDR at 48 kHz.

A file is **never-worse** when its ESTOI is within 0.05 of the input's and, where the input's
band is intact to 8 kHz (every kind but ``lowpass_4k`` and ``lowpass_5k5``), its PESQ-WB is
within 0.5 of the input's. Per split (tune / held-out), per kind and per source: the count of
never-worse files, the mean of each metric, and the worst file (lowest ESTOI change, then
PESQ change) with its numbers. Written as ``OUT/decisions.json`` and ``OUT/decisions.md``.

``--measure`` prints, on the tune split only, the evidence of every single-segment file with
its oracle label (DFN3 better by PESQ and ESTOI, or not): the measurement behind
``evidence.Thresholds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devset_wet import load_pair, manifest  # noqa: E402

from hireslm.audio.resample import resample  # noqa: E402
from hireslm.evaluation.metrics import MetricUndefined, estoi, pesq_wb, si_sdr  # noqa: E402
from hireslm.fileio import write_json_atomic  # noqa: E402
from hireslm.pipeline import evidence as ev  # noqa: E402

RATE = 48000
METRICS = ("pesq", "estoi", "si_sdr")
SYSTEMS = ("input", "dfn3", "decision")
BAND_LIMITED_KINDS = ("lowpass_4k", "lowpass_5k5")
ESTOI_TOLERANCE = 0.05
PESQ_TOLERANCE = 0.5
logger = logging.getLogger("eval_decisions")


def metrics(ref: np.ndarray, est: np.ndarray) -> dict[str, float]:
    ref16 = resample(ref[None].astype(np.float32), RATE, 16000)[0]
    est16 = resample(est[None].astype(np.float32), RATE, 16000)[0]
    out = {}
    for name, fn, a, b in (("pesq", pesq_wb, ref16, est16), ("estoi", estoi, ref16, est16),
                           ("si_sdr", si_sdr, ref, est)):
        try:
            out[name] = float(fn(a, b))
        except MetricUndefined:
            out[name] = math.nan
    return out


def never_worse(kind: str, system: dict[str, float], base: dict[str, float]) -> bool:
    ok = not system["estoi"] < base["estoi"] - ESTOI_TOLERANCE
    if kind not in BAND_LIMITED_KINDS:
        ok = ok and not system["pesq"] < base["pesq"] - PESQ_TOLERANCE
    return ok


def evaluate(devset: Path, thresholds: ev.Thresholds) -> tuple[list[dict[str, Any]], float]:
    """Per-file rows; and the evidence's seconds per second of audio."""
    description = manifest(devset)
    cache_path = devset / "wet" / "metrics.json"
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    rows, evidence_s, audio_s = [], 0.0, 0.0
    for entry in description["files"]:
        dry, wet, ref, _ = load_pair(devset, entry)
        start = time.perf_counter()
        decisions = ev.decide_segments(dry, wet, RATE, thresholds)
        evidence_s += time.perf_counter() - start
        audio_s += dry.shape[1] / RATE
        out = ev.apply_verdicts(dry, wet, decisions, RATE)
        key = entry["id"]
        if key not in cache:
            cache[key] = {"input": metrics(ref[0], dry[0]), "dfn3": metrics(ref[0], wet[0])}
        row = {k: entry[k] for k in ("id", "source", "split", "kind", "duration")}
        row.update(input=cache[key]["input"], dfn3=cache[key]["dfn3"])
        same_as = [v.use_recovered for _, _, vs in decisions for v in vs]
        if not any(same_as):
            row["decision"] = cache[key]["input"]
        elif all(same_as):
            row["decision"] = cache[key]["dfn3"]
        else:
            row["decision"] = metrics(ref[0], out[0])
        row["recovered_share"] = round(sum(
            (e - s) for s, e, vs in decisions if vs[0].use_recovered) / dry.shape[1], 3)
        row["segments"] = [{"start_s": round(s / RATE, 2), "end_s": round(e / RATE, 2),
                            **vs[0].to_dict()} for s, e, vs in decisions]
        rows.append(row)
    write_json_atomic(cache_path, cache)
    return rows, evidence_s / max(audio_s, 1e-9)


def _worst(rows: list[dict[str, Any]], system: str) -> dict[str, Any]:
    def key(r: dict[str, Any]) -> tuple[float, float]:
        d_estoi = r[system]["estoi"] - r["input"]["estoi"]
        d_pesq = r[system]["pesq"] - r["input"]["pesq"]
        return (np.nan_to_num(d_estoi, nan=0.0), np.nan_to_num(d_pesq, nan=0.0))

    r = min(rows, key=key)
    return {"id": r["id"], **{f"{m}": _r(r[system][m]) for m in METRICS},
            **{f"input_{m}": _r(r["input"][m]) for m in METRICS}}


def _r(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 3)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"files": len(rows)}
    for system in SYSTEMS:
        s: dict[str, Any] = {}
        for m in METRICS:
            s[m] = _r(float(np.nanmean([r[system][m] for r in rows])))
        s["never_worse"] = sum(never_worse(r["kind"], r[system], r["input"]) for r in rows)
        if system != "input":
            s["worst"] = _worst(rows, system)
        out[system] = s
    out["recovered_share"] = _r(float(np.mean([r["recovered_share"] for r in rows])))
    return out


def group(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    names = sorted({r[key] for r in rows}, key=lambda n: [r[key] for r in rows].index(n))
    return {n: summarise([r for r in rows if r[key] == n]) for n in names}


def _triple(g: dict[str, Any], m: str) -> str:
    return " / ".join(f"{g[s][m]:.2f}" if g[s][m] is not None else "-" for s in SYSTEMS)


def _worst_cell(g: dict[str, Any], system: str) -> str:
    w = g[system]["worst"]
    d_estoi = (w["estoi"] or 0) - (w["input_estoi"] or 0)
    d_pesq = (w["pesq"] or 0) - (w["input_pesq"] or 0)
    return f"{w['id']} ({d_estoi:+.2f}, {d_pesq:+.2f})"


def table(groups: dict[str, dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", "",
             "| group | n | never-worse DFN3 / decision | PESQ in / DFN3 / dec | "
             "ESTOI in / DFN3 / dec | SI-SDR in / DFN3 / dec | recovered share | "
             "worst DFN3 (dESTOI, dPESQ) | worst decision (dESTOI, dPESQ) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        lines.append(f"| {name} | {g['files']} | {g['dfn3']['never_worse']} / "
                     f"{g['decision']['never_worse']} | {_triple(g, 'pesq')} | "
                     f"{_triple(g, 'estoi')} | {_triple(g, 'si_sdr')} | "
                     f"{g['recovered_share']:.2f} | {_worst_cell(g, 'dfn3')} | "
                     f"{_worst_cell(g, 'decision')} |")
    return "\n".join(lines) + "\n"


def measure(rows: list[dict[str, Any]]) -> None:
    """Evidence and oracle per single-segment tune file, sorted by kind."""
    fields = ("removed_db", "envelope_corr", "loud_loss_db", "quiet_loss_db",
              "input_range_db", "residual_range_db", "residual_follow",
              "excess_loud_loss_db", "band_corr", "residual_spread_db", "hum_share")
    print("id".ljust(30), "better", "  dP    dE  ", " ".join(f[:9].rjust(9) for f in fields))
    for r in rows:
        if r["split"] != "tune":
            continue
        d_p = r["dfn3"]["pesq"] - r["input"]["pesq"]
        d_e = r["dfn3"]["estoi"] - r["input"]["estoi"]
        for seg in r["segments"]:
            e = seg["evidence"] or {}
            better = "WET" if (d_p > 0.05 and d_e > -0.02) else "dry"
            values = " ".join(f"{_num(e.get(f)):9.2f}" for f in fields)
            print(r["id"][:30].ljust(30), better.ljust(6), f"{d_p:+.2f} {d_e:+.3f}", values,
                  seg["decision"][:3], "floor" if e.get("floor_measurable") else "nofloor")


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=Path("data/devset"))
    parser.add_argument("--out", type=Path, default=Path("results/decisions"))
    parser.add_argument("--measure", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    rows, evidence_rtf = evaluate(args.devset, ev.DEFAULT_THRESHOLDS)
    if args.measure:
        measure(rows)
    result: dict[str, Any] = {"evidence_seconds_per_audio_second": round(evidence_rtf, 5),
                              "thresholds": ev.DEFAULT_THRESHOLDS.__dict__}
    md = ["# Restore decision on the development set", "",
          f"Evidence cost: {evidence_rtf * 1000:.2f} ms per second of audio.", ""]
    for split in ("tune", "heldout"):
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        result[split] = {"all": summarise(part), "by_kind": group(part, "kind"),
                         "by_source": group(part, "source")}
        md += [f"## {split}", "", table({"all": result[split]["all"]}, "all"),
               table(result[split]["by_kind"], "per kind"),
               table(result[split]["by_source"], "per source")]
    result["files"] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "decisions.json", result)
    (args.out / "decisions.md").write_text("\n".join(md), encoding="utf-8")
    for split in ("tune", "heldout"):
        if split in result:
            a = result[split]["all"]
            logger.info("%s: never-worse input %d, DFN3 %d, decision %d of %d", split,
                        a["input"]["never_worse"], a["dfn3"]["never_worse"],
                        a["decision"]["never_worse"], a["files"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

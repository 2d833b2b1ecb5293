"""The release on REAL band-limited recordings (telephone prompts, archive readings), which
nobody here degraded, against the input and DeepFilterNet3.

    python benchmarks/eval_realset.py [--release checkpoints/hireslm-demo] \
        [--realset data/realset] [--out results/<release>/realset] [--per-source 30] \
        [--write-docs]

The set comes from ``benchmarks/make_realset.py``. There is no clean reference, so each
system is scored by DNSMOS (P.835, fast mode, on the same files for every system) and by the
measured bandwidth of its output (``hireslm.audio.estimate_bandwidth``: the highest
frequency within 60 dB of the long-term spectrum's peak). The target: DNSMOS OVRL no more
than 0.02 below the input's while the band is extended past 7 kHz. With ``--write-docs`` the
table replaces the "## Real band-limited recordings" section of docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402
from eval_release import deepfilternet_baseline, restorer, run_per_file  # noqa: E402

from hireslm.audio import estimate_bandwidth, load_audio, resample  # noqa: E402
from hireslm.evaluation.dnsmos import DNSMOS_RATE, DnsmosScorer  # noqa: E402
from hireslm.fileio import write_json_atomic  # noqa: E402
from hireslm.pipeline import RestorationPipeline, RestoreOptions  # noqa: E402
from hireslm.release import release_hash  # noqa: E402

SECTION = "## Real band-limited recordings"
EXTENDED_HZ = 7000.0


def subset(realset: Path, out: Path, per_source: int) -> list[str]:
    """Link the first ``per_source`` clips of each source folder into ``out``; the sources."""
    sources = sorted(d.name for d in realset.iterdir() if d.is_dir() and d.name != "cache")
    for source in sources:
        for clip in sorted((realset / source).glob("*.wav"))[:per_source]:
            target = out / source / clip.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(clip.resolve())
    return sources


def measure(folder: Path, scorer: DnsmosScorer) -> dict[str, float]:
    """Mean DNSMOS (SIG, BAK, OVRL), median output bandwidth, share of files past 7 kHz."""
    scores, bands = [], []
    for path in sorted(folder.glob("*.wav")):
        wave, rate = load_audio(path, check=False)
        mono = wave.mean(axis=0)
        scores.append(scorer(resample(mono[None], rate, DNSMOS_RATE)[0]))
        bands.append(estimate_bandwidth(mono, rate))
    return {
        "files": len(scores),
        **{key: float(np.mean([s[key] for s in scores])) for key in ("sig", "bak", "ovrl")},
        "bandwidth_hz": float(np.median(bands)),
        "extended": float(np.mean([b > EXTENDED_HZ for b in bands])),
    }


def table(results: dict[str, dict[str, dict[str, float]]], sources: list[str]) -> str:
    lines = ["| source | system | files | SIG | BAK | OVRL | OVRL - input | bandwidth (median) "
             f"| past {EXTENDED_HZ / 1000:g} kHz |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for source in sources:
        base = results["input"][source]["ovrl"]
        for system, per_source in results.items():
            m = per_source[source]
            lines.append(
                f"| {source} | {system} | {m['files']} | {m['sig']:.2f} | {m['bak']:.2f} | "
                f"{m['ovrl']:.2f} | {m['ovrl'] - base:+.2f} | {m['bandwidth_hz'] / 1000:.1f} kHz "
                f"| {m['extended']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=ROOT / "checkpoints" / "hireslm-demo")
    parser.add_argument("--realset", type=Path, default=ROOT / "data" / "realset")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--per-source", type=int, default=30)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    out = args.out or ROOT / "results" / args.release.name / "realset"
    inputs = out / "input"
    sources = subset(args.realset, inputs, args.per_source)
    pipeline = RestorationPipeline.from_pretrained(args.release)
    systems = {
        "input": inputs,
        "deepfilternet3": out / "deepfilternet3",
        "hireslm": out / f"release-{release_hash(args.release)}",
    }
    processes = {"deepfilternet3": deepfilternet_baseline,
                 "hireslm": restorer(pipeline, RestoreOptions())}
    speed = {name: float(np.nanmean([run_per_file(inputs / s, systems[name] / s, process)
                                     for s in sources]))
             for name, process in processes.items()}
    scorer = DnsmosScorer(fast=True)
    results = {name: {s: measure(folder / s, scorer) for s in sources}
               for name, folder in systems.items()}
    write_json_atomic(out / "results.json", {"results": results, "rtf": speed})
    body = "\n".join([
        f"Release `{args.release.name}` on the real band-limited set (docs/evaluation.md, "
        f"`python benchmarks/eval_realset.py --per-source {args.per_source}`): DNSMOS in fast "
        "mode on every system's files alike, and the median bandwidth of the output (highest "
        "frequency within 60 dB of the long-term spectrum's peak). `hireslm` is the default "
        "`hireslm restore`. Target: OVRL no more than 0.02 below the input's, band past "
        f"{EXTENDED_HZ / 1000:g} kHz.",
        "",
        table(results, sources),
        "",
        "Real-time factor over these clips (in-process, model loading excluded): "
        + ", ".join(f"{name} {rtf:.3f}" for name, rtf in speed.items()) + ".",
    ])
    print(body)
    if args.write_docs:
        replace_section(ROOT / "docs" / "results.md", SECTION, body)


if __name__ == "__main__":
    main()

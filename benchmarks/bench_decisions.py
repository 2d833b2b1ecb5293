"""What the restore decision costs: the evidence and the second band reading, per second of
audio, beside DeepFilterNet3 itself, on real noisy short clips and on a 60 s file.

    python benchmarks/bench_decisions.py [--devset data/devset] [--write-docs]

In one process with the shipped release, each input restored through
``RestorationPipeline.stream`` (``--denoise auto``); the pipeline's own stage timings
(``stage_seconds``): ``recovery`` (DeepFilterNet3, the gate, and the evidence inside it),
``evidence`` (``hireslm.pipeline.evidence`` alone), ``band again`` (the analysis of the
recovered signal). With ``--write-docs`` the table replaces the "## What the decision costs"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import load_audio, resample  # noqa: E402
from hireslm.data.degradations.noise import colored_noise, mix_at_snr  # noqa: E402
from hireslm.pipeline import RestorationPipeline  # noqa: E402

SECTION = "## What the decision costs"
STAGES = ("recovery", "evidence", "band again")
RATE = 48000


def inputs(devset: Path) -> dict[str, list[np.ndarray]]:
    entries = json.loads((devset / "devset.json").read_text())["files"]
    noisy = [e for e in entries if e["kind"] in ("white", "pink", "hum", "ambience", "babble")
             and e["duration"] <= 8.0]
    clips = [resample(*load_audio(devset / e["path"]), RATE) for e in noisy]
    speech = np.concatenate([resample(*load_audio(devset / e["reference"]), RATE)
                             for e in entries if e["kind"] == "clean"], axis=1)
    speech = np.tile(speech, (1, -(-60 * RATE // speech.shape[1])))[:, : 60 * RATE]
    pink = colored_noise(1, speech.shape[1], RATE, np.random.default_rng(0), alpha=1.0)
    return {f"{len(clips)} noisy short clips": clips,
            "noisy 60 s": [mix_at_snr(speech, pink, 10.0).astype(np.float32)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=ROOT / "data" / "devset")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    pipeline = RestorationPipeline.from_pretrained(lazy=True)
    lines = ["Measured by `benchmarks/bench_decisions.py` (one process, the shipped release, "
             "`--denoise auto`): seconds per second of audio.", "",
             "| input | audio (s) | recovery (DFN3, gate, evidence) | evidence | band again |",
             "|---|---:|---:|---:|---:|"]
    for name, waves in inputs(args.devset).items():
        pipeline.stage_seconds.clear()
        seconds = 0.0
        for wave in waves:
            for _ in pipeline.stream(wave, sample_rate=RATE):
                pass
            seconds += wave.shape[1] / RATE
        cells = " | ".join(f"{pipeline.stage_seconds.get(s, 0.0) / seconds:.4f}" for s in STAGES)
        lines.append(f"| {name} | {seconds:.0f} | {cells} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.write_docs:
        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()

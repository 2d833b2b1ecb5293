"""Peak memory and wall time of whole ``hireslm restore`` processes on long files, with
variants (options, or another source tree) paired in every round.

    python benchmarks/bench_memory.py --minutes 1 10 [--rounds 2] \
        [--variant default= --variant steps4=--steps 4 --variant bf16=--precision bf16] \
        [--tree before=/tmp/old-checkout]

Inputs are real speech: the LibriVox examples (16 kHz, band-limited, so the generative path
runs) tiled to each length. Each restore runs as its own process, ``OMP_NUM_THREADS`` unset;
peak memory is its maximum resident set (``wait4``); RTF = wall time / audio time. Each
``--tree`` runs the same command with ``PYTHONPATH`` set to that checkout of hireslm
(e.g. ``git archive COMMIT | tar -x -C DIR``), for before/after numbers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "librivox"


def make_input(folder: Path, minutes: float) -> Path:
    """``minutes`` of the examples tiled, 16 kHz FLAC."""
    path = folder / f"speech_{minutes:g}min.flac"
    if not path.exists():
        clips = [sf.read(p, dtype="float32", always_2d=True)[0][:, 0]
                 for p in sorted(EXAMPLES.glob("*.flac"))]
        speech = np.concatenate(clips)
        total = int(minutes * 60 * 16000)
        sf.write(path, np.tile(speech, total // speech.size + 1)[:total], 16000)
    return path


def run(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    start = time.perf_counter()
    # cwd too: ``python -m`` puts the working folder first on sys.path, before PYTHONPATH.
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="restore options of one variant (default: default=)")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="run from this hireslm checkout (repeatable; default: this one)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or ["default="]))
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    rows: dict[tuple[str, str, float], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {m: make_input(Path(tmp), m) for m in args.minutes}
        for _ in range(args.rounds):
            for minutes, path in inputs.items():
                for tree, source in trees.items():
                    for name, extra in variants.items():
                        out = Path(tmp) / "out"
                        env = {**os.environ, "PYTHONPATH": source}
                        env.pop("OMP_NUM_THREADS", None)
                        command = [sys.executable, "-m", "hireslm", "restore", str(path),
                                   "-o", str(out), "--no-progress", "--force",
                                   "--checkpoint",
                                   str(Path(source) / "checkpoints" / "hireslm-demo"),
                                   *shlex.split(extra)]
                        wall, peak = run(command, env, source)
                        rows.setdefault((tree, name, minutes), []).append((wall, peak))
                        print(f"{minutes:g} min {tree} {name}: {wall:.1f} s, "
                              f"RTF {wall / (60 * minutes):.3f}, peak {peak:.0f} MB",
                              flush=True)
    print(f"\n{args.rounds} round(s), load average now {os.getloadavg()[0]:.2f}")
    print("| input | tree | variant | wall (median) | RTF | peak RSS |")
    print("|---|---|---|---|---|---|")
    for (tree, name, minutes), values in rows.items():
        wall = statistics.median(v[0] for v in values)
        peak = max(v[1] for v in values)
        print(f"| {minutes:g} min | {tree} | {name or 'default'} {variants[name]} | "
              f"{wall:.1f} s | {wall / (60 * minutes):.3f} | {peak:.0f} MB |")


if __name__ == "__main__":
    main()

"""torch's CPU threads idle and under load: DiT step time and restore RTF for 1 vs 2 threads,
``OMP_WAIT_POLICY`` ACTIVE vs PASSIVE, on an idle machine and beside one competing
CPU-bound process.

    python benchmarks/bench_threads.py [--rounds 3] [--threads 1 2]

Every configuration runs in its own process (the wait policy is read when OpenMP starts),
loads the demo release and times (a) one DiT forward at the pipeline's batch (4 chunks of 8 s)
over ``--steps`` calls, median, and (b) restoring 10 s of real speech (generative path, the
release's 8 steps), wall time / audio time. The competitor is another process multiplying
512x512 matrices on one thread, as a test run or a second job would. In each round the
configurations run in a new random order, idle and loaded back to back, so drifting
background load falls on all of them alike; the table gives medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import numpy as np
import torch
from pathlib import Path
from hireslm.audio import load_audio, resample
from hireslm.pipeline import RestorationPipeline, RestoreOptions
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
root = Path(sys.argv[3])
pipeline = RestorationPipeline.from_pretrained(root / "checkpoints" / "hireslm-demo")
dit = pipeline.generator.dit
with torch.inference_mode():
    mel = torch.zeros(4, 128, 800)
    cond = pipeline.generator.vae.encode(mel).mean
    x = torch.randn_like(cond)
    t = torch.full((4,), 500.0)
    for _ in range(3):
        dit(x, t, cond)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        dit(x, t, cond)
        times.append(time.perf_counter() - start)
    files = sorted((root / "examples" / "librivox").glob("*.flac"))
    waves = [load_audio(p) for p in files]
    wave = np.concatenate([resample(w, sr, 16000) for w, sr in waves], axis=1)[:, :160000]
    options = RestoreOptions(keep="input")
    pipeline(wave[:, :16000], 16000, options)  # warm-up
    start = time.perf_counter()
    pipeline(wave, 16000, options)
    rtf = (time.perf_counter() - start) / (wave.shape[1] / 16000)
print(json.dumps({"step_ms": 1000 * float(np.median(times)), "rtf": rtf}))
"""

COMPETITOR = r"""
import torch
torch.set_num_threads(1)
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def run_worker(threads: int, policy: str, steps: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads), str(steps), str(ROOT)],
                         env=env, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="DiT calls timed per run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    configs = [(n, p) for n in args.threads for p in ("ACTIVE", "PASSIVE")]
    results: dict[tuple, list[dict]] = {}
    loads = []
    for round_index in range(args.rounds):
        for loaded in (False, True):
            competitor = None
            if loaded:
                competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR],
                                              env={**os.environ, "OMP_NUM_THREADS": "1"})
                time.sleep(1.0)
            try:
                order = configs[:]
                random.Random(round_index * 2 + loaded).shuffle(order)
                for threads, policy in order:
                    result = run_worker(threads, policy, args.steps)
                    results.setdefault((threads, policy, loaded), []).append(result)
                    print(f"round {round_index} {'loaded' if loaded else 'idle  '} "
                          f"threads={threads} {policy:7s} step {result['step_ms']:7.1f} ms "
                          f"rtf {result['rtf']:.3f}", flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
            loads.append(os.getloadavg()[0])
    print(f"\n{args.rounds} rounds; load average during the runs {min(loads):.1f}-"
          f"{max(loads):.1f}")
    print("| threads | OMP_WAIT_POLICY | DiT step idle | under load | ratio | restore RTF idle "
          "| under load | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for threads, policy in configs:
        idle = results[(threads, policy, False)]
        busy = results[(threads, policy, True)]
        s_idle = statistics.median(r["step_ms"] for r in idle)
        s_busy = statistics.median(r["step_ms"] for r in busy)
        r_idle = statistics.median(r["rtf"] for r in idle)
        r_busy = statistics.median(r["rtf"] for r in busy)
        print(f"| {threads} | {policy} | {s_idle:.1f} ms | {s_busy:.1f} ms | "
              f"{s_busy / s_idle:.2f} | {r_idle:.3f} | {r_busy:.3f} | {r_busy / r_idle:.2f} |")


if __name__ == "__main__":
    main()

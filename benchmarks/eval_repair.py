"""Local repair (``hireslm.repair``) on real speech: clipped and with dropouts.

    python benchmarks/eval_repair.py [--rate 48000] [--output table.md] [--write-docs]

The five committed LibriVox readings (16 kHz, 25 s together) are resampled to ``--rate``
and damaged: hard-clipped at 10, 20 and 30 % of each file's peak; 10 ms dropouts every
300 ms, as digital zeros (packet loss) and as a -60 dB dip (tape damage). Each is measured
against the clean reading before and after ``hireslm.repair.repair``: log-spectral distance
at the signal's rate (all bins), PESQ-WB (both resampled to 16 kHz) and SI-SDR, means over
the files; with the damaged share, the runs repaired and the repair's cost in seconds per
second of audio (this machine, one process). A clean row checks that nothing changes. With
``--write-docs`` the table replaces the "## Measured on LibriVox" section of docs/repair.md
(``--rate 48000``) or "## Measured on LibriVox at 16 kHz" (other rates).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import load_audio, resample  # noqa: E402
from hireslm.data.degradations import clipping  # noqa: E402
from hireslm.evaluation.metrics import log_spectral_distance, pesq_wb, si_sdr  # noqa: E402
from hireslm.fileio import write_text_atomic  # noqa: E402
from hireslm.repair import repair  # noqa: E402

logger = logging.getLogger("eval_repair")
DOCS = ROOT / "docs" / "repair.md"


def with_dropouts(wave: np.ndarray, rate: int, gain: float, every_ms: float = 300.0,
                  gap_ms: float = 10.0) -> np.ndarray:
    """``gap_ms`` dropouts every ``every_ms`` from 50 ms on, scaled by ``gain``."""
    out = wave.copy()
    step, length = int(every_ms * rate / 1000), int(gap_ms * rate / 1000)
    for start in range(int(0.05 * rate), wave.shape[-1], step):
        out[..., start:start + length] *= gain
    return out


CONDITIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "clean": lambda w, r: w.copy(),
    "clipped at 10 % of peak": lambda w, r: clipping(w, r, None, threshold=0.1),
    "clipped at 20 % of peak": lambda w, r: clipping(w, r, None, threshold=0.2),
    "clipped at 30 % of peak": lambda w, r: clipping(w, r, None, threshold=0.3),
    "10 ms dropouts / 300 ms (zeros)": lambda w, r: with_dropouts(w, r, 0.0),
    "10 ms dropouts / 300 ms (-60 dB)": lambda w, r: with_dropouts(w, r, 1e-3),
}


def metrics(reference: np.ndarray, estimate: np.ndarray, rate: int) -> tuple[float, ...]:
    """``(LSD, PESQ-WB, SI-SDR)`` of ``(N,)`` signals at ``rate``."""
    ref16, est16 = (resample(np.asarray(w, np.float32), rate, 16000)
                    for w in (reference, estimate))
    if np.array_equal(reference, estimate):
        return 0.0, pesq_wb(ref16, est16), float("inf")
    return (log_spectral_distance(reference, estimate, rate), pesq_wb(ref16, est16),
            si_sdr(reference, estimate))


def evaluate(rate: int) -> str:
    """The markdown table for the readings at ``rate``."""
    files = sorted((ROOT / "examples" / "librivox").glob("*.flac"))
    clean = []
    for path in files:
        wave, native = load_audio(path)
        clean.append(resample(wave, native, rate))
    seconds = sum(w.shape[1] for w in clean) / rate
    rows = []
    for name, damage in CONDITIONS.items():
        before, after, damaged_share, runs, cost = [], [], [], 0, 0.0
        for wave in clean:
            damaged = damage(wave, rate)
            start = time.perf_counter()
            result = repair(damaged, rate)
            cost += time.perf_counter() - start
            runs += len(result.clipped) + len(result.dropouts)
            damaged_share.append(np.mean(damaged != wave))
            before.append(metrics(wave[0], damaged[0], rate))
            after.append(metrics(wave[0], result.wave[0], rate))
        b, a = np.mean(before, axis=0), np.mean(after, axis=0)
        logger.info("%s: %s -> %s (%.1f s)", name, b.round(3), a.round(3), cost)
        rows.append(
            f"| {name} | {100 * np.mean(damaged_share):.1f} | {runs} "
            f"| {b[0]:.3f} | **{a[0]:.3f}** | {b[1]:.2f} | **{a[1]:.2f}** "
            f"| {b[2]:.1f} | **{a[2]:.1f}** | {cost / seconds:.3f} |")
    header = (
        f"{len(files)} LibriVox readings ({seconds:.1f} s) at {rate} Hz; means over the files; "
        "input | **repaired**. LSD over all bins at the signal's rate, PESQ-WB at 16 kHz, "
        "SI-SDR in dB (inf: identical). Cost: seconds of repair per second of audio on this "
        "machine (2 shared cores).\n\n"
        "| condition | damaged % | runs repaired | LSD in | LSD out | PESQ in | PESQ out "
        "| SI-SDR in | SI-SDR out | cost s/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--output", type=Path, help="write the markdown table here too")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = evaluate(args.rate)
    sys.stdout.write(table + "\n")
    if args.output:
        write_text_atomic(args.output, table + "\n")
    if args.write_docs:
        heading = ("## Measured on LibriVox" if args.rate == 48000
                   else f"## Measured on LibriVox at {args.rate // 1000} kHz")
        replace_section(DOCS, heading, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

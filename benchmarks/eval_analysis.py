"""Detector accuracy of ``hireslm.analysis`` on the held-out test set.

    python benchmarks/eval_analysis.py [--testset data/testset] [--clips-per-kind 40] \
        [--records analysis.jsonl] [--write-docs]

Each kind's first clips (sorted by path, the same clips in every kind; 0 takes all) are
analysed as ``hireslm analyze`` does. The table gives, per kind, the share of files each
damage flag is raised on, and the medians of the bandwidth estimate (against the true cutoff
where the kind's ``degradations.jsonl`` states one), the SNR and the RT60 estimate. Ideally
each kind raises its own flags on every file (combo: band_limited, noisy, reverberant) and
clean raises none. ``--records`` keeps every file's record (JSONL) for a closer look. With
``--write-docs`` the table replaces the "## Accuracy on the test set" section of
docs/analysis.md ("## Accuracy on the whole test set" with ``--clips-per-kind 0``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.analysis import DamageFlags  # noqa: E402
from hireslm.cli.analyze import analysis_record  # noqa: E402
from hireslm.fileio import write_text_atomic  # noqa: E402

SECTION = "## Accuracy on the test set"
SECTION_ALL = "## Accuracy on the whole test set"
FLAGS = [name for name in DamageFlags.__dataclass_fields__]
# What each kind should raise (configs/testsets/heldout.yaml); clean: nothing.
EXPECTED = {
    "clean": set(), "clipping": {"clipped"}, "combo": {"band_limited", "noisy", "reverberant"},
    "lowpass_4k": {"band_limited"}, "lowpass_8k": {"band_limited"},
    "mp3_32k": {"band_limited", "codec"}, "noise_15db": {"noisy"}, "noise_5db": {"noisy"},
    "reverb": {"reverberant"},
}
logger = logging.getLogger("eval_analysis")


def true_cutoff(kind_dir: Path) -> float | None:
    """The low-pass cutoff every file of a kind got, if one is stated and it is the same."""
    path = kind_dir / "degradations.jsonl"
    if not path.exists():
        return None
    cutoffs = set()
    for line in path.read_text().splitlines():
        for step in json.loads(line).get("degradations", []):
            if step.get("name") == "lowpass":
                cutoffs.add(float(step["params"]["cutoff_hz"]))
    return cutoffs.pop() if len(cutoffs) == 1 else None


def analyse_kind(kind_dir: Path, names: list[Path]) -> list[dict[str, Any]]:
    records = []
    for name in names:
        path = kind_dir / name
        try:
            records.append(analysis_record(path))
        except Exception as exc:  # a broken test file is reported, not fatal
            logger.warning("%s: %s", path, exc)
    return records


def summarise(kind: str, records: list[dict[str, Any]], cutoff: float | None) -> dict[str, Any]:
    channels = [record["analysis"][0] for record in records]

    def median(key: str) -> float | None:
        values = [c[key] for c in channels if c[key] is not None]
        return float(np.median(values)) if values else None

    return {
        "kind": kind, "files": len(records),
        "flags": {f: float(np.mean([c["flags"][f] for c in channels])) for f in FLAGS},
        "bandwidth_hz": median("bandwidth_hz"), "true_cutoff_hz": cutoff,
        "snr_db": median("snr_db"), "rt60_s": median("rt60_s"),
        "clipped_fraction": median("clipped_fraction"), "codec_holes": median("codec_holes"),
    }


def markdown(rows: list[dict[str, Any]], clips: int, seconds: float) -> str:
    head = ("| kind | files | " + " | ".join(FLAGS)
            + " | bandwidth (true) | SNR dB | RT60 s | clipped | holes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        expected = EXPECTED.get(row["kind"], set())
        cells = []
        for flag in FLAGS:
            text = f"{row['flags'][flag]:.2f}"
            cells.append(f"**{text}**" if flag in expected else text)
        bandwidth = "-" if row["bandwidth_hz"] is None else f"{row['bandwidth_hz'] / 1000:.1f}k"
        if row["true_cutoff_hz"]:
            bandwidth += f" ({row['true_cutoff_hz'] / 1000:.0f}k)"
        lines.append(
            f"| {row['kind']} | {row['files']} | " + " | ".join(cells)
            + f" | {bandwidth} | {_fmt(row['snr_db'], 1)} | {_fmt(row['rt60_s'], 2)}"
            + f" | {_fmt(row['clipped_fraction'], 4)} | {_fmt(row['codec_holes'], 3)} |"
        )
    which = "all clips" if clips == 0 else f"the first {clips} clips (sorted by path)"
    return (
        f"Share of files each flag is raised on, {which} of each kind; **bold**: the flags the "
        "kind should raise (all others should read 0). Medians of the bandwidth estimate "
        "(true low-pass cutoff in brackets), SNR, RT60, clipped share and codec holes. "
        f"`python benchmarks/eval_analysis.py --clips-per-kind {clips}`, "
        f"{seconds:.0f} s on 1 CPU thread.\n\n" + "\n".join(lines)
    )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testset", type=Path, default=ROOT / "data" / "testset")
    parser.add_argument("--clips-per-kind", type=int, default=40, help="0: all")
    parser.add_argument("--records", type=Path, default=None, help="write every record here")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    clean = args.testset / "clean"
    if not clean.is_dir():
        logger.error("%s: no test set (benchmarks/make_testset.py builds it)", args.testset)
        return 1
    names = sorted(p.relative_to(clean) for p in clean.rglob("*.wav"))
    if args.clips_per_kind > 0:
        names = names[: args.clips_per_kind]
    kinds = sorted(p.name for p in args.testset.iterdir() if (p / "degradations.jsonl").exists())
    start = time.perf_counter()
    rows, everything = [], []
    for kind in ["clean", *kinds]:
        records = analyse_kind(args.testset / kind, names)
        everything += [{"kind": kind, **r} for r in records]
        rows.append(summarise(kind, records, true_cutoff(args.testset / kind)))
        logger.info("%s: %s", kind, json.dumps(rows[-1]))
    table = markdown(rows, args.clips_per_kind, time.perf_counter() - start)
    print(table)
    if args.records:
        write_text_atomic(args.records, "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in everything))
    if args.write_docs:
        section = SECTION_ALL if args.clips_per_kind == 0 else SECTION
        replace_section(ROOT / "docs" / "analysis.md", section, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

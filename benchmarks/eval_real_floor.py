"""The evidence decision on REAL noisy recordings: Tux Paint phrases whose own room/hiss
floor lies less than 30 dB below their loudest frames (the recordings make_devset.py
refuses as references). No clean reference exists, so DNSMOS OVRL only.

    python benchmarks/eval_real_floor.py [--devset data/devset] [--per-language 12]

Reuses the dev set's download cache (``DEVSET/cache``). Prints per file the verdict and
DNSMOS of the input, DeepFilterNet3 alone and the decision, then the means.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_devset import floor_depth_db  # noqa: E402
from make_realset import fetch_deb, unpack_deb  # noqa: E402

from hireslm.audio import load_audio, normalize_loudness  # noqa: E402
from hireslm.audio.resample import resample  # noqa: E402
from hireslm.pipeline import evidence as ev  # noqa: E402

RATE = 48000
MAX_DEPTH_DB = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=Path("data/devset"))
    parser.add_argument("--per-language", type=int, default=12)
    parser.add_argument("--languages", default="ru,ro")
    args = parser.parse_args(argv)
    from hireslm.evaluation.dnsmos import DnsmosScorer
    from hireslm.recovery import DeepFilterNet3Recovery

    recovery, scorer = DeepFilterNet3Recovery(), DnsmosScorer()
    deb = fetch_deb("tuxpaint-stamps-default", args.devset / "cache")
    rows = []
    with tempfile.TemporaryDirectory(prefix=".unpacked.", dir=args.devset / "cache") as tmp:
        root = unpack_deb(deb, Path(tmp) / "tux") / "usr/share/tuxpaint/stamps"
        for lang in args.languages.split(","):
            paths = sorted(root.glob(f"**/*_desc_{lang}.ogg"),
                           key=lambda p: hashlib.sha256(str(p.relative_to(root)).encode())
                           .hexdigest())
            picked = 0
            for path in paths:
                if picked >= args.per_language:
                    break
                wave, rate = load_audio(path)
                mono = wave.mean(axis=0)
                if np.max(np.abs(mono)) >= 0.99 or floor_depth_db(mono, rate) >= MAX_DEPTH_DB:
                    continue
                picked += 1
                dry, _ = normalize_loudness(resample(mono[None], rate, RATE), RATE)
                wet = recovery(dry)
                decisions = ev.decide_segments(dry, wet, RATE)
                out = ev.apply_verdicts(dry, wet, decisions, RATE)
                scores = [scorer(resample(y, RATE, 16000)[0])["ovrl"] for y in (dry, wet, out)]
                verdict = decisions[0][2][0]
                rows.append((lang, path.name, verdict.decision, *scores))
                print(f"{lang} {path.name:40s} {dry.shape[1] / RATE:4.1f} s "
                      f"{verdict.decision:9s} DNSMOS in {scores[0]:.2f} DFN3 {scores[1]:.2f} "
                      f"decision {scores[2]:.2f}", flush=True)
    means = np.mean([r[3:] for r in rows], axis=0)
    print(f"{len(rows)} files: recovered {sum(r[2] == ev.RECOVERED for r in rows)}; DNSMOS "
          f"OVRL input {means[0]:.2f}, DFN3 {means[1]:.2f}, decision {means[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``hireslm evaluate``: score restored files against clean references.

Every audio file under REF_DIR is paired with the file at the same relative path (any audio
extension) under EST_DIR; both are resampled to 48 kHz and must be sample-aligned. Writes
``metrics.csv``, ``metrics.json`` (per file) and ``summary.md`` (means) into OUT. With
``--input DIR`` the degraded inputs are scored too, and shown beside the restored files with
the difference. OUT never lies inside REF_DIR or the ``--input`` folder (the user's
recordings): such a folder, given or by default, is refused. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np

from hireslm.audio.io import AUDIO_EXTENSIONS, load_audio
from hireslm.audio.resample import resample
from hireslm.evaluation.evaluate import (
    DEFAULT_METRICS,
    METRICS,
    EvaluationOptions,
    FileResult,
    evaluate_dirs,
)
from hireslm.evaluation.pairs import CHANNEL_MODES, LoadedPair
from hireslm.evaluation.plots import plot_spectrograms
from hireslm.evaluation.report import (
    comparison_markdown,
    markdown_table,
    summarise,
    write_reports,
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref_dir", type=Path, help="clean references (recursive)")
    parser.add_argument("est_dir", type=Path, help="restored files, mirroring REF_DIR")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="report folder, never inside REF_DIR or --input DIR "
                        "(default: EST_DIR/evaluation)")
    parser.add_argument("--kinds", action="store_true",
                        help="EST_DIR holds one sub-folder per degradation kind, each "
                             "mirroring REF_DIR; one table row per kind")
    parser.add_argument("--group-by-folder", action="store_true",
                        help="one table row per first-level sub-folder of REF_DIR")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated subset of {','.join(METRICS)} (default: all; "
                             "lsd_bwe only with --input or --lsd-cutoff-hz)")
    parser.add_argument("--channels", choices=CHANNEL_MODES, default="mix",
                        help="mix: score the mono mix; each: score channel by channel and "
                             "average (default: mix)")
    parser.add_argument("--length-tolerance-ms", type=float, default=10.0,
                        help="length differences up to this are trimmed, longer ones are "
                             "errors (default: 10)")
    parser.add_argument("--lsd-split-hz", type=float, default=4000.0,
                        help="LSD-HF counts the band from here up (default: 4000)")
    parser.add_argument("--lsd-cutoff-hz", type=float, default=None,
                        help="lsd_bwe_hf/_lf split here for every file (default: at each "
                             "file's cutoff, measured from its --input file)")
    parser.add_argument("--dnsmos-fast", action="store_true",
                        help="score clips under 9.01 s in one DNSMOS window instead of the "
                             "reference script's 1 s hops over the doubled clip")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even when restored files are missing")
    parser.add_argument("--plots", action="store_true",
                        help="write spectrogram PNGs (input/restored/reference) to OUT/plots")
    parser.add_argument("--input", "--input-dir", dest="input_dir", type=Path, default=None,
                        metavar="DIR",
                        help="the degraded inputs, mirroring REF_DIR (per kind with --kinds): "
                             "scored against the references too and shown beside the "
                             "restored files with the difference; the plots' first panel")
    parser.add_argument("--max-plots", type=int, default=8,
                        help="plots per group (default: 8)")


def run(args: argparse.Namespace) -> int:
    """Evaluate; 0 when every reference was scored (missing allowed with --allow-missing),
    2 for a report folder inside the references or the inputs."""
    out_dir = args.out if args.out is not None else args.est_dir / "evaluation"
    refused = _inside_an_input(out_dir, args)
    if refused:
        logger.error("%s", refused)
        return 2
    try:
        if args.metrics is not None:
            metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
        elif args.input_dir is not None or args.lsd_cutoff_hz is not None:
            metrics = tuple(METRICS)
        else:
            metrics = DEFAULT_METRICS
        options = EvaluationOptions(metrics=metrics, channels=args.channels,
                                    length_tolerance_ms=args.length_tolerance_ms,
                                    lsd_split_hz=args.lsd_split_hz,
                                    lsd_cutoff_hz=args.lsd_cutoff_hz,
                                    dnsmos_fast=args.dnsmos_fast)
        on_scored = _plotter(args, out_dir / "plots") if args.plots else None
        evaluation = evaluate_dirs(args.ref_dir, args.est_dir, options, kinds=args.kinds,
                                   group_by_folder=args.group_by_folder, exclude=[out_dir],
                                   on_scored=on_scored, degraded_dir=args.input_dir)
        inputs = None
        if args.input_dir is not None:
            logger.info("scoring the inputs in %s against the same references", args.input_dir)
            inputs = evaluate_dirs(args.ref_dir, args.input_dir, options, kinds=args.kinds,
                                   group_by_folder=args.group_by_folder, exclude=[out_dir],
                                   estimate_name="input file", degraded_dir=args.input_dir)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        logger.error("%s", exc)
        return 1
    settings = {"ref_dir": str(args.ref_dir), "est_dir": str(args.est_dir),
                "input_dir": None if args.input_dir is None else str(args.input_dir),
                "kinds": args.kinds, "group_by_folder": args.group_by_folder}
    paths = write_reports(evaluation, out_dir, settings, inputs=inputs)
    logger.info("means:\n%s", markdown_table(evaluation, summarise(evaluation)))
    if inputs is not None:
        logger.info("%s", comparison_markdown(evaluation, inputs).lstrip("\n"))
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    status = Counter(r.status for r in evaluation.results)
    if status["missing"]:
        log = logger.warning if args.allow_missing else logger.error
        log("%d of %d references have no restored file", status["missing"],
            len(evaluation.results))
    if status["error"]:
        logger.error("%d pairs could not be scored; see %s", status["error"], paths["csv"])
    if inputs is not None:
        left_out = sum(r.status != "ok" for r in inputs.results)
        if left_out:
            logger.warning("the comparison leaves out %d of %d references: no input under %s, "
                           "or it could not be scored (see %s)", left_out,
                           len(inputs.results), args.input_dir, paths["csv"])
    failed = status["error"] or (status["missing"] and not args.allow_missing)
    return 1 if failed else 0


def _inside_an_input(out_dir: Path, args: argparse.Namespace) -> str | None:
    """Why ``out_dir`` may not take the report (it is or lies inside REF_DIR or the
    ``--input`` folder), or None."""
    target = out_dir.resolve()
    for label, folder in (("REF_DIR", args.ref_dir), ("--input", args.input_dir)):
        if folder is None:
            continue
        root = folder.resolve()
        if target == root or root in target.parents:
            default = "" if args.out is not None else " (the default, EST_DIR/evaluation)"
            return (f"{out_dir}{default} lies inside {label} {folder}: evaluation never writes "
                    "into the recordings it reads; name a report folder elsewhere with -o")
    return None


def _plotter(args: argparse.Namespace, plots_dir: Path):
    """An ``on_scored`` hook that plots the first ``--max-plots`` files of each group."""
    done: Counter[str] = Counter()

    def on_scored(result: FileResult, loaded: LoadedPair) -> None:
        if done[result.group] >= args.max_plots:
            return
        done[result.group] += 1
        panels = []
        if args.input_dir is not None:
            root = args.input_dir / result.group if args.kinds else args.input_dir
            degraded = _load_input(root, result.key, loaded)
            if degraded is not None:
                panels.append(("input", degraded))
        panels += [("output", loaded.estimate.mean(0)), ("reference", loaded.reference.mean(0))]
        scores = "  ".join(f"{name} {result.metrics[col]:.2f}"
                           for name, col in (("LSD", "lsd"), ("PESQ", "pesq"))
                           if not math.isnan(result.metrics.get(col, math.nan)))
        # keys hold the sub-folders already; only a kind is not part of them
        group_dir = plots_dir / result.group if args.kinds else plots_dir
        plot_spectrograms(panels, loaded.sample_rate, group_dir / f"{result.key}.png",
                          title=f"{result.key}  {scores}")

    return on_scored


def _load_input(root: Path, key: str, loaded: LoadedPair) -> np.ndarray | None:
    """The degraded input for ``key`` under ``root``, mono at the pair's rate and length."""
    stem = root / key
    candidates = [p for p in sorted(stem.parent.glob(f"{stem.name}.*"))
                  if p.suffix.lower() in AUDIO_EXTENSIONS and p.with_suffix("").name == stem.name]
    if not candidates:
        logger.warning("%s: no input file for the plot", stem)
        return None
    wave, rate = load_audio(candidates[0])
    wave = resample(wave, rate, loaded.sample_rate).mean(0)
    n = loaded.reference.shape[1]
    return np.pad(wave[:n], (0, max(0, n - wave.shape[0])))

"""Command-line entry for training: ``--config PATH`` plus ``key=value`` overrides.

Used by ``train/train_<stage>.py`` (run plainly or under ``accelerate launch``) and by the
``hireslm train`` sub-command.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from hireslm.config import load_config
from hireslm.training.loop import fit
from hireslm.training.stages import STAGE_CLASSES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` (its ``stage`` key picks the stage) and ``key=value`` overrides."""
    parser.add_argument("--config", required=True,
                        help="stage config YAML (e.g. configs/vae/base.yaml)")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="key=value config overrides, e.g. run_dir=runs/x train.max_steps=10")


def run(args: argparse.Namespace) -> int:
    """Train the config's stage (``args.stage``, when set, must match it); prints the release."""
    cfg = load_config(args.config, args.overrides)
    stage_name = cfg.get("stage")
    if stage_name not in STAGE_CLASSES:
        raise SystemExit(f"config {args.config}: 'stage' must be one of {sorted(STAGE_CLASSES)}, "
                         f"got {stage_name!r}")
    expected = getattr(args, "stage", None)
    if expected is not None and stage_name != expected:
        raise SystemExit(f"config {args.config} is for stage '{stage_name}', not '{expected}'")
    release_dir = fit(STAGE_CLASSES[stage_name](), cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(release_dir)
    return 0


def main(stage: str, argv: Sequence[str] | None = None) -> int:
    """``train/train_<stage>.py``: parse, set up logging, train."""
    parser = argparse.ArgumentParser(description=f"train the {stage} stage")
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.stage = stage
    rank = int(os.environ.get("RANK", "0"))
    # Other ranks report only problems: their progress lines would repeat rank 0's.
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)
    return run(args)

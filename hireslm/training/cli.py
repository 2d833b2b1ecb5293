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
from hireslm.training.stages import STAGES


def add_arguments(parser: argparse.ArgumentParser, stage: str | None = None) -> None:
    if stage is None:
        parser.add_argument("stage", choices=sorted(STAGES), help="which stage to train")
    parser.add_argument("--config", required=True,
                        help="stage config YAML (e.g. configs/vae/base.yaml)")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="key=value config overrides, e.g. run_dir=runs/x train.max_steps=10")


def run(args: argparse.Namespace) -> int:
    """Train ``args.stage`` with the loaded config; prints the release folder."""
    cfg = load_config(args.config, args.overrides)
    stage_name = str(cfg.get("stage", args.stage))
    if stage_name != args.stage:
        raise SystemExit(f"config {args.config} is for stage '{stage_name}', not '{args.stage}'")
    release_dir = fit(STAGES[args.stage](), cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(release_dir)
    return 0


def main(stage: str, argv: Sequence[str] | None = None) -> int:
    """``train/train_<stage>.py``: parse, set up logging, train."""
    parser = argparse.ArgumentParser(description=f"train the {stage} stage")
    add_arguments(parser, stage=stage)
    args = parser.parse_args(argv)
    args.stage = stage
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)
    return run(args)

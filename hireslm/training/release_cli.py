"""``hireslm release``: assemble a release from stage releases of several runs, or show one."""

from __future__ import annotations

import argparse
import json

from omegaconf import OmegaConf

from hireslm.release import combine_releases, load_release_config, read_meta

STAGE_NAMES = ("recovery", "vae", "dit", "vocoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    combine = sub.add_parser("combine", help="copy stages from run releases into one release")
    combine.add_argument("out_dir", help="release folder to write (created)")
    for stage in STAGE_NAMES:
        combine.add_argument(f"--{stage}", metavar="DIR", help=f"release holding the {stage}")
    show = sub.add_parser("show", help="print a release's config and per-stage metadata")
    show.add_argument("release_dir")


def run(args: argparse.Namespace) -> int:
    if args.action == "combine":
        sources = {s: getattr(args, s) for s in STAGE_NAMES if getattr(args, s)}
        if not sources:
            raise SystemExit("name at least one stage, e.g. --vae runs/vae/release")
        print(combine_releases(args.out_dir, **sources))
        return 0
    config = load_release_config(args.release_dir)
    print(OmegaConf.to_yaml(config))
    print(json.dumps(read_meta(args.release_dir), indent=2, sort_keys=True))
    return 0

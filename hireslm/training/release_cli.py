"""``hireslm release``: assemble a release from stage releases of several runs, show one, or
merge a LoRA adapter folder into a full release (``merge-lora``)."""

from __future__ import annotations

import argparse
import json

from omegaconf import OmegaConf

from hireslm.release import combine_releases, load_release_config, read_meta, store_half
from hireslm.training.adapters import merge_adapter

STAGE_NAMES = ("recovery", "vae", "dit", "vocoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    combine = sub.add_parser("combine", help="copy stages from run releases into one release")
    combine.add_argument("out_dir", help="release folder to write (created)")
    for stage in STAGE_NAMES:
        combine.add_argument(f"--{stage}", metavar="DIR", help=f"release holding the {stage}")
    combine.add_argument("--fp16", nargs="+", default=[], choices=STAGE_NAMES, metavar="STAGE",
                         help="store these stages' weights as float16 (half the size)")
    show = sub.add_parser("show", help="print a release's config and per-stage metadata")
    show.add_argument("release_dir")
    merge = sub.add_parser("merge-lora", help="merge a LoRA adapter folder (run_dir/adapter) "
                                              "into its base release, as a new release")
    merge.add_argument("base_dir", help="the release the adapter was trained from (init_from)")
    merge.add_argument("adapter_dir",
                       help="adapter folder: adapter.yaml + <stage>.lora.safetensors")
    merge.add_argument("out_dir", help="release folder to write (must not be base_dir)")
    merge.add_argument("--force", action="store_true",
                       help="merge even if base_dir's weights are not the adapter's base")


def run(args: argparse.Namespace) -> int:
    if args.action == "combine":
        sources = {s: getattr(args, s) for s in STAGE_NAMES if getattr(args, s)}
        if not sources:
            raise SystemExit("name at least one stage, e.g. --vae runs/vae/release")
        print(combine_releases(args.out_dir, **sources))
        for stage in args.fp16:
            store_half(args.out_dir, stage)
        return 0
    if args.action == "merge-lora":
        print(merge_adapter(args.base_dir, args.adapter_dir, args.out_dir, force=args.force))
        return 0
    config = load_release_config(args.release_dir)
    print(OmegaConf.to_yaml(config))
    print(json.dumps(read_meta(args.release_dir), indent=2, sort_keys=True))
    return 0

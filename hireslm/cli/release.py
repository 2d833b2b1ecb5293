"""``hireslm release``: assemble a release from stage releases of several runs, show one, or
merge a LoRA adapter folder into a full release (``merge-lora``)."""

from __future__ import annotations

import argparse
import json
import os

from omegaconf import DictConfig, OmegaConf

from hireslm.fileio import file_sha256
from hireslm.recovery import PRETRAINED_RECOVERY
from hireslm.release import (
    combine_releases,
    load_release_config,
    read_meta,
    recorded_sha256,
    store_half,
    weights_path,
)

STAGE_NAMES = ("recovery", "vae", "dit", "vocoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    combine = sub.add_parser("combine", help="copy stages from run releases into one release")
    combine.add_argument("out_dir", help="release folder to write (created)")
    for stage in STAGE_NAMES:
        combine.add_argument(f"--{stage}", metavar="DIR", help=f"release holding the {stage}")
    combine.add_argument("--fp16", nargs="+", default=[], choices=STAGE_NAMES, metavar="STAGE",
                         help="store these stages' weights as float16 (half the size)")
    show = sub.add_parser("show", help="print a release's config, per-stage metadata and "
                                       "whether each weights file matches its sha256 "
                                       "(exit 1 if one is missing or changed)")
    show.add_argument("release_dir", help="the release folder to show")
    merge = sub.add_parser("merge-lora", help="merge a LoRA adapter folder (run_dir/adapter) "
                                              "into its base release, as a new release")
    merge.add_argument("base_dir", help="the release the adapter was trained from (init_from)")
    merge.add_argument("adapter_dir",
                       help="adapter folder: adapter.yaml + <stage>.lora.safetensors")
    merge.add_argument("out_dir", help="release folder to write (must not be base_dir)")
    merge.add_argument("--force", action="store_true",
                       help="merge even if base_dir's weights are not the adapter's base")
    merge.add_argument("--overwrite", action="store_true",
                       help="replace out_dir if it exists and is not empty (refused otherwise)")


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
        # here: adapters import peft (about a second) that combine and show never need
        from hireslm.training.adapters import merge_adapter

        print(merge_adapter(args.base_dir, args.adapter_dir, args.out_dir, force=args.force,
                            overwrite=args.overwrite))
        return 0
    config = load_release_config(args.release_dir)
    print(OmegaConf.to_yaml(config))
    print(json.dumps(read_meta(args.release_dir), indent=2, sort_keys=True))
    status = weights_status(args.release_dir)
    for stage, state in status.items():
        print(f"weights {stage}: {state}")
    return 1 if {"missing", "changed"} & set(status.values()) else 0


def weights_status(release_dir: str | os.PathLike) -> dict[str, str]:
    """Stage -> how its weights stand against ``meta.json``: ``ok`` (the sha256 matches),
    ``changed`` (it does not), ``unverified`` (no sha256 recorded), ``missing`` (no file) or
    ``pretrained`` (the weights ship with a library, not the release)."""
    config = load_release_config(release_dir)
    status = {}
    for stage in (str(key) for key in config if key != "audio"):
        entry = config[stage]
        if isinstance(entry, DictConfig) and entry.get("model") in PRETRAINED_RECOVERY:
            status[stage] = "pretrained"
        elif not weights_path(release_dir, stage).is_file():
            status[stage] = "missing"
        elif (recorded := recorded_sha256(release_dir, stage)) is None:
            status[stage] = "unverified"
        else:
            found = file_sha256(weights_path(release_dir, stage))
            status[stage] = "ok" if found == recorded else "changed"
    return status

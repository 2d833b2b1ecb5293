"""``hireslm`` command line: a thin dispatcher over the sub-commands' modules.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module, one-line help); plain dict, no import-time registry.
COMMANDS: dict[str, tuple[str, str]] = {
    "restore": ("hireslm.cli.restore", "restore speech recordings to 48 kHz"),
    "analyze": ("hireslm.cli.analyze", "measure each file's damage (bandwidth, noise, ...)"),
    "degrade": ("hireslm.cli.degrade", "make degraded copies of clean files (paired test sets)"),
    "evaluate": ("hireslm.cli.evaluate", "score restored files against clean references"),
    "train": ("hireslm.training.cli", "train a stage from its config (accelerate-aware)"),
    "release": ("hireslm.training.release_cli", "combine stage releases into one, or show one"),
    "data": ("hireslm.cli.data", "build and inspect data manifests"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hireslm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``hireslm`` command line: a thin dispatcher over the sub-commands' modules.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Only the
chosen command's module is imported (the others pull in torch, training, peft...), so
``hireslm --help`` and ``--version`` start in a fraction of a second.

Exit codes: 0 done, 1 some files failed (or an environment error such as a full disk),
2 a usage error (a missing input, a bad release folder, an output path that is a file),
130 interrupted (one line says so, and for ``restore`` that a rerun resumes), 141 the reader
of stdout went away (``release show | head``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import hireslm

# name -> (module, one-line help); plain dict, no import-time registry.
COMMANDS: dict[str, tuple[str, str]] = {
    "restore": ("hireslm.cli.restore", "restore speech recordings to 48 kHz"),
    "analyze": ("hireslm.cli.analyze", "measure each file's damage (bandwidth, noise, ...)"),
    "degrade": ("hireslm.cli.degrade", "make degraded copies of clean files (paired test sets)"),
    "evaluate": ("hireslm.cli.evaluate", "score restored files against clean references"),
    "train": ("hireslm.cli.train", "train a stage from its config (accelerate-aware)"),
    "release": ("hireslm.cli.release",
                "combine stage releases into one, show one, or merge a LoRA adapter"),
    "data": ("hireslm.cli.data", "build and inspect data manifests"),
}

# What a rerun of an interrupted command does, where it picks up the work (the others start
# over).
RESUME = {
    "restore": "; run the same command again to resume (finished files are kept)",
    "train": "; run the same command again to resume from its last checkpoint "
             "(train.ckpt_every)",
}

DESCRIPTION = ("Restore speech recordings (any rate, format and length) to 48 kHz with a "
               "latent diffusion model.")
EPILOG = """\
examples:
  hireslm restore recordings/ -o restored/    restore a folder tree (mirrored, resumable)
  hireslm restore take.mp3 -o out/ --dry-run  list what would be done
  hireslm analyze recordings/                 what is wrong with each file
  hireslm COMMAND --help                      the options of one command

exit status: 0 done, 1 some files failed, 2 usage error, 130 interrupted.
Errors are one line; --debug shows the traceback."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions' line breaks and appends ``(default: X)`` to an option's help
    unless the help already speaks of its default or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default is None
                or action.default is False or action.default == []
                or action.default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``hireslm`` parser. ``commands`` names the sub-commands whose modules are imported
    and whose arguments are added (default: all); the others are listed with their help only.
    """
    parser = argparse.ArgumentParser(prog="hireslm", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"hireslm {hireslm.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and a traceback instead of a one-line error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text,
                                        formatter_class=HelpFormatter)
        if commands is None or name in commands:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
            _use_formatter(command_parser)
    return parser


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """``HelpFormatter`` for the actions a command adds itself (``release show``, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.formatter_class = HelpFormatter
                _use_formatter(child)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv``: the first word that is not an option (the
    top-level options take no values)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def configure_threads(threads: int | None) -> None:
    """torch's intra-op threads: ``threads`` if given, else torch's own default (the
    physical cores, or ``OMP_NUM_THREADS``). See docs/benchmarks.md, "Threads under load"."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before torch (and its OpenMP runtime) is first imported: idle OpenMP threads sleep
    # instead of spinning, so two threads do not collapse when another process wants the
    # CPU (docs/benchmarks.md, "Threads under load").
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = chosen_command(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    debug = args.debug
    logging.basicConfig(
        level=logging.DEBUG if args.verbose or debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        configure_threads(getattr(args, "threads", None))
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # here, so that a reader gone away is caught below
        return code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"hireslm {args.command}: interrupted{RESUME.get(args.command, '')}",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - only the expected kinds are turned into a line
        if debug or not _expected(exc):
            raise
        message, code = describe_error(exc)
        print(f"hireslm {args.command}: error: {message}", file=sys.stderr)
        return code


def _expected(exc: BaseException) -> bool:
    """The errors a user's input or environment causes, as opposed to bugs."""
    # hireslm.release imports torch: look it up only if it was imported (else it was not
    # what raised).
    release = sys.modules.get("hireslm.release")
    if release is not None and isinstance(exc, release.ReleaseError):
        return True
    return isinstance(exc, (OSError, ValueError))  # AudioError is a ValueError


# errno -> what to do about it, in the user's terms.
ERRNO_HINTS = {
    errno.ENOENT: ("no such file or folder", "check the path", 2),
    errno.EEXIST: ("exists and is not a folder", "name a folder, or move the file away", 2),
    errno.ENOTDIR: ("part of this path is a file, not a folder", "name a folder", 2),
    errno.EISDIR: ("is a folder", "name a file", 2),
    errno.EACCES: ("permission denied", "choose a place you can write to, or fix its "
                   "permissions", 2),
    errno.EPERM: ("operation not permitted", "check the path's permissions", 2),
    errno.EROFS: ("read-only file system", "write somewhere else", 2),
    errno.ENOSPC: ("no space left on the device", "free some space, or write elsewhere", 1),
}


def describe_error(exc: BaseException) -> tuple[str, int]:
    """A one-line message for an expected error, and the exit code it calls for."""
    if isinstance(exc, OSError) and exc.errno in ERRNO_HINTS and exc.filename is not None:
        what, todo, code = ERRNO_HINTS[exc.errno]
        return f"{exc.filename}: {what}; {todo}", code
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)):
        return message, 1  # e.g. an I/O error: the environment, not the command line
    return message, 2


if __name__ == "__main__":
    sys.exit(main())

"""``hireslm restore`` in-process with settings that keep a tiny release fast."""

from __future__ import annotations

from pathlib import Path

from hireslm.cli.main import main

FAST = ["--chunk-seconds", "1.0", "--no-progress"]


def restore(release: Path, *args: str) -> int:
    """``hireslm restore ARGS --checkpoint RELEASE`` with ``FAST``; its exit code."""
    return main(["restore", *args, "--checkpoint", str(release), *FAST])

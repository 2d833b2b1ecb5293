"""Where the files hireslm needs at run time are: its configs and the default release.

Both ship inside the package (``hireslm/_data``), so a wheel installed with pip finds them as
a source checkout does. In the checkout ``hireslm/_data/configs`` and
``hireslm/_data/hireslm-demo`` are links to the top-level ``configs/`` and
``checkpoints/hireslm-demo/``, which stay where they are; a built wheel holds copies.

The default release is looked for, in order, in ``$HIRESLM_HOME/checkpoints/hireslm-demo``
(when ``HIRESLM_HOME`` is set: a release kept outside the package, e.g. one too large for it)
and in the package.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "_data"
DEFAULT_RELEASE_NAME = "hireslm-demo"
HOME_VARIABLE = "HIRESLM_HOME"
RELEASE_MARKER = "config.yaml"  # a folder holding it is a release (hireslm.release)


def release_candidates() -> list[Path]:
    """The folders the default release is looked for in, first first."""
    candidates = []
    home = os.environ.get(HOME_VARIABLE)
    if home:
        candidates.append(Path(home).expanduser() / "checkpoints" / DEFAULT_RELEASE_NAME)
    candidates.append(DATA_DIR / DEFAULT_RELEASE_NAME)
    return candidates


def default_release() -> Path:
    """The first of ``release_candidates()`` that holds a release; when none does, the first
    candidate (so that loading it fails naming where it was looked for, with
    ``missing_release_message``)."""
    candidates = release_candidates()
    for candidate in candidates:
        if (candidate / RELEASE_MARKER).is_file():
            return candidate
    return candidates[0]


def missing_release_message() -> str:
    """One line saying where the default release was looked for and how to get it."""
    looked = ", ".join(str(c) for c in release_candidates())
    return (f"no default release found (looked in {looked}): reinstall hireslm with pip, "
            f"which ships it, or copy a release folder to ${HOME_VARIABLE}/checkpoints/"
            f"{DEFAULT_RELEASE_NAME}, or pass --checkpoint DIR")


def config_path(name: str) -> Path:
    """The shipped config ``name`` (e.g. ``"degradations.yaml"``, ``"vae/base.yaml"``); loading
    a name that does not ship fails there, naming the path."""
    return DATA_DIR / "configs" / name

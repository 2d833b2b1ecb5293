"""Per-file choices: a user who disagrees with a decision overrides it for some files.

``--overrides FILE`` names a YAML (or JSON) mapping from file patterns to options::

    tapes/side_a.wav: {denoise: never}           # this file: keep the input's noise
    "interviews/*.mp3": {keep: input, min_generated_hz: 0}

A pattern (``fnmatch``: ``*``, ``?``, ``[...]``) matches an input by its path as given on the
command line or found in a folder, its absolute path, or its name; every matching entry
applies, later ones over earlier. Only the options that decide a file's treatment may be
set per file; each file's report line and output tag carry the options it was restored with.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml

from hireslm.options import RestoreOptions

PER_FILE = ("denoise", "keep", "atten_limit_db", "min_generated_hz", "complete_band_hz",
            "repair", "num_steps", "strength", "seed")


class Overrides:
    """Pattern -> option changes, in file order."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.entries = [(str(pattern), dict(changes))
                        for pattern, changes in (entries or {}).items()]
        known = {f.name for f in fields(RestoreOptions)}
        for pattern, changes in self.entries:
            wrong = sorted(set(changes) - set(PER_FILE))
            if wrong:
                what = "not options" if set(wrong) - known else "not per-file options"
                raise ValueError(f"overrides for {pattern!r}: {', '.join(wrong)} are {what}; "
                                 f"per file: {', '.join(PER_FILE)}")
            replace(RestoreOptions(), **changes)  # the options' own checks, now

    @classmethod
    def load(cls, path: str | Path) -> Overrides:
        """Read ``path``; ``ValueError`` (one line) for a file that is not such a mapping."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: not readable YAML/JSON: "
                             f"{' '.join(str(exc).split())[:200]}") from exc
        if data is None:
            return cls()
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(f"{path}: must map file patterns to options, e.g. "
                             "'tapes/a.wav: {denoise: never}'")
        try:
            return cls(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def options_for(self, path: Path, options: RestoreOptions) -> RestoreOptions:
        """``options`` with every entry whose pattern matches ``path`` applied."""
        names = {str(path), str(path.resolve()), path.name}
        for pattern, changes in self.entries:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                options = replace(options, **changes)
        return options

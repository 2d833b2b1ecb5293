"""The code in README.md and docs/ runs as written: the docs cannot drift from the code.

Every ```python block is executed on its own, in a fresh interpreter, from a folder outside
the checkout that holds only ``examples/`` (so paths to the shipped release or configs must
go through the package, as a user's would). Every ``hireslm ...`` command line in a
```bash block is parsed by the real command-line parser (running them all would mean
training models and fetching data), so a renamed or removed option fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hireslm.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(language: str) -> list[tuple[str, str]]:
    """``(label, code)`` of every fenced block in ``language``, labelled file:line."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(rf"^```{language}\n(.*?)^```$", text, re.S | re.M):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


PYTHON = _blocks("python")
COMMANDS = [
    (label, command) for label, code in _blocks("bash")
    for command in re.sub(r"\\\n\s*", " ", code).splitlines()
    if re.match(r"\s*(?:\S*/)?hireslm \w", command) and "[" not in command
]


def test_the_docs_have_examples():
    assert len(PYTHON) >= 9 and len(COMMANDS) >= 20


@pytest.mark.parametrize("label,code", PYTHON, ids=[label for label, _ in PYTHON])
def test_python_example_runs(label, code, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{label} failed:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("label,command", COMMANDS, ids=[label for label, _ in COMMANDS])
def test_command_line_parses(label, command):
    words = shlex.split(command.split(" #")[0], comments=True)
    words = words[words.index(next(w for w in words if w.endswith("hireslm"))) + 1:]
    words = [re.sub(r"\$\{?\w+\}?", "X", word) for word in words]  # shell variables
    try:
        build_parser([words[0]]).parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"{label}: `hireslm {' '.join(words)}` does not parse (exit {exc.code})")

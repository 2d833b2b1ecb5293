"""Replace one ``## Heading`` section of a markdown file, keeping the others."""

from __future__ import annotations

from pathlib import Path

from hireslm.fileio import write_text_atomic


def replace_section(path: Path, heading: str, body: str) -> None:
    """Set the text under ``heading`` (up to the next ``## ``) to ``body``; append if absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        new = text.rstrip("\n") + f"\n\n{heading}\n\n{body}\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "\n".join(lines[:start] + [heading, "", body, ""] + lines[end:]).rstrip() + "\n"
    write_text_atomic(path, new)

"""Input vs restored: the degraded inputs' scores against the references beside the restored
files', and the difference, so one run shows whether restoration helped.

Means are taken over the files scored in both evaluations (and, per column, defined in both),
so a file that failed on one side does not tilt the difference.
"""

from __future__ import annotations

import math

import numpy as np

from hireslm.evaluation.evaluate import Evaluation
from hireslm.evaluation.pairs import ALL


def better_is_lower(column: str) -> bool:
    """LSD falls as a file improves; every other metric rises."""
    return column.startswith("lsd")


def compare(restored: Evaluation, inputs: Evaluation) -> dict[str, dict]:
    """Per group (and ``all``): ``{"files": n, "columns": {column: {"input", "restored",
    "difference" (restored - input), "files"}}}``, NaN where no file has both values."""
    columns = restored.options.columns
    scored_inputs = {(r.group, r.key): r for r in inputs.results if r.status == "ok"}
    groups: dict[str, list] = {}
    for result in restored.results:
        before = scored_inputs.get((result.group, result.key))
        if result.status == "ok" and before is not None:
            groups.setdefault(result.group, []).append((before, result))
    if len(groups) != 1 or ALL not in groups:
        groups[ALL] = [pair for pairs in list(groups.values()) for pair in pairs]
    comparison = {}
    for group, pairs in groups.items():
        entry: dict[str, dict] = {}
        for column in columns:
            both = [(b.metrics[column], a.metrics[column]) for b, a in pairs
                    if not (math.isnan(b.metrics[column]) or math.isnan(a.metrics[column]))]
            before = float(np.mean([b for b, _ in both])) if both else math.nan
            after = float(np.mean([a for _, a in both])) if both else math.nan
            entry[column] = {"input": before, "restored": after,
                             "difference": after - before, "files": len(both)}
        comparison[group] = {"files": len(pairs), "columns": entry}
    return comparison


def comparison_table(comparison: dict[str, dict], headers: dict[str, tuple[str, int]]) -> str:
    """A markdown table: one row per group and metric, input | restored | difference."""
    lines = ["| group | files | metric | input | restored | difference |",
             "|---|---|---|---|---|---|"]
    for group, entry in comparison.items():
        name = "**all**" if group == ALL else group
        for column, values in entry["columns"].items():
            label, decimals = headers[column]
            if values["files"] == 0:
                cells = ["n/a"] * 3
            else:
                difference = values["difference"]
                verdict = "same" if round(difference, decimals) == 0 else (
                    "better" if (difference < 0) == better_is_lower(column) else "worse")
                cells = [f"{values['input']:.{decimals}f}", f"{values['restored']:.{decimals}f}",
                         f"{difference:+.{decimals}f} ({verdict})"]
            lines.append(f"| {name} | {values['files']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

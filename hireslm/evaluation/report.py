"""Evaluation reports: per-file CSV and JSON, and a markdown table of means per group."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hireslm.evaluation.compare import compare, comparison_table
from hireslm.evaluation.evaluate import Evaluation, FileResult
from hireslm.evaluation.pairs import ALL
from hireslm.fileio import write_text_atomic

CSV_NAME, JSON_NAME, MARKDOWN_NAME = "metrics.csv", "metrics.json", "summary.md"

# column -> (table header, decimals); arrows say which way is better
HEADERS: dict[str, tuple[str, int]] = {
    "lsd": ("LSD ↓", 2),
    "lsd_hf": ("LSD-HF ↓", 2),
    "lsd_bwe": ("LSD-BWE ↓", 2),
    "lsd_bwe_hf": ("LSD-BWE-HF ↓", 2),
    "lsd_bwe_lf": ("LSD-BWE-LF ↓", 2),
    "si_sdr": ("SI-SDR (dB) ↑", 1),
    "pesq": ("PESQ-WB ↑", 2),
    "estoi": ("ESTOI ↑", 3),
    "visqol": ("ViSQOL ↑", 2),
    "dnsmos_sig": ("SIG ↑", 2),
    "dnsmos_bak": ("BAK ↑", 2),
    "dnsmos_ovrl": ("OVRL ↑", 2),
}


def summarise(evaluation: Evaluation) -> dict[str, dict]:
    """Per group (and ``all`` over every group): counts, the mean of each column over the
    files where it is defined, and how many files left it undefined, by reason."""
    columns = evaluation.options.columns
    groups: dict[str, list[FileResult]] = {}
    for result in evaluation.results:
        groups.setdefault(result.group, []).append(result)
    if len(groups) > 1 or ALL not in groups:
        groups[ALL] = list(evaluation.results)
    summary = {}
    for group, results in groups.items():
        scored = [r for r in results if r.status == "ok"]
        means, undefined = {}, {}
        for column in columns:
            values = [r.metrics[column] for r in scored if not math.isnan(r.metrics[column])]
            means[column] = float(np.mean(values)) if values else math.nan
            reasons = Counter(r.notes.get(column, "undefined") for r in scored
                              if math.isnan(r.metrics[column]))
            if reasons:
                undefined[column] = dict(reasons)
        status = Counter(r.status for r in results)
        summary[group] = {
            "files": len(results), "scored": status["ok"], "missing": status["missing"],
            "errors": status["error"], "means": means, "undefined": undefined,
        }
    return summary


def markdown_table(evaluation: Evaluation, summary: dict[str, dict]) -> str:
    """Means per group as a markdown table, then footnotes for undefined values."""
    columns = evaluation.options.columns
    header = ["group", "scored"] + [HEADERS[c][0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, entry in summary.items():
        cells = [group if group != ALL else "**all**", str(entry["scored"])]
        for column in columns:
            value = entry["means"][column]
            cells.append("n/a" if math.isnan(value) else f"{value:.{HEADERS[column][1]}f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for group, entry in summary.items():
        if entry["missing"] or entry["errors"]:
            notes.append(f"- {group}: {entry['missing']} missing, {entry['errors']} errors "
                         "(not in the means)")
        if group == ALL and len(summary) > 1:
            continue
        for column, reasons in entry["undefined"].items():
            for reason, count in reasons.items():
                notes.append(f"- {group}: {HEADERS[column][0].split()[0]} undefined for "
                             f"{count} files ({reason}); means over the rest")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def _csv_text(evaluation: Evaluation, inputs: Evaluation | None = None) -> str:
    """One row per reference; with ``inputs``, each metric of the input file follows as
    ``input_<column>`` (empty where the input was not scored)."""
    columns = evaluation.options.columns
    before = {} if inputs is None else {(r.group, r.key): r for r in inputs.results
                                        if r.status == "ok"}
    extra = [] if inputs is None else [f"input_{c}" for c in columns]
    cutoff = ["cutoff_hz"] if "lsd_bwe" in evaluation.options.metrics else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "key", "status", *columns, *extra, "duration_s", *cutoff,
                     "reference", "estimate", "notes"])
    for r in evaluation.results:
        notes = "; ".join(f"{k}: {v}" for k, v in r.notes.items())
        source = before.get((r.group, r.key))
        inputs_cells = [] if inputs is None else [
            "" if source is None else _number(source.metrics[c]) for c in columns]
        writer.writerow([r.group, r.key, r.status, *(_number(r.metrics[c]) for c in columns),
                         *inputs_cells,
                         "" if math.isnan(r.duration_s) else f"{r.duration_s:.3f}",
                         *(_number(r.cutoff_hz) for _ in cutoff),
                         r.reference, r.estimate or "", notes])
    return buffer.getvalue()


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def _json_safe(value):
    """NaN is not JSON: written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _json_text(evaluation: Evaluation, summary: dict, settings: dict,
               inputs: Evaluation | None = None) -> str:
    payload = {
        "settings": {**asdict(evaluation.options), **settings},
        "summary": summary,
        "unmatched": evaluation.unmatched,
        "files": [asdict(r) for r in evaluation.results],
    }
    if inputs is not None:
        payload["comparison"] = compare(evaluation, inputs)
        payload["input"] = {"summary": summarise(inputs),
                            "files": [asdict(r) for r in inputs.results]}
    return json.dumps(_json_safe(payload), indent=1, ensure_ascii=False) + "\n"


def comparison_markdown(evaluation: Evaluation, inputs: Evaluation) -> str:
    """The input vs restored table (``hireslm.evaluation.compare``) under a heading."""
    return ("\n## Input vs restored (difference = restored - input, over files scored in "
            "both)\n\n" + comparison_table(compare(evaluation, inputs), HEADERS))


def write_reports(
    evaluation: Evaluation, out_dir: str | Path, settings: dict | None = None,
    inputs: Evaluation | None = None,
) -> dict[str, Path]:
    """Write ``metrics.csv``, ``metrics.json`` and ``summary.md`` into ``out_dir``.

    ``settings`` (e.g. the folders compared) is stored in the JSON beside the options.
    ``inputs``, the degraded inputs scored against the same references, adds their scores
    to each file's row and the input vs restored comparison to the JSON and the markdown.
    Returns ``{"csv" | "json" | "markdown": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(evaluation)
    paths = {"csv": out_dir / CSV_NAME, "json": out_dir / JSON_NAME,
             "markdown": out_dir / MARKDOWN_NAME}
    write_text_atomic(paths["csv"], _csv_text(evaluation, inputs))
    write_text_atomic(paths["json"], _json_text(evaluation, summary, settings or {}, inputs))
    markdown = markdown_table(evaluation, summary)
    if inputs is not None:
        markdown += comparison_markdown(evaluation, inputs)
    write_text_atomic(paths["markdown"], markdown)
    return paths

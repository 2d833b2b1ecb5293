"""The restore report as a page to look at and listen to: ``OUTDIR/restore_report.html``.

Rebuilt from the whole JSONL report (the latest line per input) at the end of each run and
written atomically. One static file, no server, nothing fetched at view time: it opens from
disk and keeps working when the output folder is moved (links into it are relative). Per
file: status, what the analysis found, what was kept, recovered and generated, spectrogram
thumbnails of the input and the output (``OUTDIR/.report/``, made once per file version,
``hireslm.jobs.thumbnails``; a ``.report`` that is not hireslm's own is not used, and the
page says so) and a player for each; failures first; sortable columns.
The first ``MAX_ROWS`` files get pictures and players, the rest a plain table, so the page
stays light for archives of 10^4 files.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hireslm.fileio import write_text_atomic
from hireslm.jobs.jsonl_report import (
    REPORT_NAME,
    escape_text,
    read_report,
    record_path,
    record_problem,
)
from hireslm.jobs.thumbnails import (
    HEIGHT,
    WIDTH,
    claim_folder,
    ensure_pair,
    prune,
    read_manifest,
    thumbnail_name,
    write_manifest,
)

logger = logging.getLogger(__name__)

PAGE_NAME = "restore_report.html"
ASSETS_DIR = ".report"  # hidden: a later run over this folder does not take it for audio
MAX_ROWS = 2000
# Failures first, then what needs a look, then what went as planned.
STATUS_ORDER = {"failed": 0, "unreadable": 0, "other": 1, "quieter": 2, "warned": 3,
                "skipped": 4, "silent": 5, "ok": 6}
# A restored file whose speech came out more than this much quieter than the input's is no
# "ok": the restoration took speech away, or a level was lost.
QUIETER_DB = -3.0


def write_html_report(out_dir: str | os.PathLike, *, max_rows: int = MAX_ROWS) -> Path | None:
    """Build the page for ``out_dir``; never raises (a failure is logged as a warning)."""
    try:
        return build_html_report(out_dir, max_rows=max_rows)
    except Exception as exc:  # the page is a view of the report: it must never fail a run
        logger.warning("%s: report page not written (%s: %s)", out_dir, type(exc).__name__, exc)
        return None


def build_html_report(out_dir: str | os.PathLike, *, max_rows: int = MAX_ROWS) -> Path:
    """Write ``out_dir/restore_report.html`` from ``out_dir/restore_report.jsonl``.

    Thumbnails are made for the first ``max_rows`` files (in page order) and reused when the
    file has not changed; thumbnails no longer shown are removed (only those the manifest
    names: ``hireslm.jobs.thumbnails``). When ``OUTDIR/.report`` is not hireslm's own, the
    page has no pictures and says why (so does the log). Returns the page's path.
    """
    out_dir = Path(out_dir)
    rows = sorted(latest_records(read_report(out_dir / REPORT_NAME)), key=row_key)
    assets = out_dir / ASSETS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    refused = claim_folder(assets)
    pictures: list[tuple[str | None, str | None]] = [(None, None)] * min(len(rows), max_rows)
    if refused is not None:
        refused = f"{assets} {refused}: the page shows no pictures (remove it to get them)"
        logger.warning("%s", refused)
    else:
        shown = [(None, None) if record_problem(r) else
                 (record_path(r, "input"), record_path(r, "output")) for r in rows[:max_rows]]
        # Entered before they are made: a kill while making them leaves none unrecorded.
        planned = [name for source, output in shown for name in (
            source and thumbnail_name(source),
            output and thumbnail_name(output, reference=source)) if name]
        write_manifest(assets, (read_manifest(assets) or set()) | set(planned))
        pictures = [_pair(source, output, assets) for source, output in shown]
    page = render_page(rows, pictures, out_dir, generated=time.strftime("%Y-%m-%d %H:%M:%S"),
                       no_pictures=refused)
    path = write_text_atomic(out_dir / PAGE_NAME, page)
    if refused is None:
        prune(assets, {name for pair in pictures for name in pair if name})
    logger.info("report page %s", path)
    return path


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each input (the report appends; the latest line is the current
    state), in the order inputs first appear."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest[str(record_path(record) or record.get("input"))] = record
    return list(latest.values())


def row_kind(record: dict[str, Any]) -> str:
    """The record's status; for a restored file, ``quieter`` when its speech came out more
    than ``-QUIETER_DB`` dB quieter than the input's, else ``warned`` when it raised
    warnings; ``unreadable`` for a line that cannot be shown (``record_problem``)."""
    if record_problem(record):
        return "unreadable"
    status = str(record.get("status", "failed"))
    if status == "ok" and (record.get("speech_change_db") or 0.0) < QUIETER_DB:
        return "quieter"
    if status == "ok" and record.get("warnings"):
        return "warned"
    return status


def row_key(record: dict[str, Any]) -> tuple[int, str]:
    """Page order: by ``STATUS_ORDER``, then by input path."""
    return STATUS_ORDER.get(row_kind(record), 0), str(record.get("input", ""))


def href(path: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """A link to ``path`` from a page in ``out_dir``: relative when ``path`` is inside
    ``out_dir`` or beside it (under its parent), so moving them together keeps the links;
    else an absolute ``file://`` URI."""
    target = os.path.abspath(path)
    for base in dict.fromkeys([os.path.abspath(out_dir), os.path.realpath(out_dir)]):
        for anchor in (base, os.path.dirname(base)):
            if _is_under(target, anchor):
                # A name that is not UTF-8 keeps its bytes: %E9 for a Latin-1 "é".
                return quote(os.path.relpath(target, base).replace(os.sep, "/"), safe="/",
                             errors="surrogateescape")
    return Path(target).as_uri()


def render_page(rows: Sequence[dict[str, Any]], pictures: Sequence[tuple[str | None,
                str | None]], out_dir: str | os.PathLike, *, generated: str,
                no_pictures: str | None = None) -> str:
    """The whole page: summary, the detailed table (``len(pictures)`` rows, with thumbnails
    named by ``pictures``), then the plain table of the remaining rows. ``no_pictures``: why
    the page has none (said under the summary)."""
    out_dir = Path(out_dir)
    names = display_names([record_path(r) or str(r.get("input", "")) for r in rows])
    problems = [row_problem(r, name, out_dir) for r, name in zip(rows, names, strict=True)]
    for name, problem in zip(names, problems, strict=True):
        if problem is not None:  # the page is written all the same
            logger.warning("%s: report line not shown (%s)", escape_text(name), problem)
    detailed = "".join(
        _unreadable_row(record, names[i], problems[i], DETAILED_COLUMNS) if problems[i]
        else _detailed_row(record, names[i], pictures[i], out_dir, off=no_pictures is not None)
        for i, record in enumerate(rows[:len(pictures)]))
    plain = "".join(
        _unreadable_row(record, names[i], problems[i], PLAIN_COLUMNS) if problems[i]
        else _plain_row(record, names[i], out_dir)
        for i, record in enumerate(rows) if i >= len(pictures))
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(out_dir.name)}: restore report</title><style>{CSS}</style></head><body>",
        _summary(rows, problems, out_dir, generated),
        f"<p class=\"warning\" id=\"no-pictures\">{_e(no_pictures)}</p>" if no_pictures else "",
        "<table id=\"files\" class=\"sortable\"><thead><tr>",
        "".join(_th(*column) for column in DETAILED_COLUMNS),
        f"</tr></thead><tbody>{detailed}</tbody></table>",
    ]
    if plain:
        parts += [
            f"<h2 id=\"more\">{len(rows) - len(pictures)} more files (no pictures or players "
            f"beyond the first {len(pictures)})</h2>",
            "<table id=\"more-files\" class=\"sortable\"><thead><tr>",
            "".join(_th(*column) for column in PLAIN_COLUMNS),
            f"</tr></thead><tbody>{plain}</tbody></table>",
        ]
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(parts)


def display_names(inputs: Sequence[str]) -> list[str]:
    """Inputs relative to the folder they all share (the tree the archivist knows)."""
    if not inputs:
        return []
    try:
        common = os.path.commonpath([os.path.abspath(p) for p in inputs])
    except ValueError:  # different drives
        return list(inputs)
    if len(inputs) == 1 or common in inputs:
        common = os.path.dirname(common)
    return [os.path.relpath(os.path.abspath(p), common) for p in inputs]


DETAILED_COLUMNS = [("status", "Status"), ("text", "File"), ("num", "Length (s)"),
                    ("num", "Band (kHz)"), ("num", "SNR (dB)"), ("", "Found"), ("", "Done"),
                    ("num", "Level (dB)"), ("", "Before"), ("", "After"),
                    ("num", "× real time")]
PLAIN_COLUMNS = [("status", "Status"), ("text", "File"), ("num", "Length (s)"),
                 ("num", "Level (dB)"), ("", "Outcome"), ("", "Output")]


def _detailed_row(record: dict[str, Any], name: str, pictures: tuple[str | None, str | None],
                  out_dir: Path, *, off: bool = False) -> str:
    kind = row_kind(record)
    channels = record.get("analysis") or []
    bands = [c.get("bandwidth_hz") for c in channels
             if c.get("bandwidth_hz") is not None and not c.get("silent")]
    snrs = [c.get("snr_db") for c in channels if c.get("snr_db") is not None]
    band = min(bands) / 1000 if bands else None
    snr = min(snrs) if snrs else None
    rtf = record.get("real_time_factor")
    cells = [
        _status_cell(record, kind),
        _file_cell(record, name),
        _num_cell(record.get("duration_s"), "{:.1f}"),
        _num_cell(band, "{:.1f}"),
        _num_cell(snr, "{:.0f}"),
        f"<td class=\"found\">{_found(channels)}</td>",
        f"<td class=\"done\">{_done(record)}</td>",
        _level_cell(record),
        _media_cell(record_path(record, "input"), pictures[0], out_dir, "input", off),
        _media_cell(record_path(record, "output"), pictures[1], out_dir, "output", off),
        _num_cell(None if rtf is None else 1 / rtf if rtf > 0 else None, "{:.1f}"),
    ]
    return f"<tr class=\"{_e(kind)}\">{''.join(cells)}</tr>"


def row_problem(record: dict[str, Any], name: str, out_dir: Path) -> str | None:
    """Why ``record`` cannot be shown as a row: ``record_problem``, or any bad value its row
    meets (None: it can be shown)."""
    problem = record_problem(record)
    if problem is None:
        try:
            _detailed_row(record, name, (None, None), out_dir)
        except Exception as exc:  # noqa: BLE001 - any bad value: this row, not the page
            problem = f"{type(exc).__name__}: {exc}"
    return problem


def _unreadable_row(record: dict[str, Any], name: str, problem: str,
                    columns: Sequence[tuple[str, str]]) -> str:
    """A row saying why a report line cannot be shown, a cell per column (the sort script
    reads every row's cells)."""
    message = "Done" if columns is DETAILED_COLUMNS else "Outcome"
    cells = [_status_cell(record, "unreadable"), f"<td class=\"file\" data-v=\"{_e(name)}\">"
             f"<span class=\"name\">{_e(name)}</span></td>"]
    for _, label in columns[2:]:
        cells.append(f"<td class=\"error\">this report line cannot be shown: {_e(problem)}</td>"
                     if label == message else "<td data-v=\"\"></td>")
    return f"<tr class=\"unreadable\">{''.join(cells)}</tr>"


def _plain_row(record: dict[str, Any], name: str, out_dir: Path) -> str:
    output = record_path(record, "output")
    link = (f"<a href=\"{_e(href(output, out_dir))}\">{_e(Path(output).name)}</a>"
            if output else "")
    outcome = record.get("error") or record.get("reason") or "; ".join(
        (record.get("treatment") or {}).get("reasons") or [])
    return (f"<tr class=\"{_e(row_kind(record))}\">{_status_cell(record, row_kind(record))}"
            f"{_file_cell(record, name)}{_num_cell(record.get('duration_s'), '{:.1f}')}"
            f"{_level_cell(record)}<td>{_e(outcome)}</td><td>{link}</td></tr>")


def _level_cell(record: dict[str, Any]) -> str:
    """The output's level against the input's: its loudest speech (``speech_change_db``)
    and its mean power (``level_change_db``); flagged when the speech came out quieter than
    ``QUIETER_DB``; "–" for a record without them (from before they were recorded)."""
    speech, level = record.get("speech_change_db"), record.get("level_change_db")
    if speech is None and level is None:
        return "<td class=\"num\" data-v=\"\">–</td>"
    main = speech if speech is not None else level
    lines = [f"{'speech ' if speech is not None else 'mean '}{main:+.1f}"]
    if speech is not None and level is not None:
        lines.append(f"<div class=\"small\">mean {level:+.1f}</div>")
    flagged = speech is not None and speech < QUIETER_DB
    title = (f" title=\"the speech came out {-speech:.1f} dB quieter than the input's\""
             if flagged else "")
    return (f"<td class=\"num{' quieter' if flagged else ''}\" data-v=\"{float(main):.6g}\""
            f"{title}>{''.join(lines)}</td>")


def _status_cell(record: dict[str, Any], kind: str) -> str:
    order = STATUS_ORDER.get(kind, 0)
    label = {"warned": "ok, warnings", "unreadable": "unreadable",
             "quieter": "ok, quieter"}.get(kind, str(record.get("status", "failed")))
    return f"<td data-v=\"{order}\"><span class=\"badge {_e(kind)}\">{_e(label)}</span></td>"


def _file_cell(record: dict[str, Any], name: str) -> str:
    details = []
    if record.get("input_sample_rate"):
        details.append(f"{record['input_sample_rate'] / 1000:g} kHz")
    if record.get("channels"):
        details.append(f"{record['channels']} ch")
    info = f"<div class=\"small\">{_e(' · '.join(details))}</div>" if details else ""
    return (f"<td class=\"file\" data-v=\"{_e(name)}\"><span class=\"name\" "
            f"title=\"{_e(record.get('input'))}\">{_e(name)}</span>{info}</td>")


def _num_cell(value: float | None, fmt: str) -> str:
    if value is None:
        return "<td class=\"num\" data-v=\"\">–</td>"
    return f"<td class=\"num\" data-v=\"{float(value):.6g}\">{fmt.format(value)}</td>"


def _found(channels: Sequence[dict[str, Any]]) -> str:
    lines = []
    for c in channels:
        facts = ["digital silence"] if c.get("silent") else []
        if c.get("bandwidth_hz") is not None and not c.get("silent"):
            edge = f" ({c['edge']})" if c.get("edge") else ""
            facts.append(f"band {c['bandwidth_hz'] / 1000:.1f} kHz{edge}")
        if c.get("snr_db") is not None:
            facts.append(f"SNR {c['snr_db']:.0f} dB")
        if c.get("noise_floor_db") is not None:
            facts.append(f"floor {c['noise_floor_db']:.0f} dB")
        if c.get("rt60_s") is not None:
            facts.append(f"RT60 {c['rt60_s']:.2f} s")
        if c.get("clipped_fraction"):
            facts.append(f"clipped {100 * c['clipped_fraction']:.2g}%")
        if c.get("codec_cutoff_hz"):
            facts.append(f"codec cut {c['codec_cutoff_hz'] / 1000:.1f} kHz")
        damage = "".join(f"<span class=\"flag\">{_e(d)}</span>" for d in c.get("damage") or [])
        prefix = f"ch{c.get('channel', len(lines))}: " if len(channels) > 1 else ""
        lines.append(f"<div>{_e(prefix + ' · '.join(facts))} {damage}</div>")
    return "".join(lines)


def _done(record: dict[str, Any]) -> str:
    parts = []
    if record.get("error"):  # the file is named in its row already
        error = str(record["error"]).replace(f"{record.get('input')}: ", "")
        parts.append(f"<div class=\"error\">{_e(error)}</div>")
    if record.get("reason"):
        parts.append(f"<div class=\"error\">{_e(record['reason'])}</div>")
    treatment = record.get("treatment") or {}
    if treatment:
        kept = treatment.get("kept")
        parts.append(f"<div><b>kept</b> {_e(', '.join(kept) if kept else 'nothing')}</div>")
        recovered = treatment.get("recovered")
        if recovered:
            share = treatment.get("recovered_share") or []
            shares = ", ".join(f"{100 * s:.0f}%" for s in share)
            parts.append(f"<div><b>recovered</b> {_e(recovered)}"
                         f"{_e(f' (in {shares} of the time)') if shares else ''}</div>")
        else:
            parts.append("<div><b>recovered</b> no</div>")
        generated = treatment.get("generated") or []
        parts.append(f"<div><b>generated</b> {_e(', '.join(generated) or 'nothing')}</div>")
        reasons = treatment.get("reasons") or []
        if reasons:
            parts.append(f"<div class=\"small\">{_e('; '.join(reasons))}</div>")
    for warning in record.get("warnings") or []:
        parts.append(f"<div class=\"warning\">{_e(warning)}</div>")
    return "".join(parts)


def _media_cell(path: str | None, picture: str | None, out_dir: Path, what: str,
                off: bool = False) -> str:
    if not path:
        return "<td class=\"media\"></td>"
    link = _e(href(path, out_dir))
    img = (f"<img src=\"{ASSETS_DIR}/{_e(picture)}\" loading=\"lazy\" width=\"{WIDTH}\" "
           f"height=\"{HEIGHT}\" alt=\"spectrogram of the {what}\">" if picture
           else "<div class=\"nopic\">no pictures: see the note above</div>" if off
           else f"<div class=\"nopic\">no picture: the {what} could not be read</div>")
    return (f"<td class=\"media {what}\">{img}<audio controls preload=\"none\" src=\"{link}\">"
            f"</audio></td>")


def _summary(rows: Sequence[dict[str, Any]], problems: Sequence[str | None], out_dir: Path,
             generated: str) -> str:
    counts = Counter("unreadable" if problem else row_kind(r)
                     for r, problem in zip(rows, problems, strict=True))
    readable = [r for r, problem in zip(rows, problems, strict=True) if problem is None]
    chips = " ".join(f"<span class=\"badge {_e(k)}\">{_e(k)} {counts[k]}</span>"
                     for k in sorted(counts, key=lambda k: STATUS_ORDER.get(k, 0)))
    audio_s = sum(float(r.get("duration_s") or 0) for r in readable)
    work_s = sum(float(r.get("processing_s") or 0) for r in readable)
    releases = sorted({str(r["checkpoint"]) for r in readable if r.get("checkpoint")})
    settings = next((r["settings"] for r in reversed(readable) if r.get("settings")), None)
    setting_text = ", ".join(f"{k} {v}" for k, v in sorted((settings or {}).items())
                             if v is not None)
    return (f"<h1>Restore report: {_e(out_dir.name)}</h1>"
            f"<p>{len(rows)} files {chips}</p>"
            f"<p class=\"small\">{_duration(audio_s)} of audio restored in "
            f"{_duration(work_s)} · release {_e(', '.join(releases) or '–')} · "
            f"{_e(setting_text)} · page made {_e(generated)} from {_e(REPORT_NAME)}. "
            "Spectrograms: the first 30 s, 0–24 kHz, 80 dB below the input's peak, input and "
            "output on that one scale (an output that came out quieter looks darker). Level: "
            "the output's loudest speech and its mean power against the input's; more than "
            f"{-QUIETER_DB:g} dB quieter speech is flagged. Click a column to sort.</p>")


def _th(kind: str, label: str) -> str:
    sort = f" data-sort=\"{kind}\"" if kind else ""
    return f"<th{sort}>{_e(label)}</th>"


def _pair(source: str | None, output: str | None, assets: Path) -> tuple[str | None,
                                                                       str | None]:
    """The thumbnail names of an input and its output, on the input's scale."""
    made_source, made_output = ensure_pair(source or None, output or None, assets)
    return (None if made_source is None else made_source.name,
            None if made_output is None else made_output.name)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _is_under(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:
        return False


def _e(value: Any) -> str:
    """HTML text of ``value``; bytes of a name that are not UTF-8 shown as ``\\xNN``."""
    return html.escape("" if value is None else escape_text(str(value)), quote=True)


CSS = """
body{font:13px/1.35 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:18px;margin:0 0 6px}h2{font-size:15px;margin:24px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;vertical-align:top;text-align:left}
th{position:sticky;top:0;background:#eee;white-space:nowrap}
th[data-sort]{cursor:pointer}th[data-sort]:hover{background:#ddd}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
td.num{text-align:right;white-space:nowrap}
.small{color:#666;font-size:11px}.name{font-weight:600;overflow-wrap:anywhere}
td.file{min-width:12em;max-width:24em}td.found{min-width:13em}td.done{min-width:15em}
.badge{display:inline-block;border-radius:3px;padding:1px 6px;color:#fff;background:#2e7d32}
.badge.failed{background:#c62828}.badge.other{background:#ef6c00}
.badge.warned{background:#f9a825;color:#222}.badge.quieter{background:#d84315}
td.quieter{color:#b71c1c;font-weight:600}tr.quieter td{background:#fff3e0}
.badge.skipped,.badge.silent{background:#757575}
tr.failed td,tr.unreadable td{background:#fdecea}.badge.unreadable{background:#6a1b9a}
.flag{display:inline-block;background:#e8eaf6;border-radius:3px;padding:0 4px;margin:1px;
font-size:11px}
.error{color:#b71c1c}.warning{color:#8d6e00}
td.media img{display:block;background:#000;image-rendering:pixelated}
td.media audio{display:block;width:240px;height:28px;margin-top:2px}
.nopic{width:240px;color:#999;font-size:11px}
"""

SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    if (!th.dataset.sort) return;
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var text = th.dataset.sort === "text";
      function key(row) {
        var v = row.cells[col].dataset.v;
        if (text) return (v || row.cells[col].textContent).toLowerCase();
        return v === "" || v === undefined ? null : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
        var d = text ? x.localeCompare(y) : x - y;
        return up ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

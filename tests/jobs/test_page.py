"""The restore report page (``OUTDIR/restore_report.html``): built by a real restore of a small
real folder (speech, a corrupt file, a silent one), then opened in a real headless Chromium.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.jobs.jsonl_report import REPORT_NAME
from hireslm.jobs.page import (
    ASSETS_DIR,
    DETAILED_COLUMNS,
    PAGE_NAME,
    build_html_report,
    href,
    latest_records,
    row_key,
    write_html_report,
)
from hireslm.jobs.thumbnails import (
    MANIFEST_NAME,
    encode_png,
    palette,
    quantize,
    spectrogram_image,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"
FAST = ["--chunk-seconds", "1.0", "--no-progress"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def restored(tmp_path_factory) -> Path:
    """A restored folder: two speech clips (one with a space and an accent in its name), a
    corrupt WAV and a silent FLAC in a sub-folder; returns the output folder."""
    root = tmp_path_factory.mktemp("page")
    release = make_tiny_release(root / "release")
    folder = root / "tapes"
    for index, path in enumerate(sorted(EXAMPLES.glob("*.flac"))[:2]):
        wave, rate = load_audio(path)
        name = "café take 1.wav" if index == 0 else "take2.flac"
        save_audio(folder / name, resample(wave, rate, 16000)[:, :24000], 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    save_audio(folder / "sub" / "silent.flac", np.zeros((1, 8000), np.float32), 16000)
    out = root / "tapes-restored"
    code = main(["restore", str(folder), "-o", str(out), "--checkpoint", str(release), *FAST])
    assert code == 1  # the corrupt file failed; the others were restored
    return out


class _Rows(HTMLParser):
    """Rows of ``<table id=...>``: (tr class, cell texts), plus every audio/img tag's attrs."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.in_body = table_id, False, False
        self.rows: list[tuple[str, list[str]]] = []
        self.audio: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.inside = attrs.get("id") == self.table_id
        elif self.inside and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append((attrs.get("class", ""), []))
        elif self.in_body and tag == "td":
            self.rows[-1][1].append("")
        elif self.in_body and tag == "audio":
            self.audio.append(attrs)
        elif self.in_body and tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = self.in_body = False

    def handle_data(self, data):
        if self.in_body and self.rows and self.rows[-1][1]:
            self.rows[-1][1][-1] += data


def _parse(text: str, table_id: str = "files") -> _Rows:
    parser = _Rows(table_id)
    parser.feed(text)
    return parser


# -- pieces -------------------------------------------------------------------------------


def test_png_encoder_writes_a_valid_indexed_png():
    image = np.linspace(0, 1, 6 * 5).reshape(6, 5)
    data = encode_png(quantize(image), palette())
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, kind = (int.from_bytes(data[16:20], "big"),
                                  int.from_bytes(data[20:24], "big"), data[24], data[25])
    assert (width, height, depth, kind) == (5, 6, 8, 3)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8).reshape(6, 6)
    assert (raw[:, 0] == 0).all() and (raw[:, 1:] == quantize(image)).all()


def test_spectrogram_shows_a_tone_and_nothing_above_the_files_nyquist():
    rate = 8000
    t = np.arange(2 * rate) / rate
    image = spectrogram_image(np.sin(2 * np.pi * 1000 * t), rate, width=40, height=48)
    assert image.shape == (48, 40)
    row_of_1k = 48 - 1 - int(1000 / 24000 * 48)  # low frequencies at the bottom
    assert image[row_of_1k].min() > 0.9
    assert (image[: 48 - 48 // 6] == 0).all()  # 4-24 kHz: the file has no such band
    assert (spectrogram_image(np.zeros(100), 16000, width=8, height=8) == 0).all()


def test_links_are_relative_inside_and_beside_the_output_folder(tmp_path):
    out = tmp_path / "out"
    assert href(out / "sub" / "a b#.wav", out) == "sub/a%20b%23.wav"
    assert href(tmp_path / "in" / "café.wav", out) == "../in/caf%C3%A9.wav"
    elsewhere = Path("/somewhere/else/x.wav")
    assert href(elsewhere, out) == elsewhere.as_uri()


def test_latest_record_per_input_and_failures_first():
    records = [{"input": "/a", "status": "failed"}, {"input": "/b", "status": "ok"},
               {"input": "/a", "status": "ok"}, {"input": "/c", "status": "ok",
                                                  "warnings": ["short"]},
               {"input": "/d", "status": "failed"}]
    rows = sorted(latest_records(records), key=row_key)
    assert [(r["input"], r["status"]) for r in rows] == [
        ("/d", "failed"), ("/c", "ok"), ("/a", "ok"), ("/b", "ok")]


# -- the page of a real run -----------------------------------------------------------------


def test_restore_writes_the_page_with_rows_players_and_thumbnails(restored):
    page = (restored / PAGE_NAME).read_text(encoding="utf-8")
    parsed = _parse(page)
    assert len(parsed.rows) == 4
    assert parsed.rows[0][0] == "failed" and "broken.wav" in parsed.rows[0][1][1]
    assert [kind for kind, _ in parsed.rows[1:]] == ["silent", "ok", "ok"]
    assert "café take 1.wav" in page  # UTF-8, not escaped
    # input and output players for the three readable files, the corrupt input's own
    assert len(parsed.audio) == 7
    assert all(a["preload"] == "none" for a in parsed.audio)
    for audio in parsed.audio:  # relative links, each to a real file
        assert not audio["src"].startswith(("/", "file:"))
        assert (restored / unquote(audio["src"])).is_file()
    assert len(parsed.images) == 6 and all(i["loading"] == "lazy" for i in parsed.images)
    assert all((restored / i["src"]).is_file() for i in parsed.images)
    assert {p.name for p in (restored / ASSETS_DIR).iterdir() if p.suffix != ".png"} == {
        MANIFEST_NAME}


def test_a_rerun_reuses_the_thumbnails_and_rebuilds_the_page(restored):
    made = {p.name: p.stat().st_mtime_ns for p in (restored / ASSETS_DIR).glob("*.png")}
    page = restored / PAGE_NAME
    page.write_text("stale", encoding="utf-8")
    build_html_report(restored)
    assert {p.name: p.stat().st_mtime_ns for p in (restored / ASSETS_DIR).glob("*.png")} == made
    assert len(_parse(page.read_text(encoding="utf-8")).rows) == 4


def test_rows_past_the_cap_are_listed_plainly(restored, tmp_path):
    out = tmp_path / "capped"
    shutil.copytree(restored, out)
    build_html_report(out, max_rows=2)
    page = (out / PAGE_NAME).read_text(encoding="utf-8")
    detailed, plain = _parse(page), _parse(page, "more-files")
    assert len(detailed.rows) == 2 and len(plain.rows) == 2 and not plain.audio
    assert len(list((out / ASSETS_DIR).glob("*.png"))) == 2  # the others' thumbnails are gone


def test_a_page_that_cannot_be_written_only_warns(restored, tmp_path, caplog):
    out = tmp_path / "blocked"
    shutil.copytree(restored, out)
    (out / PAGE_NAME).unlink()
    (out / PAGE_NAME).mkdir()  # a folder where the page should go
    with caplog.at_level(logging.WARNING):
        assert write_html_report(out) is None
    assert "report page not written" in caplog.text


# -- in a real browser ------------------------------------------------------------------------


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@needs_chromium
def test_chromium_renders_rows_players_and_thumbnails_failures_first(restored, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", (restored / PAGE_NAME).as_uri()).stdout
    parsed = _parse(dom)
    assert [kind for kind, _ in parsed.rows] == ["failed", "silent", "ok", "ok"]
    assert len(parsed.audio) == 7 and len(parsed.images) == 6


@needs_chromium
def test_chromium_sorts_a_column_with_the_pages_own_script(restored, tmp_path):
    # The page's script, then a click on "Length (s)" as a user would (twice: descending).
    probe = restored / "sort_probe.html"
    clicks = ("<script>var th=[...document.querySelectorAll('#files th')].find("
              "h=>h.textContent.startsWith('Length'));th.click();th.click();</script>")
    probe.write_text((restored / PAGE_NAME).read_text(encoding="utf-8")
                     .replace("</body>", clicks + "</body>"), encoding="utf-8")
    try:
        rows = _parse(_chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout).rows
    finally:
        probe.unlink()
    lengths = [cells[2].strip() for _, cells in rows]
    assert lengths[:2] == ["1.5", "1.5"] and lengths[2] == "0.5" and lengths[3] == "–"


@needs_chromium
def test_chromium_screenshot_shows_the_spectrograms(restored, tmp_path):
    shot = tmp_path / "page.png"
    _chromium(tmp_path / "profile", "--window-size=1500,700", f"--screenshot={shot}",
              (restored / PAGE_NAME).as_uri())
    image = pytest.importorskip("PIL.Image")
    pixels = np.asarray(image.open(shot).convert("RGB")).astype(int)
    # The page's own colours hold no purple: these pixels are the spectrograms' ramp.
    purple = (pixels[..., 0] > 70) & (pixels[..., 1] < 50) & (pixels[..., 2] > 70)
    assert purple.sum() > 2000


# -- report lines the page cannot trust -------------------------------------------------------


def _report(out: Path, records: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_NAME).write_text("".join(json.dumps(r) + "\n" for r in records),
                                   encoding="utf-8")


def test_a_line_of_the_wrong_types_is_one_unreadable_row_and_the_rest_is_shown(tmp_path):
    out = tmp_path / "out"
    good = {"input": "/in/good.wav", "output": None, "status": "ok", "duration_s": 2.0}
    bad = [{"input": "/in/a.wav", "status": "ok", "duration_s": "abc"},
           {"input": "/in/b.wav", "status": "ok", "analysis": 5},
           {"input": 5, "status": "ok"},
           {"input": "/in/c.wav", "status": "ok", "warnings": "not a list"},
           {"input": "/in/d.wav", "status": "ok", "treatment": {"kept": 3}},  # found rendering
           {"input": "/in/e.wav", "status": "ok", "analysis": [{"snr_db": "loud"}]}]
    _report(out, [good, *bad])
    for max_rows in (10, 1):  # the detailed table and the plain one
        build_html_report(out, max_rows=max_rows)
        page = (out / PAGE_NAME).read_text(encoding="utf-8")
        rows = _parse(page).rows + _parse(page, "more-files").rows
        kinds = Counter(kind for kind, _ in rows)
        assert kinds == {"unreadable": len(bad), "ok": 1}, kinds
        unreadable = [cells for kind, cells in rows if kind == "unreadable"]
        assert all("cannot be shown" in "".join(cells) for cells in unreadable)
        ok = next(cells for kind, cells in rows if kind == "ok")
        assert "good.wav" in ok[1] and ok[2].strip() == "2.0"
    assert "duration_s is not a number" in page
    assert "2.0 s of audio" in page  # the summary counts what it can read


# -- levels: one scale for input and output, and a flag for lost speech --------------------------


def _png_indices(path: Path) -> np.ndarray:
    """The palette indices ``(H, W)`` of a PNG our encoder wrote."""
    data = path.read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    raw = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8)
    return raw.reshape(height, width + 1)[:, 1:]


@pytest.fixture(scope="module")
def level_pairs(tmp_path_factory) -> Path:
    """An output folder whose report has three restored files of one clip: the output at
    the input's level, one 39 dB quieter, and one from an old record (no level fields)."""
    root = tmp_path_factory.mktemp("levels")
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    clip = resample(wave, rate, 16000)[:, :32000]
    out = root / "out"
    records = []
    for name, gain_db, fields in (
            ("same", 0.0, {"level_change_db": -0.1, "speech_change_db": 0.2}),
            ("quiet", -39.0, {"level_change_db": -39.0, "speech_change_db": -38.6}),
            ("old", 0.0, {})):
        save_audio(root / "in" / f"{name}.wav", clip, 16000)
        output = resample(clip, 16000, 48000) * 10 ** (gain_db / 20)
        save_audio(out / f"{name}.wav", output, 48000)
        records.append({"input": str(root / "in" / f"{name}.wav"),
                        "output": str(out / f"{name}.wav"), "status": "ok",
                        "duration_s": 2.0, **fields})
    _report(out, records)
    build_html_report(out)
    return out


def _row(out: Path, name: str) -> tuple[str, list[str], list[str]]:
    """(tr class, cell texts, thumbnail paths) of the row of input ``name``."""
    parser = _parse((out / PAGE_NAME).read_text(encoding="utf-8"))
    index = next(i for i, (_, cells) in enumerate(parser.rows) if name in cells[1])
    kind, cells = parser.rows[index]
    return kind, cells, [i["src"] for i in parser.images[2 * index:2 * index + 2]]


def test_input_and_output_thumbnails_share_the_inputs_scale(level_pairs):
    steps = {}
    for name in ("same", "quiet"):
        _, _, (before, after) = _row(level_pairs, name)
        before, after = (_png_indices(level_pairs / p).astype(float) for p in (before, after))
        shown = before > 4  # where the input has sound (its band, its speech)
        steps[name] = (before[shown].mean(), after[shown].mean())
    same_in, same_out = steps["same"]
    quiet_in, quiet_out = steps["quiet"]
    assert abs(same_out - same_in) < 2, steps  # one level, one look, at 16 and at 48 kHz
    # 39 of the 80 dB shown, in 31 colour steps: about 15 steps darker
    assert quiet_in - quiet_out > 12, steps
    assert quiet_in == same_in


def test_the_level_change_is_shown_and_quieter_speech_is_flagged(level_pairs):
    kind, cells, _ = _row(level_pairs, "quiet")
    assert kind == "quieter" and "ok, quieter" in cells[0]  # not a green "ok"
    level = DETAILED_COLUMNS.index(("num", "Level (dB)"))
    assert "-38.6" in cells[level] and "-39.0" in cells[level]
    kind, cells, _ = _row(level_pairs, "same")
    assert kind == "ok" and "+0.2" in cells[level]
    kind, cells, _ = _row(level_pairs, "old")  # a record from before the level was kept
    assert kind == "ok" and cells[level].strip() == "–"
    page = (level_pairs / PAGE_NAME).read_text(encoding="utf-8")
    assert "39 dB quieter" not in page and "38.6 dB quieter than the input" in page
    assert "ok, quieter 1" not in page and "quieter 1" in page  # counted in the summary

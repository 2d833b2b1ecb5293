"""``hireslm analyze``: the report never lands on an input, and every name maps back to its
file. Real files, the real command in-process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.fileio import file_sha256

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.fixture
def folder(tmp_path) -> Path:
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    save_audio(tmp_path / "in" / "a.wav", resample(wave, rate, 16000)[:, :16000], 16000)
    save_audio(tmp_path / "in" / "b.flac", resample(wave, rate, 16000)[:, 16000:32000], 16000)
    return tmp_path / "in"


@pytest.mark.parametrize("target", ["a.wav", "b.flac"])
def test_an_output_that_is_an_input_is_refused(folder, caplog, target):
    before = file_sha256(folder / target)
    for inputs in ([folder], [folder / "a.wav", folder / "b.flac"]):
        assert main(["analyze", *map(str, inputs), "-o", str(folder / target)]) == 2
        assert file_sha256(folder / target) == before
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all("would overwrite this input" in e and "\n" not in e for e in errors)
    # a link to an input is the input
    link = folder.parent / "link.wav"
    link.symlink_to(folder / target)
    assert main(["analyze", str(folder), "-o", str(link)]) == 2
    assert file_sha256(folder / target) == before


def test_a_name_that_is_not_utf8_is_written_losslessly(folder, tmp_path, capsys):
    raw = os.fsencode(folder) + b"/caf\xe9.wav"
    shutil.copy(folder / "a.wav", os.fsdecode(raw))
    report = tmp_path / "report.jsonl"
    assert main(["analyze", str(folder), "-o", str(report)]) == 0
    text = report.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    assert "\ufffd" not in text
    records = {r["input"]: r for r in map(json.loads, text.splitlines())}
    odd = records[os.fsdecode(folder) + "/caf\\xe9.wav"]
    assert odd["status"] == "ok"
    assert bytes.fromhex(odd["input_bytes_hex"]) == raw
    assert Path(os.fsdecode(bytes.fromhex(odd["input_bytes_hex"]))).is_file()
    assert "input_bytes_hex" not in records[str(folder / "a.wav")]
    # stdout: the same line
    assert main(["analyze", os.fsdecode(raw)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["input"] == odd["input"] and line["input_bytes_hex"] == raw.hex()

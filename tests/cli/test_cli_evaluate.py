"""``hireslm evaluate`` on one's own recordings: the report never goes into the folders read
as references or inputs, and files that share a stem are each paired. Real files, the real
command in-process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hireslm.audio import load_audio, resample
from hireslm.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def archive(tmp_path) -> Path:
    """One's originals: two takes that share a stem (``take1.mp3``, ``take1.wav``) and one in
    a sub-folder."""
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    speech = resample(wave, rate, 16000)[0]
    root = tmp_path / "archive"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "take1.mp3", speech[:16000], 16000, format="MP3")
    sf.write(root / "take1.wav", speech[16000:32000], 16000)
    sf.write(root / "sub" / "t.wav", speech[32000:48000], 16000)
    return root


def test_scoring_originals_against_themselves_writes_nothing_into_them(archive, tmp_path,
                                                                        caplog):
    before = _tree(archive)
    assert main(["evaluate", str(archive), str(archive), "--group-by-folder",
                 "--metrics", "lsd"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "inside REF_DIR" in errors[0] and "-o" in errors[0]
    assert main(["evaluate", str(archive), str(archive), "--metrics", "lsd",
                 "-o", str(archive / "sub" / "report")]) == 2
    assert _tree(archive) == before

    out = tmp_path / "report"
    assert main(["evaluate", str(archive), str(archive), "--group-by-folder",
                 "--metrics", "lsd", "-o", str(out)]) == 0
    assert _tree(archive) == before
    files = json.loads((out / "metrics.json").read_text())["files"]
    pairs = {Path(f["reference"]).name: Path(f["estimate"]).name for f in files}
    assert pairs == {"take1.mp3": "take1.mp3", "take1.wav": "take1.wav", "t.wav": "t.wav"}
    assert {f["status"] for f in files} == {"ok"}


def test_every_input_is_paired_for_the_comparison(archive, tmp_path, caplog):
    restored = tmp_path / "restored"
    for rel, name in (("take1.mp3", "take1.mp3.wav"), ("take1.wav", "take1.wav.wav"),
                      ("sub/t.wav", "sub/t.wav")):  # as hireslm restore names them
        wave, rate = load_audio(archive / rel)
        (restored / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(restored / name, resample(wave, rate, 48000).T * np.float32(0.9), 48000)
    out = tmp_path / "report"
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(archive), str(restored), "--metrics", "lsd",
                     "--input", str(archive), "-o", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["comparison"]["all"]["files"] == 3
    assert {f["status"] for f in report["input"]["files"]} == {"ok"}
    assert "no input file" not in caplog.text and "leaves out" not in caplog.text
    # a report folder inside the inputs is refused like one inside the references
    assert main(["evaluate", str(tmp_path / "restored"), str(restored), "--metrics", "lsd",
                 "--input", str(archive), "-o", str(archive / "r")]) == 2
    assert not (archive / "r").exists()


def test_an_input_left_out_of_the_comparison_is_reported(archive, tmp_path, caplog):
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "sub" / "t.wav").write_bytes((archive / "sub" / "t.wav").read_bytes())
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(archive), str(archive), "--metrics", "lsd",
                     "--input", str(inputs), "-o", str(tmp_path / "r")]) == 0
    assert "the comparison leaves out 2 of 3 references" in caplog.text

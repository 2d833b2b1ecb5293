"""What ``hireslm restore`` does to its output folder: it writes only its own files, under any
legal name, deletes only what it wrote, and follows no link it finds there (or one that leads
there from the inputs).

Real files, the real command (in-process) and, where a user's rights matter, a real process
run as an unprivileged user.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.fileio import part_prefix
from hireslm.jobs.jsonl_report import REPORT_NAME, read_report

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"
FAST = ["--chunk-seconds", "1.0", "--no-progress"]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """0.3 s of real speech at 16 kHz, ``(1, 4800)``."""
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    return resample(wave, rate, 16000)[:, 2000:6800]


def _restore(release: Path, *args: str) -> int:
    return main(["restore", *args, "--checkpoint", str(release), *FAST])


def _by_name(out: Path) -> dict[str, dict]:
    return {os.path.basename(r["input"]): r for r in read_report(out / REPORT_NAME)}


# -- names --------------------------------------------------------------------------------


def test_names_of_up_to_255_bytes_are_restored_and_their_leftovers_cleaned(release, speech,
                                                                          tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    names = ["x" * 251 + ".wav", "é" * 120 + "_" * 11 + ".wav"]  # 255 bytes each
    for name in names:
        assert len(os.fsencode(name)) == 255
        save_audio(folder / name, speech, 16000)
        out.mkdir(exist_ok=True)  # what a run killed while writing this output leaves
        (out / f"{part_prefix(name)}0123abcd.part").write_bytes(b"half")
    assert _restore(release, str(folder), "-o", str(out)) == 0
    records = _by_name(out)
    assert {records[name]["status"] for name in names} == {"ok"}
    assert all((out / name).is_file() for name in names)
    assert not list(out.glob(".*.part"))

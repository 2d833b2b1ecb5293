"""Per-file overrides: one file's decision changed without editing code, recorded in its
report line and its output's tag; a bad overrides file is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hireslm.audio import save_audio
from hireslm.cli.main import main
from hireslm.data.degradations.noise import colored_noise, mix_at_snr
from hireslm.jobs.overrides import Overrides
from hireslm.jobs.provenance import read_provenance
from hireslm.options import RestoreOptions


@pytest.fixture()
def noisy_folder(tmp_path, reading_48k):
    noise = colored_noise(1, reading_48k.shape[1], 48000, np.random.default_rng(0), alpha=1.0)
    noisy = mix_at_snr(reading_48k, noise, 10.0).astype(np.float32)
    for name in ("a.wav", "b.wav"):
        save_audio(tmp_path / "in" / name, noisy, 48000, subtype="FLOAT")
    return tmp_path / "in"


def test_one_file_is_restored_as_the_overrides_say(noisy_folder, tmp_path):
    (tmp_path / "overrides.yaml").write_text("'*/b.wav': {denoise: never}\n")
    assert main(["restore", str(noisy_folder), "-o", str(tmp_path / "out"), "--no-progress",
                 "--overrides", str(tmp_path / "overrides.yaml"), "--no-html"]) == 0
    records = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line)
               for line in (tmp_path / "out" / "restore_report.jsonl").read_text().splitlines()}
    assert records["a.wav"]["treatment"]["recovered_share"] == [1.0]
    assert records["b.wav"]["treatment"]["recovered"] is None
    assert records["b.wav"]["settings"]["denoise"] == "never"
    assert read_provenance(tmp_path / "out" / "b.wav")["settings"]["denoise"] == "never"
    # A rerun with the same overrides finds both done.
    assert main(["restore", str(noisy_folder), "-o", str(tmp_path / "out"), "--no-progress",
                 "--overrides", str(tmp_path / "overrides.yaml"), "--no-html"]) == 0
    assert len((tmp_path / "out" / "restore_report.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("text,message", [
    ("'a.wav': {denoise: sometimes}\n", "denoise must be one of"),
    ("'a.wav': {chunk_seconds: 2}\n", "not per-file options"),
    ("'a.wav': {colour: red}\n", "are not options"),
    ("- a.wav\n", "must map file patterns to options"),
])
def test_a_bad_overrides_file_is_one_line(noisy_folder, tmp_path, caplog, text, message):
    (tmp_path / "o.yaml").write_text(text)
    code = main(["restore", str(noisy_folder), "-o", str(tmp_path / "out"), "--no-progress",
                 "--overrides", str(tmp_path / "o.yaml")])
    assert code == 2 and message in caplog.text and not (tmp_path / "out").exists()


def test_later_entries_win_and_names_match(tmp_path):
    overrides = Overrides({"*.wav": {"denoise": "never", "seed": 3}, "b.wav": {"seed": 5}})
    options = overrides.options_for(tmp_path / "x" / "b.wav", RestoreOptions())
    assert (options.denoise, options.seed) == ("never", 5)
    assert overrides.options_for(tmp_path / "c.flac", RestoreOptions()) == RestoreOptions()

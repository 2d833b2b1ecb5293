"""What is at an output name and what the run is asked to do: only hireslm's own outputs are
replaced, a changed input is redone, and settings that cannot work are refused up front.

Real files, the real command in-process, a tiny release with random weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_restore import restore as _restore

from hireslm.audio import load_audio, save_audio
from hireslm.fileio import file_sha256
from hireslm.jobs.jsonl_report import REPORT_NAME, read_report
from hireslm.jobs.provenance import TAG, read_provenance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"






def _by_name(out: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in read_report(out / REPORT_NAME)}


def test_a_file_not_made_by_hireslm_is_kept_whatever_its_shape(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("short", "rate", "garbage", "empty"):
        save_audio(folder / f"{name}.wav", speech, 16000)
    out.mkdir()
    sf.write(out / "short.wav", speech[0, :100], 48000)          # the user's: other length
    sf.write(out / "rate.wav", speech[0], 16000)                 # the user's: other rate
    (out / "garbage.wav").write_bytes(b"notes of mine, not audio\n" * 10)
    (out / "empty.wav").write_bytes(b"")
    kept = {n: file_sha256(out / f"{n}.wav") for n in ("short", "rate", "garbage")}

    assert _restore(release, str(folder), "-o", str(out)) == 0
    records = _by_name(out)
    for name in kept:
        assert records[f"{name}.wav"]["status"] == "other", records[f"{name}.wav"]
        assert "kept" in records[f"{name}.wav"]["reason"]
    assert {n: file_sha256(out / f"{n}.wav") for n in kept} == kept
    assert records["empty.wav"]["status"] == "ok"  # 0 bytes: nothing to lose
    assert read_provenance(out / "empty.wav") is not None

    assert _restore(release, str(folder), "-o", str(out), "--force") == 0
    assert all(read_provenance(out / f"{n}.wav") is not None for n in kept)


def test_a_replaced_input_is_redone_and_an_untouched_one_is_not(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "take.wav", speech, 16000)
    save_audio(folder / "same.wav", speech * 0.5, 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    made = read_provenance(out / "take.wav")["input"]
    assert made["size"] == (folder / "take.wav").stat().st_size and len(made["sha256"]) == 64
    before = {n: (out / n).stat().st_mtime_ns for n in ("take.wav", "same.wav")}

    # Another recording, same length and format, written later.
    save_audio(folder / "take.wav", np.roll(speech, 3000) * 0.8, 16000)
    stat = (folder / "take.wav").stat()
    os.utime(folder / "take.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (out / REPORT_NAME).unlink()
    assert _restore(release, str(folder), "-o", str(out)) == 0
    records = _by_name(out)
    assert set(records) == {"take.wav"}  # same.wav: skipped, done before
    assert records["take.wav"]["status"] == "ok"
    assert any("input changed since" in w for w in records["take.wav"]["warnings"])
    assert (out / "same.wav").stat().st_mtime_ns == before["same.wav"]
    assert read_provenance(out / "take.wav")["input"]["sha256"] != made["sha256"]


def test_an_output_tagged_without_a_fingerprint_is_done_when_all_else_matches(
        release, speech, tmp_path):
    """Outputs of the version before input fingerprints: resumed, not redone."""
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "take.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    record = read_provenance(out / "take.wav")
    del record["input"]
    wave, _ = load_audio(out / "take.wav")
    with sf.SoundFile(out / "take.wav", "w", 48000, 1, "PCM_24") as handle:
        handle.comment = TAG + json.dumps(record, sort_keys=True)
        handle.write(wave.T)
    before = file_sha256(out / "take.wav")
    (out / REPORT_NAME).unlink()
    assert _restore(release, str(folder), "-o", str(out)) == 0
    assert not (out / REPORT_NAME).exists() or _by_name(out) == {}
    assert file_sha256(out / "take.wav") == before


def test_a_file_of_many_channels_is_announced(release, speech, tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    # 50 ms: kept as it is (too short to restore), so the test stays fast; the warning comes
    # from the header, before any work.
    save_audio(folder / "array.wav", np.repeat(speech[:, :800], 20, axis=0), 16000)
    save_audio(folder / "stereo.wav", np.repeat(speech[:, :800], 2, axis=0), 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    records = _by_name(out)
    assert any("20 channels" in w for w in records["array.wav"]["warnings"])
    assert records["stereo.wav"]["warnings"] == []
    assert "20 channels" in caplog.text


@pytest.mark.parametrize(("flags", "words"), [
    (["--format", "flac", "--bit-depth", "float"], "FLAC"),
    (["--device", "tpu"], "unknown device"),
    (["--device", "cuda:99"], "GPU"),
    pytest.param(["--device", "cuda"], "no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
    (["--device", "cpu", "--precision", "fp16"], "fp16"),
])
def test_settings_that_cannot_work_are_refused_before_any_file(
        release, speech, tmp_path, caplog, flags, words):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "take.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out), *flags) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and words in errors[0].getMessage(), caplog.text
    assert "\n" not in errors[0].getMessage()
    assert "safetensors" not in caplog.text and "does not fit" not in caplog.text
    assert not (out / "take.wav").exists()

"""``hireslm restore`` in-process and as real processes, on a real folder of mixed files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"
FAST = ["--chunk-seconds", "1.0", "--no-progress"]


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


def _speech(sample_rate: int, seconds: float, index: int = 0) -> np.ndarray:
    wave, sr = load_audio(sorted(EXAMPLES.glob("*.flac"))[index])
    return resample(wave, sr, sample_rate)[:, : int(seconds * sample_rate)]


def _make_archive(root: Path) -> dict[str, tuple[int, int, float]]:
    """A folder tree of real speech at many rates/formats/channel counts, plus bad files.

    Returns the good files: relative path -> (rate, channels, duration).
    """
    good = {}
    cases = [("a/8k.wav", 8000, 1), ("a/16k_stereo.flac", 16000, 2), ("b/22k.mp3", 22050, 1),
             ("b/44k.ogg", 44100, 2), ("48k.wav", 48000, 1), ("b/c/96k.flac", 96000, 1)]
    for i, (rel, sr, channels) in enumerate(cases):
        wave = _speech(sr, 1.5, i % 5)
        wave = np.concatenate([wave, 0.7 * wave]) if channels == 2 else wave
        save_audio(root / rel, wave, sr)
        info = sf.info(str(root / rel))
        good[rel] = (sr, channels, info.frames / sr)
    (root / "bad").mkdir()
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk" * 20)
    (root / "bad" / "empty.flac").write_bytes(b"")
    nan = np.zeros((16000, 1), np.float32)
    nan[100] = np.nan
    sf.write(root / "bad" / "nan.wav", nan, 16000, subtype="FLOAT")
    save_audio(root / "silent.wav", np.zeros((1, 16000), np.float32), 16000)
    return good


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "restore_report.jsonl").read_text().splitlines()]


def test_restores_an_archive_and_reports_bad_files(release, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    good = _make_archive(archive)
    before = _hashes(archive)
    code = main(["restore", str(archive), "-o", str(out), "--checkpoint", str(release), *FAST])
    assert code == 1  # some files failed
    assert _hashes(archive) == before  # inputs untouched
    for rel, (_, channels, duration) in good.items():
        restored, sr = load_audio(out / Path(rel).with_suffix(".wav"))
        assert sr == 48000 and restored.shape == (channels, round(duration * 48000))
        assert np.max(np.abs(restored)) <= 1.0
    records = {Path(r["input"]).name: r for r in _report(out)}
    assert {records[n]["status"] for n in ("corrupt.wav", "empty.flac", "nan.wav")} == {"failed"}
    assert "NonFinite" in records["nan.wav"]["error"]
    assert records["silent.wav"]["status"] == "silent"
    assert not load_audio(out / "silent.wav")[0].any()
    ok = records["96k.flac"]
    assert ok["status"] == "ok" and ok["input_sample_rate"] == 96000 and ok["real_time_factor"] > 0
    assert len(ok["checkpoint"]) == 16
    assert not list(out.rglob("*.part"))


def test_refuses_output_inside_input(release, tmp_path, caplog):
    save_audio(tmp_path / "x.wav", _speech(16000, 0.5), 16000)
    assert main(["restore", str(tmp_path), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(release)]) == 2
    assert "inside input folder" in caplog.text and not (tmp_path / "out").exists()


def test_strength_flag_reaches_the_sampler(release, tmp_path, caplog):
    save_audio(tmp_path / "in" / "x.wav", _speech(16000, 0.8), 16000)
    outputs = {}
    for name, flags in {"resynth": ["--steps", "0"],
                        "kept": ["--steps", "2", "--strength", "1e-4"],
                        "full": ["--steps", "2"]}.items():
        assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / name),
                     "--checkpoint", str(release), *FAST, *flags]) == 0
        outputs[name] = load_audio(tmp_path / name / "x.wav")[0]
    np.testing.assert_allclose(outputs["kept"], outputs["resynth"], atol=1e-3)
    assert np.abs(outputs["full"] - outputs["resynth"]).max() > 1e-3
    # Checked once, by RestoreOptions, before anything is planned: one line, exit 2.
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "bad"),
                 "--strength", "0"]) == 2
    assert "must be in (0, 1]" in caplog.text and not (tmp_path / "bad").exists()


def test_dry_run_writes_nothing(release, tmp_path, capsys):
    save_audio(tmp_path / "in" / "x.wav", _speech(16000, 0.5), 16000)
    code = main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dry-run",
                 "--checkpoint", str(release)])
    assert code == 0 and "restore\t" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_killed_batch_resumes_without_redoing_finished_files(release, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    for i in range(6):
        save_audio(archive / f"f{i}.wav", _speech(16000, 3.0, i % 5), 16000)
    command = [sys.executable, "-m", "hireslm", "restore", str(archive), "-o", str(out),
               "--checkpoint", str(release), *FAST]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("f*.wav"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("f*.wav")}
    assert 2 <= len(finished) < 6, "kill landed too late to test resuming"
    assert main(["restore", str(archive), "-o", str(out), "--checkpoint", str(release),
                 *FAST]) == 0
    assert {p.name for p in out.glob("f*.wav")} == {f"f{i}.wav" for i in range(6)}
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    assert not list(out.glob(".*.part"))
    assert sorted(Path(r["input"]).name for r in _report(out)) == [f"f{i}.wav" for i in range(6)]


def test_ctrl_c_says_the_run_was_interrupted_and_a_rerun_resumes(release, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    for i in range(4):
        save_audio(archive / f"f{i}.wav", _speech(16000, 3.0, i % 5), 16000)
    command = [sys.executable, "-m", "hireslm", "restore", str(archive), "-o", str(out),
               "--checkpoint", str(release), *FAST]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("f*.wav")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert lines == ["hireslm restore: interrupted; run the same command again to resume "
                     "(finished files are kept)"], stderr[-2000:]
    assert main(["restore", str(archive), "-o", str(out), "--checkpoint", str(release),
                 *FAST]) == 0
    assert {p.name for p in out.glob("f*.wav")} == {f"f{i}.wav" for i in range(4)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _restore_in_two_processes(archive: Path, out: Path, release: Path
                              ) -> subprocess.CompletedProcess:
    """``hireslm restore`` under the documented CPU launch of two accelerate processes."""
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "hireslm", "restore",
               str(archive), "-o", str(out), "--checkpoint", str(release), *FAST]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_split_the_files(release, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "out"
    for i in range(5):
        save_audio(archive / f"f{i}.flac", _speech(22050, 1.0 + 0.3 * i, i % 5), 22050)
    result = _restore_in_two_processes(archive, out, release)
    assert result.returncode == 0, result.stderr[-3000:]
    records = _report(out)
    assert sorted(Path(r["input"]).name for r in records) == [f"f{i}.flac" for i in range(5)]
    assert all(r["status"] == "ok" for r in records)
    assert {r["process"] for r in records} == {0, 1}
    assert not list(out.glob("restore_report.rank*"))
    for i in range(5):
        assert sf.info(str(out / f"f{i}.wav")).samplerate == 48000


def test_two_processes_finish_together_when_one_is_slow_and_the_other_fails(release, tmp_path):
    """Process 0 gets a large corrupt file (it fails at once), process 1 two minutes of 8 kHz
    audio in fewer bytes (the plan shares bytes, not seconds): process 0 must wait for
    process 1 before merging, and process 1 must not be stopped by process 0's failure."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    (archive / "a_corrupt.wav").write_bytes(b"RIFF" + os.urandom(1_500_000))
    slow = np.tile(_speech(8000, 2.0), 60)  # 120 s
    sf.write(archive / "b_slow.wav", slow.T, 8000, subtype="ULAW")  # ~960 kB
    save_audio(archive / "c_short.wav", _speech(16000, 0.5), 16000)
    result = _restore_in_two_processes(archive, out, release)
    assert result.returncode == 1, result.stderr[-3000:]
    records = {Path(r["input"]).name: r for r in _report(out)}
    assert set(records) == {"a_corrupt.wav", "b_slow.wav", "c_short.wav"}
    corrupt = records["a_corrupt.wav"]
    assert corrupt["status"] == "failed" and corrupt["process"] == 0
    assert records["b_slow.wav"]["status"] == "ok" and records["b_slow.wav"]["process"] == 1
    assert sf.info(str(out / "b_slow.wav")).frames == slow.shape[1] * 6
    assert not list(out.glob("restore_report.rank*")) and not list(out.glob(".*.done"))

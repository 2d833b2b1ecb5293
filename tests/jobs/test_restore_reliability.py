"""Nothing lost, nothing silently wrong: ``hireslm restore`` under hostile inputs and faults.

Every case uses real files and the real command (in-process, or as real processes where two
runs meet), on a tiny release with random weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from release_factory import make_tiny_release
from safetensors.torch import load_file, save_file
from tiny_restore import FAST
from tiny_restore import restore as _restore

from hireslm.audio import load_audio, resample, save_audio
from hireslm.audiotree import distinct_labels, mirror_names, reference_keys, scan_audio
from hireslm.evaluation.pairs import match_files
from hireslm.fileio import file_sha256
from hireslm.jobs.jsonl_report import REPORT_NAME, ReportWriter, merge_reports, read_report
from hireslm.jobs.lock import LOCK_NAME, OutputFolderLock, is_held
from hireslm.jobs.plan import Job, shard_jobs
from hireslm.jobs.provenance import read_provenance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"






def _records(out: Path) -> list[dict]:
    return read_report(out / REPORT_NAME)


def _by_input(out: Path) -> dict[str, dict]:
    return {r["input"]: r for r in _records(out)}


# -- 1. one output per input -------------------------------------------------------------


def test_names_that_would_meet_get_outputs_of_their_own():
    names = mirror_names([Path("a.wav"), Path("a.flac"), Path("a.wav.flac"), Path("b.mp3")],
                         ".wav")
    assert names == [Path("a.wav.wav"), Path("a.flac.wav"), Path("a.wav.flac.wav"),
                     Path("b.wav")]
    assert distinct_labels([Path("/d/y2019/tapes"), Path("/d/y2020/tapes"), Path("/e/x")]) \
        == [Path("y2019/tapes"), Path("y2020/tapes"), Path("x")]


def test_every_colliding_input_is_restored_to_its_own_file(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("a.wav", "a.flac", "a.wav.flac"):
        save_audio(folder / name, speech * (0.5 + 0.1 * len(name)), 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    records = _records(out)
    assert len(records) == 3 and {r["status"] for r in records} == {"ok"}
    outputs = {Path(r["output"]).name for r in records}
    assert outputs == {"a.wav.wav", "a.flac.wav", "a.wav.flac.wav"}
    assert len({file_sha256(out / name) for name in outputs}) == 3
    # evaluate pairs each restored file with its own reference
    matching = match_files(folder, out, exclude=[])
    assert {(p.reference.name, p.estimate.name) for p in matching.pairs} == {
        ("a.wav", "a.wav.wav"), ("a.flac", "a.flac.wav"), ("a.wav.flac", "a.wav.flac.wav")}
    assert reference_keys([Path("a.wav"), Path("a.wav.flac")]) == {
        "a": Path("a.wav"), "a.wav": Path("a.wav.flac")}


def test_same_named_folders_and_files_keep_apart(release, speech, tmp_path):
    out = tmp_path / "out"
    for year in ("y2019", "y2020"):
        save_audio(tmp_path / "dup" / year / "tapes" / "side_a.wav", speech, 16000)
        save_audio(tmp_path / "single" / year / "take.wav", speech * 0.5, 16000)
    inputs = [str(tmp_path / "dup" / y / "tapes") for y in ("y2019", "y2020")] + \
        [str(tmp_path / "single" / y / "take.wav") for y in ("y2019", "y2020")]
    assert _restore(release, *inputs, "-o", str(out)) == 0
    assert sorted(str(Path(r["output"]).relative_to(out)) for r in _records(out)) == [
        "y2019/take.wav", "y2019/tapes/side_a.wav", "y2020/take.wav", "y2020/tapes/side_a.wav"]


def test_shards_split_every_job_once_and_balance_bytes():
    jobs = [Job(Path(f"/in/{i}.wav"), Path(f"/out/{i}.wav"), size)
            for i, size in enumerate([900, 500, 400, 300, 300, 100, 0])]
    shards = [shard_jobs(jobs, rank, 3) for rank in range(3)]
    assert sorted(j.input for shard in shards for j in shard) == sorted(j.input for j in jobs)
    loads = [sum(j.size_bytes for j in shard) for shard in shards]
    assert max(loads) - min(loads) <= 300  # largest first, each to the least-loaded
    assert shards == [shard_jobs(list(reversed(jobs)), rank, 3) for rank in range(3)]


# -- 2. output is checked before it is written --------------------------------------------


def test_absurd_input_level_fails_with_a_reason(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    sf.write(folder.mkdir() or folder / "huge.wav", speech.T * 3e38, 16000, subtype="FLOAT")
    assert _restore(release, str(folder), "-o", str(out), "--bit-depth", "float") == 1
    record = _records(out)[0]
    assert record["status"] == "failed" and "past full scale" in record["error"]
    assert not (out / "huge.wav").exists()


def _release_with_a_nan_weight(release: Path, target: Path) -> Path:
    """A copy of ``release`` whose vocoder holds one NaN weight, its recorded hash updated:
    a release trained into NaN, not one damaged on disk."""
    make_tiny_release(target)
    path = target / "vocoder.safetensors"
    tensors = load_file(str(path))
    name = next(k for k, t in tensors.items() if t.is_floating_point() and t.ndim > 1)
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata={"stage": "vocoder", "model": "vocos"})
    meta = json.loads((target / "meta.json").read_text())
    meta["stages"]["vocoder"]["weights_sha256"] = file_sha256(path)
    (target / "meta.json").write_text(json.dumps(meta))
    return target


def test_nan_from_the_models_fails_the_file_and_writes_nothing(release, speech, tmp_path):
    broken = _release_with_a_nan_weight(release, tmp_path / "broken")
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)  # 16 kHz: the band above 8 kHz is generated
    for depth in ("float", "24"):
        assert _restore(broken, str(folder), "-o", str(out / depth), "--bit-depth", depth) == 1
        record = _records(out / depth)[0]
        assert record["status"] == "failed" and "NaN" in record["error"], record
        assert not (out / depth / "x.wav").exists()
        assert not list((out / depth).glob(".*.part"))


# -- 3. the output folder never holds an input --------------------------------------------


def test_output_folder_holding_a_file_input_is_refused(release, speech, tmp_path, caplog):
    folder = tmp_path / "sf1"
    save_audio(folder / "take.flac", speech, 16000)
    save_audio(folder / "take.wav", speech * 0.3, 16000)  # the user's own file
    before = file_sha256(folder / "take.wav")
    for extra in ([], ["--force"]):
        assert _restore(release, str(folder / "take.flac"), "-o", str(folder), *extra) == 2
        assert file_sha256(folder / "take.wav") == before
    assert "holds the input" in caplog.text
    parent = tmp_path / "P"
    save_audio(parent / "in" / "x.wav", speech, 16000)
    assert _restore(release, str(parent / "in"), "-o", str(parent)) == 2
    assert _restore(release, str(parent), "-o", str(parent / "in" / "out")) == 2
    assert sorted(p.name for p in parent.rglob("*")) == ["in", "x.wav"]


# -- 4. resume trusts only what this release and these settings made ----------------------


def test_resume_redoes_broken_outputs_and_keeps_others(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for name in ("empty", "short", "steps", "foreign", "done"):
        save_audio(folder / f"{name}.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out), "--steps", "1") == 0
    made = read_provenance(out / "done.wav")
    assert made["settings"]["steps"] == 1 and len(made["release"]) == 16
    (out / "empty.wav").write_bytes(b"")
    whole = (out / "short.wav").read_bytes()
    (out / "short.wav").write_bytes(whole[: len(whole) // 2])
    assert _restore(release, str(folder / "steps.wav"), "-o", str(tmp_path / "s2"),
                    "--steps", "2") == 0
    (out / "steps.wav").write_bytes((tmp_path / "s2" / "steps.wav").read_bytes())
    wave, _ = load_audio(out / "foreign.wav")
    sf.write(out / "foreign.wav", wave.T, 48000, subtype="PCM_24")  # no provenance
    kept = {name: file_sha256(out / f"{name}.wav") for name in ("steps", "foreign", "done")}
    (out / REPORT_NAME).unlink()

    assert _restore(release, str(folder), "-o", str(out), "--steps", "1") == 0
    records = {Path(r["input"]).stem: r for r in _records(out)}
    assert set(records) == {"empty", "short", "steps", "foreign"}  # done.wav: skipped
    for name in ("empty", "short"):
        assert records[name]["status"] == "ok"
        assert any("replaced" in w for w in records[name]["warnings"])
        assert sf.info(str(out / f"{name}.wav")).frames == round(9600 * 3)
    assert records["steps"]["status"] == "other" and "steps 2 (this run: 1)" \
        in records["steps"]["reason"]
    assert records["foreign"]["status"] == "other"
    assert {n: file_sha256(out / f"{n}.wav") for n in kept} == kept

    assert _restore(release, str(folder), "-o", str(out), "--steps", "1", "--force") == 0
    assert read_provenance(out / "steps.wav")["settings"]["steps"] == 1
    assert read_provenance(out / "foreign.wav") is not None


# -- 5. one run per output folder ---------------------------------------------------------


HOLD_LOCK = """
import sys, time
from hireslm.jobs.lock import OutputFolderLock
with OutputFolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_run_on_a_locked_folder_refuses(release, speech, tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _restore(release, str(folder), "-o", str(out)) == 2
        assert f"pid {holder.pid}" in caplog.text and "being written by" in caplog.text
        assert not (out / "x.wav").exists()
    finally:
        holder.kill()
        holder.wait()
    # killed holder: the lock is gone with it
    assert not is_held(out / LOCK_NAME)
    assert _restore(release, str(folder), "-o", str(out)) == 0


# A second run, imports done, that starts restoring the moment the first holds the folder.
SECOND_RUN = """
import sys, time
from pathlib import Path
from hireslm.cli.main import build_parser, main
from hireslm.jobs.lock import is_held
build_parser()  # imports every command's modules now
while not is_held(Path(sys.argv[1])):
    time.sleep(0.01)
sys.exit(main(sys.argv[2:]))
"""


def test_two_concurrent_runs_never_interfere(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        save_audio(folder / f"f{i}.wav", np.tile(speech, 100), 16000)
    arguments = ["restore", str(folder), "-o", str(out), "--checkpoint", str(release), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    second = subprocess.Popen([sys.executable, "-c", SECOND_RUN, str(out / LOCK_NAME),
                               *arguments], env=env, stderr=subprocess.PIPE, text=True)
    first = subprocess.run([sys.executable, "-m", "hireslm", *arguments], env=env,
                           capture_output=True, text=True, timeout=300)
    _, second_err = second.communicate(timeout=120)
    assert second.returncode == 2 and "being written by" in second_err, second_err[-2000:]
    assert "Traceback" not in second_err
    assert first.returncode == 0, first.stderr[-2000:]
    records = _records(out)
    assert sorted(Path(r["input"]).name for r in records) == [f"f{i}.wav" for i in range(6)]
    assert {r["status"] for r in records} == {"ok"}


def test_ranks_of_one_run_share_the_lock_and_others_are_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with OutputFolderLock(out, rank=0), OutputFolderLock(out, rank=1, wait_s=5):
        monkeypatch.setenv("MASTER_PORT", "29998")  # a rank of another launch
        with pytest.raises(RuntimeError, match="being written by"):
            OutputFolderLock(out, rank=1, wait_s=5).__enter__()


# -- 6. the report survives kills and reruns ----------------------------------------------


def test_a_torn_report_line_is_skipped_and_merges_never_repeat(tmp_path):
    out = tmp_path / "out"
    ReportWriter(out / REPORT_NAME).write({"input": "a", "status": "ok", "note": "café"})
    part = out / "restore_report.rank1.jsonl"
    ReportWriter(part).write({"input": "b", "status": "ok"})
    with open(part, "a", encoding="utf-8") as handle:
        handle.write('{"input": "c", "sta')  # killed mid-write
    ReportWriter(part).write({"input": "d", "status": "ok"})  # a later run appends
    merge_reports(out)
    assert [r["input"] for r in read_report(out / REPORT_NAME)] == ["a", "b", "d"]
    assert "café" in (out / REPORT_NAME).read_text(encoding="utf-8")  # UTF-8, not \u escapes
    assert not part.exists()
    # a merge killed after writing the report but before removing the parts: no repeats
    ReportWriter(part).write({"input": "b", "status": "ok"})
    merge_reports(out)
    assert [r["input"] for r in read_report(out / REPORT_NAME)] == ["a", "b", "d"]


def test_a_damaged_part_does_not_block_the_next_run(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    out.mkdir()
    (out / "restore_report.rank1.jsonl").write_text('{"input": "old", "status": "ok"}\n{"inp')
    assert _restore(release, str(folder), "-o", str(out)) == 0
    assert [r["input"] for r in _records(out)][0] == str(folder / "x.wav")


# -- 7. nothing is dropped without a record -----------------------------------------------


def test_dangling_links_and_loops_are_reported(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "good.wav", speech, 16000)
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "self.flac").symlink_to(folder / "self.flac")
    (folder / "sub").mkdir()
    (folder / "sub" / "back").symlink_to(folder, target_is_directory=True)
    (folder / "alias.wav").symlink_to(folder / "good.wav")
    assert _restore(release, str(folder), "-o", str(out)) == 1
    records = {Path(r["input"]).name: r for r in _records(out)}
    assert records["good.wav"]["status"] == "ok"
    assert records["gone.wav"]["status"] == "failed" and "dangling" in records["gone.wav"]["error"]
    assert records["self.flac"]["status"] == "failed" and "loop" in records["self.flac"]["error"]
    assert records["back"]["status"] == "skipped" and "loop" in records["back"]["reason"]
    assert records["alias.wav"]["status"] == "skipped"  # restored once, as good.wav
    assert "same file" in records["alias.wav"]["reason"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder whatever its mode")
def test_an_unreadable_folder_is_reported(tmp_path):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.wav").write_bytes(b"")
    (tmp_path / "locked").chmod(0)
    try:
        problems = scan_audio(tmp_path).problems
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert [p.path.name for p in problems] == ["locked"]
    assert "cannot be read" in problems[0].reason


# -- 8. suspect input ---------------------------------------------------------------------


def _with_rate(path: Path, rate: int) -> None:
    """Rewrite a PCM WAV's header to claim ``rate`` (and the matching byte rate)."""
    data = bytearray(path.read_bytes())
    block_align = int.from_bytes(data[32:34], "little")
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * block_align).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_truncated_and_impossible_rate_files(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "whole.wav", speech, 16000)
    whole = (folder / "whole.wav").read_bytes()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 2])
    for name, rate in (("one_hz.wav", 1), ("two_ghz.wav", 2_000_000_000)):
        (folder / name).write_bytes(whole)
        _with_rate(folder / name, rate)
    assert _restore(release, str(folder), "-o", str(out)) == 1
    records = {Path(r["input"]).name: r for r in _records(out)}
    assert records["whole.wav"]["status"] == "ok" and records["whole.wav"]["warnings"] == []
    cut = records["cut.wav"]
    assert cut["status"] == "ok" and any("truncated" in w for w in cut["warnings"])
    for name in ("one_hz.wav", "two_ghz.wav"):
        assert records[name]["status"] == "failed"
        assert "outside the 8000-192000 Hz" in records[name]["error"]
        assert not (out / name).exists()


def test_files_too_short_to_restore_are_kept_as_they_are(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    for frames in (1, 160, 800):  # one sample, 10 ms, 50 ms at 16 kHz
        save_audio(folder / f"n{frames}.wav", speech[:, 2000:2000 + frames], 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    for record in _records(out):
        assert record["status"] == "ok", record
        assert "too short to restore" in record["treatment"]["reasons"][0]
        restored, _ = load_audio(out / Path(record["output"]).name)
        source, _ = load_audio(record["input"])
        expected = resample(source, 16000, 48000)
        assert restored.shape == expected.shape
        np.testing.assert_allclose(restored, expected, atol=2e-5)


def test_a_single_process_rerun_merges_parts_a_killed_launch_left(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    ReportWriter(out / "restore_report.rank1.jsonl").write({"input": "y", "status": "ok"})
    assert _restore(release, str(folder), "-o", str(out)) == 0
    assert sorted(r["input"] for r in _records(out)) == [str(folder / "x.wav"), "y"]
    assert not (out / "restore_report.rank1.jsonl").exists()

"""What ``hireslm restore`` does to its output folder: it writes only its own files, under any
legal name, deletes only what it wrote, and follows no link it finds there (or one that leads
there from the inputs).

Real files, the real command (in-process) and, where a user's rights matter, a real process
run as an unprivileged user.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from release_factory import make_tiny_release
from tiny_restore import FAST
from tiny_restore import restore as _restore

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.fileio import UnsafePathError, part_prefix
from hireslm.jobs.jsonl_report import (
    REPORT_NAME,
    ReportWriter,
    merge_reports,
    part_name,
    read_report,
)
from hireslm.jobs.lock import LOCK_NAME
from hireslm.jobs.page import ASSETS_DIR, PAGE_NAME, build_html_report
from hireslm.jobs.thumbnails import MANIFEST_NAME

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.fixture(scope="module")
def open_root() -> Path:
    """A folder every user may enter (pytest's own are root's only), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="hireslm-out-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def release(open_root) -> Path:
    return make_tiny_release(open_root / "release")


@pytest.fixture
def shared(open_root, request) -> Path:
    """A fresh folder anyone may write to, for tests that run a process as another user."""
    folder = open_root / request.node.name[:60]
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def as_nobody(call: Callable[[], int], timeout_s: float = 60.0) -> tuple[int, str]:
    """Run ``call`` in a forked child as the unprivileged user ``nobody``; its return value
    (the exit status) and what it logged or printed. A child still running after
    ``timeout_s`` is killed and the test fails.

    The child is a real process of another user, sharing only what this one imported (the
    interpreter's own files may be out of that user's reach, so it cannot start afresh). It
    must not restore: OpenMP does not survive a fork, so a child that runs the models hangs.
    """
    if os.geteuid() != 0:
        pytest.skip("not root: every other test already runs as an unprivileged user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read_end)
            stream = os.fdopen(write_end, "w", buffering=1)
            sys.stdout = sys.stderr = stream
            handler = logging.StreamHandler(stream)
            logging.getLogger().addHandler(handler)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = int(call())
        except BaseException:  # noqa: BLE001 - reported to the parent as output
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(write_end)
    deadline, chunks = time.monotonic() + timeout_s, []
    with os.fdopen(read_end, "rb", buffering=0) as stream:
        while True:
            ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the child did not finish in {timeout_s:.0f} s: "
                            f"{b''.join(chunks).decode(errors='replace')[-2000:]}")
            chunk = stream.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """0.3 s of real speech at 16 kHz, ``(1, 4800)``."""
    wave, rate = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    return resample(wave, rate, 16000)[:, 2000:6800]




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


# -- the lock file ------------------------------------------------------------------------


def _one_error_line(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def test_a_link_or_a_loop_at_the_lock_path_is_refused_and_never_followed(release, speech,
                                                                        tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    assert _restore(release, str(folder), "-o", str(out)) == 2
    assert "is a symbolic link" in _one_error_line(caplog)
    assert victim.read_text() == "keep me" and not (out / "x.wav").exists()
    caplog.clear()
    (out / LOCK_NAME).unlink()
    (out / LOCK_NAME).symlink_to(out / LOCK_NAME)  # a loop: ELOOP however it is opened
    assert _restore(release, str(folder), "-o", str(out)) == 2
    assert "is a symbolic link" in _one_error_line(caplog)


def test_a_lock_file_that_is_not_the_users_own_regular_file_is_refused(release, speech,
                                                                      tmp_path, caplog):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    os.link(victim, out / LOCK_NAME)  # a hard link: truncating it would empty the victim
    assert _restore(release, str(folder), "-o", str(out)) == 2
    assert "hard links" in _one_error_line(caplog) and victim.read_text() == "keep me"
    (out / LOCK_NAME).unlink()
    (out / LOCK_NAME).mkdir()
    caplog.clear()
    assert _restore(release, str(folder), "-o", str(out)) == 2
    assert "not a regular file" in _one_error_line(caplog)
    (out / LOCK_NAME).rmdir()
    if os.geteuid() == 0:  # only root can give a file away
        (out / LOCK_NAME).write_text("{}")
        os.chown(out / LOCK_NAME, 65534, 65534)
        caplog.clear()
        assert _restore(release, str(folder), "-o", str(out)) == 2
        assert "belongs to another user" in _one_error_line(caplog)
        assert (out / LOCK_NAME).read_text() == "{}"


def test_as_an_unprivileged_user_the_lock_is_never_followed(release, speech, shared):
    folder, out = shared / "in", shared / "out"
    save_audio(folder / "x.wav", speech, 16000)
    out.mkdir()
    out.chmod(0o777)
    victim = shared / "users_file.txt"
    victim.write_text("keep me")
    os.chown(victim, 65534, 65534)  # the user's own file: the link would reach it
    (out / LOCK_NAME).symlink_to(victim)
    arguments = ["restore", str(folder), "-o", str(out), "--checkpoint", str(release), *FAST]
    code, output = as_nobody(lambda: main(arguments))
    assert code == 2, output
    assert "is a symbolic link" in output and "Traceback" not in output, output
    assert victim.read_text() == "keep me"
    (out / LOCK_NAME).unlink()
    (out / LOCK_NAME).write_text("{}")
    (out / LOCK_NAME).chmod(0o666)  # root's file, writable by all: still not the user's
    code, output = as_nobody(lambda: main(arguments))
    assert code == 2 and "belongs to another user (uid 0)" in output, output


# -- the report ---------------------------------------------------------------------------


def test_a_link_at_the_report_path_is_refused_and_never_appended_to(release, speech,
                                                                   tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    victim = tmp_path / "precious.jsonl"
    victim.write_text("keep me\n")
    out.mkdir()
    (out / REPORT_NAME).symlink_to(victim)
    assert _restore(release, str(folder), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and len(err.strip().splitlines()) == 1, err
    assert victim.read_text() == "keep me\n" and not (out / "x.wav").exists()
    # the merge of a multi-process run neither reads the link nor loses the parts
    ReportWriter(out / part_name(1)).write({"input": "y", "status": "ok"})
    with pytest.raises(UnsafePathError, match="symbolic link"):
        merge_reports(out)
    assert (out / part_name(1)).is_file() and victim.read_text() == "keep me\n"
    with pytest.raises(UnsafePathError):
        read_report(out / REPORT_NAME)


def test_as_an_unprivileged_user_the_report_is_never_followed(shared):
    victim = shared / "users_file.jsonl"
    victim.write_text("keep me\n")
    os.chown(victim, 65534, 65534)
    (shared / REPORT_NAME).symlink_to(victim)

    def append() -> int:
        try:
            ReportWriter(shared / REPORT_NAME).write({"input": "x", "status": "ok"})
        except UnsafePathError as exc:
            print(exc)
            return 2
        return 0

    code, output = as_nobody(append)
    assert code == 2 and "is a symbolic link" in output, output
    assert victim.read_text() == "keep me\n"


# -- links from the inputs ----------------------------------------------------------------


def test_links_from_the_inputs_into_the_output_folder_are_skipped(release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    (folder / "previous").symlink_to(out, target_is_directory=True)
    (folder / "again.wav").symlink_to(out / "x.wav")
    for _ in range(2):  # outputs never become inputs, however often it is rerun
        assert _restore(release, str(folder), "-o", str(out)) == 0
        audio = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
        assert audio == ["x.wav"], audio
        records = _by_name(out)
        for name in ("previous", "again.wav"):
            assert records[name]["status"] == "skipped", records[name]
            assert "leads into the output folder" in records[name]["reason"]


# -- names that are not UTF-8 -------------------------------------------------------------

LATIN1 = b"caf\xe9.wav"  # "café.wav" from a Latin-1 archive: not valid UTF-8


def _exact(record: dict, field: str = "input") -> str:
    return os.fsdecode(bytes.fromhex(record[f"{field}_bytes"]))


def test_names_that_are_not_utf8_are_reported_losslessly_and_the_run_goes_on(
        release, speech, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "good.wav", speech, 16000)
    save_audio(folder / "tmp.wav", speech, 16000)
    os.rename(folder / "tmp.wav", os.path.join(os.fsencode(folder), LATIN1))
    assert _restore(release, str(folder), "-o", str(out)) in (0, 1)
    (out / REPORT_NAME).read_bytes().decode("utf-8")  # strict: the report is UTF-8
    records = {r["input"]: r for r in read_report(out / REPORT_NAME)}
    assert records[str(folder / "good.wav")]["status"] == "ok"
    latin = records[f"{folder}/caf\\xe9.wav"]  # shown escaped, and exact in input_bytes
    assert _exact(latin) == os.fsdecode(os.path.join(os.fsencode(folder), LATIN1))
    json.dumps(list(records.values()), ensure_ascii=False).encode("utf-8")  # no surrogates
    page = (out / PAGE_NAME).read_text(encoding="utf-8")
    assert "caf\\xe9.wav" in page and page.count("<tr class=") == 2


def test_an_output_folder_whose_name_is_not_utf8_gets_its_report_and_page(release, speech,
                                                                         tmp_path):
    folder = tmp_path / "in"
    save_audio(folder / "good.wav", speech, 16000)
    out = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"restored-\xe9"))
    assert _restore(release, str(folder), "-o", out) in (0, 1)
    [record] = read_report(Path(out) / REPORT_NAME)
    assert record["input"] == str(folder / "good.wav")
    assert (Path(out) / PAGE_NAME).is_file()
    assert "restored-\\xe9" in (Path(out) / PAGE_NAME).read_text(encoding="utf-8")


def test_files_whose_names_are_not_utf8_are_restored(release, speech, tmp_path):
    folder = tmp_path / "in"
    save_audio(folder / "tmp.wav", speech, 16000)
    os.rename(folder / "tmp.wav", os.path.join(os.fsencode(folder), LATIN1))
    out = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"restored-\xe9"))
    assert _restore(release, str(folder), "-o", out) == 0
    [record] = read_report(Path(out) / REPORT_NAME)
    assert record["status"] == "ok" and os.path.isfile(_exact(record, "output"))


# -- the page's thumbnails folder ---------------------------------------------------------


def _pictures(out: Path) -> list[str]:
    page = (out / PAGE_NAME).read_text(encoding="utf-8")
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.fixture
def restored(release, speech, tmp_path) -> Path:
    """An output folder of one restored file, its page without its thumbnails folder."""
    folder, out = tmp_path / "in", tmp_path / "out"
    save_audio(folder / "x.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    assert len(_pictures(out)) == 2
    shutil.rmtree(out / ASSETS_DIR)
    return out


def _users_pictures(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {"holiday.png": b"\x89PNG mine", "0123456789abcdef01234567.png": b"also mine"}
    for name, data in pictures.items():
        (folder / name).write_bytes(data)
    return pictures


def test_a_link_at_the_thumbnails_folder_is_never_followed(restored, tmp_path, caplog):
    elsewhere = tmp_path / "my pictures"
    kept = _users_pictures(elsewhere)
    (restored / ASSETS_DIR).symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        build_html_report(restored)
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == kept  # nothing added
    assert _pictures(restored) == [] and "is a symbolic link" in caplog.text
    assert "no pictures" in (restored / PAGE_NAME).read_text(encoding="utf-8")


def test_a_thumbnails_folder_hireslm_did_not_make_is_left_alone(restored, caplog):
    kept = _users_pictures(restored / ASSETS_DIR)
    with caplog.at_level(logging.WARNING):
        build_html_report(restored)
    assert {p.name: p.read_bytes() for p in (restored / ASSETS_DIR).iterdir()} == kept
    assert _pictures(restored) == [] and "holiday.png" in caplog.text


def test_only_the_thumbnails_hireslm_wrote_are_ever_deleted(restored):
    build_html_report(restored)  # makes the folder, and its manifest
    made = set(_pictures(restored))
    assert len(made) == 2
    # a file the user put there, named as hireslm names thumbnails: not in the manifest
    stranger = restored / ASSETS_DIR / "0123456789abcdef01234567.png"
    stranger.write_bytes(b"mine")
    (restored / "x.wav").unlink()  # its thumbnail is no longer shown: removed
    build_html_report(restored)
    assert stranger.read_bytes() == b"mine"
    left = {f"{ASSETS_DIR}/{p.name}" for p in (restored / ASSETS_DIR).glob("*.png")}
    assert left == (made & set(_pictures(restored))) | {f"{ASSETS_DIR}/{stranger.name}"}
    assert len(_pictures(restored)) == 1


def test_a_thumbnails_folder_of_an_earlier_hireslm_is_taken_over(restored):
    build_html_report(restored)
    (restored / ASSETS_DIR / MANIFEST_NAME).unlink()  # as an earlier version left it
    old = restored / ASSETS_DIR / "ffffffffffffffffffffffff.png"
    old.write_bytes(b"an old thumbnail")
    build_html_report(restored)
    assert len(_pictures(restored)) == 2 and not old.exists()


def test_as_an_unprivileged_user_a_thumbnails_folder_of_another_is_left_alone(
        release, speech, shared):
    folder, out = shared / "in", shared / "out"
    save_audio(folder / "x.wav", speech, 16000)
    assert _restore(release, str(folder), "-o", str(out)) == 0
    for path in [out, *out.iterdir()]:
        if path.name != ASSETS_DIR:
            os.chown(path, 65534, 65534)  # the user's folder, but root's .report
    kept = {p.name: p.read_bytes() for p in (out / ASSETS_DIR).iterdir()}
    (out / "x.wav").unlink()  # a rebuild would remove its thumbnail, were .report the user's
    code, output = as_nobody(lambda: 0 if build_html_report(out) else 1)
    assert code == 0 and "belongs to another user (uid 0)" in output, output
    assert {p.name: p.read_bytes() for p in (out / ASSETS_DIR).iterdir()} == kept
    assert _pictures(out) == []

"""The ``hireslm`` entry point: light start-up, ``--version``, one-line errors with their exit
codes, ``--debug`` tracebacks and thread settings; as real processes where that is the point."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hireslm
from hireslm.cli import main as cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Runs the command line in-process and prints the heavy modules it imported.
PROBE = """
import sys
from hireslm.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", *[m for m in ("torch", "diffusers", "scipy.signal", "peft") if m in sys.modules])
"""


def _hireslm(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hireslm", *argv], env=ENV,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "clip.wav"
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["release", "--help"]])
def test_help_and_version_import_no_torch(argv):
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], env=ENV,
                            capture_output=True, text=True, timeout=60)
    heavy = [line for line in result.stdout.splitlines() if line.startswith("HEAVY")]
    if argv != ["release", "--help"]:
        assert heavy == ["HEAVY"], result.stdout + result.stderr
    if argv == ["--version"]:
        assert f"hireslm {hireslm.__version__}" in result.stdout
    if argv == ["--help"]:
        assert "restore" in result.stdout and "exit status" in result.stdout
        assert "dispatcher" not in result.stdout  # reads as a tool's help, not a docstring
    if argv == ["release", "--help"]:
        assert "merge-lora" in result.stdout
        assert "peft" not in heavy[0]


def test_restore_help_shows_defaults_and_every_option_has_help(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["restore", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for expected in ("--threads", "(default: 8.0)", "(default: fp32)", "(default: 0)"):
        assert expected in text, expected
    parser = cli.build_parser(["restore"])
    restore = parser._subparsers._group_actions[0].choices["restore"]
    assert all(action.help for action in restore._actions), \
        [a.dest for a in restore._actions if not a.help]


def test_every_option_of_every_command_has_help():
    def undocumented(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    yield from undocumented(child, f"{name} {child_name}")
            elif not action.help:
                yield f"{name} {action.dest}"

    assert list(undocumented(cli.build_parser(), "hireslm")) == []


def test_missing_input_is_one_line_exit_2(tmp_path):
    result = _hireslm("restore", str(tmp_path / "nowhere.wav"), "-o", str(tmp_path / "out"))
    _one_line_error(result, 2, "nowhere.wav")


def test_bad_checkpoint_is_one_line_exit_2(clip, tmp_path):
    result = _hireslm("restore", str(clip), "-o", str(tmp_path / "out"), "--checkpoint",
                      str(tmp_path), "--no-progress")
    _one_line_error(result, 2, str(tmp_path), "release")


def test_output_that_is_a_file_is_one_line_exit_2(clip, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    _one_line_error(_hireslm("restore", str(clip), "-o", str(afile), "--no-progress"), 2,
                    str(afile), "is a file", "folder")
    assert afile.read_text() == "not a folder"


def test_debug_shows_the_traceback(tmp_path):
    argv = ["release", "show", str(tmp_path / "no_release")]
    _one_line_error(_hireslm(*argv), 2, "no_release")
    debug = _hireslm("--debug", *argv)
    assert debug.returncode != 0 and "Traceback" in debug.stderr, debug.stderr[-2000:]


def test_dry_run_imports_no_torch(clip, tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, "restore", str(clip), "-o",
                             str(tmp_path / "out"), "--dry-run"], env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert "restore\t" in result.stdout and "HEAVY" in result.stdout, result.stderr[-2000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("HEAVY")] == ["HEAVY"]
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2():
    assert _hireslm("frobnicate").returncode == 2
    assert _hireslm().returncode == 2


@pytest.fixture
def command(monkeypatch):
    """A fake sub-command ``boom`` whose ``run`` raises what the test puts in ``raises``."""
    module = types.ModuleType("fake_boom")
    module.raises = None

    def run(args):
        if module.raises is not None:
            raise module.raises
        print("x" * 100)
        return 0

    module.add_arguments = lambda parser: None
    module.run = run
    monkeypatch.setitem(sys.modules, "fake_boom", module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("fake_boom", "fails on purpose"))
    return module


@pytest.mark.parametrize(("exc", "code", "words"), [
    (FileNotFoundError(errno.ENOENT, "No such file", "/x/y.wav"), 2, ["/x/y.wav", "no such"]),
    (PermissionError(errno.EACCES, "Permission denied", "/ro"), 2, ["/ro", "permission"]),
    (OSError(errno.ENOSPC, "No space left on device", "/full/o.wav"), 1, ["/full", "space"]),
    (ValueError("chunk_seconds must be > 0"), 2, ["chunk_seconds"]),
])
def test_expected_errors_are_one_line(command, capsys, exc, code, words):
    command.raises = exc
    assert cli.main(["boom"]) == code
    err = capsys.readouterr().err
    assert err.startswith("hireslm boom: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err.lower() or word in err
    with pytest.raises(type(exc)):
        cli.main(["--debug", "boom"])


def test_interrupt_exits_130_with_one_line_and_bugs_keep_their_traceback(command, capsys):
    command.raises = KeyboardInterrupt()
    assert cli.main(["boom"]) == 130
    assert capsys.readouterr().err == "hireslm boom: interrupted\n"
    command.raises = RuntimeError("a bug")
    with pytest.raises(RuntimeError):
        cli.main(["boom"])


def test_release_show_into_a_closed_pipe_exits_quietly():
    release = Path(__file__).resolve().parents[2] / "checkpoints" / "hireslm-demo"
    process = subprocess.Popen([sys.executable, "-m", "hireslm", "release", "show",
                                str(release)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # as `| head` does once it has its lines
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_threads_option_sets_torch_threads(clip, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert cli.main(["restore", str(clip), "-o", str(tmp_path / "o"), "--dry-run",
                         "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert cli.main(["restore", str(clip), "-o", str(tmp_path / "o"), "--dry-run",
                         "--threads", "0"]) == 2
        assert "--threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_chosen_command():
    assert cli.chosen_command(["-v", "--debug", "restore", "x"]) == "restore"
    assert cli.chosen_command(["--help"]) is None
    assert cli.chosen_command(["nope", "restore"]) is None

"""What training shows on the console: real tiny runs of ``train/train_vae.py`` (debug config,
the committed LibriVox clips), their stderr captured through a pipe (a log file, a batch job)
and through a pseudo-terminal (a user at a terminal)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from hireslm.training.tracking import ConsoleProgress, wants_bar

REPO = Path(__file__).resolve().parents[2]
# 4 steps, logged every 2, one validation at the end, no checkpoints.
TINY = ["train.max_steps=4", "train.log_every=2", "train.val_every=4", "train.ckpt_every=0"]


def _command(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "train" / "train_vae.py"), "--config",
            str(REPO / "configs" / "vae" / "debug.yaml"), f"run_dir={run_dir}", *TINY,
            *overrides]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_log_gets_a_loss_line_per_log_interval_and_one_indexing_line(tmp_path):
    done = subprocess.run(_command(tmp_path / "run"), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr
    assert len(re.findall(r"indexing \d+ files", err)) == 1, err
    lines = re.findall(r"step (\d)/4 \((\d+)%\): (.*) \| lr (\S+) \| (\S+) steps/s, ETA (\S+)",
                       err)
    assert [(step, pct) for step, pct, *_ in lines] == [("2", "50"), ("4", "100")], err
    for _, _, losses, *_ in lines:
        assert re.search(r"(^|, )loss \d", losses) and "mel_l1" in losses and "kl" in losses
    assert lines[-1][-1] == "00:00"  # nothing left at the last step
    assert "\r" not in err  # no bar in a log


def _run_in_terminal(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with stdout and stderr on a pseudo-terminal; (exit code, output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdin=subprocess.DEVNULL,
                               stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode("utf-8", "replace")


def test_a_terminal_gets_a_bar_with_eta_and_the_running_loss(tmp_path):
    code, out = _run_in_terminal(_command(tmp_path / "run"))
    assert code == 0, out[-3000:]
    assert re.search(r"training: 100%\|.*\| 4/4 \[[0-9:]+<00:00, .*loss=\d", out), out
    assert re.search(r"training: +\d+%\|.*\| [0-3]/4 \[[0-9:]+<[0-9:?]+", out), out  # with ETA
    assert "step 4 validation" in out  # log lines still show, above the bar
    assert len(re.findall(r"indexing \d+ files", out)) == 1
    assert not re.search(r"step \d/4 \(\d+%\)", out)  # the bar replaces the log lines


def test_the_progress_setting():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_bar("auto", Terminal()) and not wants_bar("auto", io.StringIO())
    assert wants_bar(True, io.StringIO()) and not wants_bar(False, Terminal())
    with pytest.raises(ValueError, match="train.progress"):
        wants_bar("sometimes", io.StringIO())
    stream = io.StringIO()
    with ConsoleProgress(True, main=False, total=3, stream=stream) as progress:
        progress.observe({"loss": 1.0})
        progress.advance(1)
    assert stream.getvalue() == ""  # other processes show nothing
    with ConsoleProgress(True, main=True, total=3, stream=stream) as progress:
        for value in (1.0, 0.0):
            progress.observe({"loss": value, "kl": 5.0})
        progress.advance(2)
    assert "loss=0.9" in stream.getvalue() and "kl" not in stream.getvalue()

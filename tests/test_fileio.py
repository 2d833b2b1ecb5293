"""Atomic writes: whole or nothing, and ordinary permissions."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from hireslm.audio import save_audio
from hireslm.fileio import atomic_path, write_json_atomic


def test_written_files_get_umask_permissions(tmp_path):
    # mkstemp makes owner-only files; a restored file must be as readable as any other.
    plain = tmp_path / "plain"
    plain.write_text("x")
    wav = save_audio(tmp_path / "out.wav", np.zeros((1, 480), dtype=np.float32), 48000)
    meta = write_json_atomic(tmp_path / "meta.json", {"a": 1})
    for path in (wav, meta):
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert not list(tmp_path.glob("*.part"))


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]

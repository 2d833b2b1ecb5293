"""Atomic writes: whole or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from hireslm.audio import save_audio
from hireslm.fileio import atomic_path, part_glob, write_json_atomic


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


@pytest.mark.parametrize("name", ["x" * 251 + ".wav", "é" * 125 + ".wav", "a" * 255])
def test_any_legal_name_can_be_written_atomically(tmp_path, name):
    # The hidden temp name beside the target must itself be a legal name (255 bytes).
    target = tmp_path / name
    assert len(os.fsencode(target.name)) <= 255
    with atomic_path(target) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255
        tmp.write_text("whole")
        assert list(tmp_path.glob(part_glob(name))) == [tmp]  # stale cleanup finds it
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_names_part_pattern_matches_only_its_own_temp_files(tmp_path):
    # "a.wav"'s cleanup must not take the live temp file of "a.wav.flac.wav" (another
    # process's job), nor a name with glob characters miss its own.
    for name in ("a.wav", "a.wav.flac.wav", "take [1].wav"):
        with atomic_path(tmp_path / name) as tmp:
            tmp.write_text(name)
            assert list(tmp_path.glob(part_glob(name))) == [tmp]

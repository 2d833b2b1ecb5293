"""``hireslm release merge-lora`` never overwrites a release folder silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from release_factory import make_tiny_release
from safetensors.torch import load_file

from hireslm.cli.main import main
from hireslm.release import load_stage
from hireslm.training.adapters import merge_adapter, save_adapter
from hireslm.training.lora import apply_lora

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["qkv", "proj"]}


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny release and an adapter on its DiT with non-zero weights (as after training)."""
    root = tmp_path_factory.mktemp("lora")
    base = make_tiny_release(root / "base")
    dit = apply_lora(load_stage(base, "dit"), LORA)
    with torch.no_grad():
        for name, param in dit.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    save_adapter(root / "adapter", "dit", dit, LORA, base_release=base)
    return base, root / "adapter"


def test_merging_into_an_existing_release_is_refused(base_and_adapter, tmp_path, capsys):
    base, adapter = base_and_adapter
    out = merge_adapter(base, adapter, tmp_path / "merged")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match="already exists and is not empty.*--overwrite"):
        merge_adapter(base, adapter, out)
    assert main(["release", "merge-lora", str(base), str(adapter), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    # An empty folder is not a release: merging into it is fine.
    (tmp_path / "empty").mkdir()
    assert (merge_adapter(base, adapter, tmp_path / "empty") / "dit.safetensors").is_file()


def test_overwrite_replaces_the_whole_folder(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    out = tmp_path / "merged"
    out.mkdir()
    (out / "recovery.safetensors").write_bytes(b"a stage of another release")
    (out / "notes.txt").write_text("left by hand")
    assert main(["release", "merge-lora", str(base), str(adapter), str(out),
                 "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in merge_adapter(base, adapter, tmp_path / "fresh")
                           .iterdir())
    assert "recovery.safetensors" not in names and "notes.txt" not in names
    merged = load_file(str(out / "dit.safetensors"))
    assert any(not torch.equal(merged[k], v)
               for k, v in load_file(str(base / "dit.safetensors")).items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "merged"]  # no leftovers


def test_a_failed_merge_leaves_the_existing_folder(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    out = merge_adapter(base, adapter, tmp_path / "merged")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = make_tiny_release(tmp_path / "other", seed=1)  # not the adapter's base
    with pytest.raises(Exception, match="not the adapter's base"):
        merge_adapter(other, adapter, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "other"]

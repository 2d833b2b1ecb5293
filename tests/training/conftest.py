"""Fixtures of the training tests: real speech records and a tiny trained VAE release."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_runs import REPO, debug_config

from hireslm.data.manifest import index_folders
from hireslm.training import fit
from hireslm.training.stages import STAGE_CLASSES


@pytest.fixture(scope="session")
def librivox_records() -> list[dict]:
    records, failures = index_folders([REPO / "examples" / "librivox"])
    assert records and not failures
    return records


@pytest.fixture(scope="session")
def vae_release(tmp_path_factory) -> Path:
    """A debug VAE trained for a few steps: the frozen VAE of the DiT tests."""
    run = tmp_path_factory.mktemp("vae_for_dit")
    return fit(STAGE_CLASSES["vae"](), debug_config("vae", run, "train.max_steps=6",
                                                    "train.val_every=0", "train.ckpt_every=6"))

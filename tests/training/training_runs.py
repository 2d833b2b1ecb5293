"""What the training tests share: the repository's debug configs and tiny fixed data."""

from __future__ import annotations

from pathlib import Path

from hireslm.config import load_config
from hireslm.data.dataset import PairedSpeechDataset
from hireslm.training.tracking import read_metrics

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def debug_config(stage: str, run_dir: Path, *overrides: str):
    return load_config(CONFIGS / stage / "debug.yaml", [f"run_dir={run_dir}", *overrides])


def fixed_batch_data(records: list[dict], seconds: float) -> tuple[PairedSpeechDataset, None]:
    """Two fixed clean/degraded pairs (validation mode: same crops every epoch)."""
    data = PairedSpeechDataset(records[:2], seconds, validation=True, length=2)
    return data, None


def losses(run_dir: Path, key: str) -> list[float]:
    return [row[key] for row in read_metrics(run_dir) if key in row]


def assert_falls(values: list[float], factor: float) -> None:
    head, tail = sum(values[:3]) / 3, sum(values[-3:]) / 3
    assert tail < factor * head, f"loss did not fall enough: {head:.4f} -> {tail:.4f}"

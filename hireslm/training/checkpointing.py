"""Resume checkpoints: ``accelerator.save_state`` into ``run_dir/checkpoints/step_XXXXXXX``.

A checkpoint is written into a hidden temporary folder and renamed into place once complete,
so a crash mid-save never leaves a folder that looks like a finished checkpoint. Only the
main process creates, renames and prunes folders; every rank writes its own RNG state into
the shared temporary folder.

accelerate saves the models and optimizers; the loop's own state (``write_state``) goes in
beside them as JSON and safetensors (``hireslm.training.resume_state``). accelerate's per-rank
``random_states_*.pkl`` are deleted once written: the loop keeps those states itself, so a
checkpoint holds no pickle but the optimizers' (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{7,})$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Finished checkpoints as ``(step, path)``, oldest first (temp folders are ignored)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def remove_partial(run_dir: str | os.PathLike) -> None:
    """Delete temporary folders left by a save that was killed (main process only)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for path in root.glob(".step_*.partial"):
            logger.warning("removing unfinished checkpoint %s", path)
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, run_dir: str | os.PathLike, step: int,
                    keep_last: int, write_state: Callable[[Path], None] | None = None) -> Path:
    """Save the full training state at ``step`` atomically and keep the newest ``keep_last``
    (``keep_last <= 0``: prune nothing).

    Must be called on every process; each calls ``write_state(folder)`` after accelerate's
    save (it writes the loop's state: per-rank files on every rank, shared ones on the main).
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f".{checkpoint_name(step)}.partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if write_state is not None:
        write_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for pickled in tmp.glob("random_states_*.pkl"):
            pickled.unlink()
        if final.exists():  # same step saved twice (e.g. the divergence guard right after a save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(root, keep_last)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    found = list_checkpoints(root.parent)
    for _, path in found[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)

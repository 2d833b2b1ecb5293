"""The loop's own resume state, stored as JSON and safetensors: nothing here is unpickled.

accelerate writes the models (safetensors) and optimizers (torch files, which resuming loads
with ``weights_only=True``) into a checkpoint. Everything else the loop needs to continue
exactly is written by this module next to them:

- ``loop_state.json`` + ``loop_state.safetensors`` (main process): the step, the LR
  schedulers, the EMA shadows (tensors in the safetensors file, the rest in JSON) and the
  early-stopping state;
- ``rng_rank<R>.safetensors`` (every rank): that rank's Python, NumPy, torch (CPU and CUDA)
  random states and the stages' own generator.

accelerate's own pickles (``custom_checkpoint_*.pkl``, ``random_states_*.pkl``) are not
written; a checkpoint that holds a ``custom_checkpoint_*.pkl`` is refused, since loading it
would unpickle with ``weights_only=False`` and could run code from the run folder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

LOOP_STATE = "loop_state.json"
LOOP_TENSORS = "loop_state.safetensors"
FORMAT = 1
_TENSOR = "__tensor__"


class CheckpointError(ValueError):
    """A checkpoint folder cannot be resumed from (unsafe, incomplete or mismatched)."""


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.safetensors"


def split_tensors(tree: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """``tree`` with every tensor moved into ``tensors`` (CPU) and replaced by a reference."""
    if torch.is_tensor(tree):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(tree, dict):
        if not all(isinstance(key, str) for key in tree):
            raise TypeError(f"loop state keys must be strings at '{prefix}'")
        return {key: split_tensors(value, tensors, f"{prefix}{key}.") for key, value in
                tree.items()}
    if isinstance(tree, (list, tuple)):
        return [split_tensors(value, tensors, f"{prefix}{index}.")
                for index, value in enumerate(tree)]
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot store {type(tree).__name__} at '{prefix}' in the loop state")


def join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``split_tensors``."""
    if isinstance(tree, dict):
        if set(tree) == {_TENSOR}:
            return tensors[tree[_TENSOR]]
        return {key: join_tensors(value, tensors) for key, value in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(value, tensors) for value in tree]
    return tree


def save_loop_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of JSON scalars and tensors) into ``folder``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(state, tensors)
    save_file(tensors, str(folder / LOOP_TENSORS))
    (folder / LOOP_STATE).write_text(json.dumps({"format": FORMAT, "state": tree}, indent=1))


def load_loop_state(folder: Path) -> dict[str, Any]:
    """What ``save_loop_state`` wrote; ``CheckpointError`` when missing or unreadable."""
    path = folder / LOOP_STATE
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {folder} has no {LOOP_STATE}: it was not written by this version of "
            "the training loop (older versions kept the loop state in pickles, which are no "
            "longer loaded); start a new run_dir, e.g. with init_from=<its release>")
    try:
        document = json.loads(path.read_text())
        if document.get("format") != FORMAT:
            raise CheckpointError(f"{path}: unknown format {document.get('format')!r}")
        return join_tensors(document["state"], load_file(str(folder / LOOP_TENSORS)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {folder}: unreadable loop state ({error})") from error


def refuse_pickled_state(folder: Path) -> None:
    """Raise if ``folder`` holds pickles that accelerate would load with ``weights_only=False``."""
    pickles = sorted(path.name for path in folder.glob("custom_checkpoint_*.pkl"))
    if pickles:
        raise CheckpointError(
            f"checkpoint {folder} holds pickled state ({', '.join(pickles)}); unpickling it "
            "could run code from the run folder, so it is not loaded. Checkpoints of this "
            f"training loop keep that state in {LOOP_STATE}; delete the pickles only if the "
            "folder also has it, or start a new run_dir")


def save_rng_state(folder: Path, rank: int, generator: torch.Generator) -> None:
    """This rank's global random states and ``generator``'s into ``rng_rank<rank>.safetensors``."""
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = value
    extra = {"python_version": version, "python_gauss": gauss, "numpy_kind": kind,
             "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss),
             "numpy_cached": float(cached)}
    save_file(tensors, str(folder / rng_file(rank)), metadata={"state": json.dumps(extra)})


def load_rng_state(folder: Path, rank: int, generator: torch.Generator) -> None:
    """Restore what ``save_rng_state`` wrote for ``rank``."""
    path = folder / rng_file(rank)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no random state for rank {rank} "
                              f"({path.name}); was it written with another number of processes?")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            extra = json.loads(handle.metadata()["state"])
        random.setstate((int(extra["python_version"]),
                         tuple(int(v) for v in tensors["python"].tolist()),
                         extra["python_gauss"]))
        np.random.set_state((str(extra["numpy_kind"]),
                             tensors["numpy"].numpy().astype(np.uint32),
                             int(extra["numpy_pos"]), int(extra["numpy_has_gauss"]),
                             float(extra["numpy_cached"])))
        torch.set_rng_state(tensors["torch"])
        generator.set_state(tensors["generator"])
        cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"checkpoint {folder}: unreadable random state {path.name} "
                              f"({error})") from error

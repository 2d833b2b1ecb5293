"""Guards for training on small data sets (fine-tuning on a few studio recordings).

- ``holdout_split``: take a validation split out of a manifest that has none, so validation
  (and early stopping) measures files the model does not train on.
- ``plan_max_steps``: refuse too few files for the batch size, and cap ``train.max_steps`` at
  ``train.max_epochs`` passes over the distinct training files.

Keys (all optional, off by default): ``data.holdout`` (fraction of files, or a count when >= 1),
``train.min_items``, ``train.min_items_per_batch``, ``train.max_epochs``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from hireslm.data.manifest import file_key
from hireslm.training.settings import TrainSettings

logger = logging.getLogger(__name__)


def holdout_split(records: Sequence[dict[str, Any]], holdout: float,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``records`` into ``(train, valid)`` deterministically by file name.

    ``holdout`` < 1 is a fraction of the files, >= 1 a number of files; at least one file goes
    to each side. The choice depends on a hash of each file's parent folder and name (as
    ``hireslm data index --split-by file`` does), not on the order of the records or the seed.
    """
    if holdout <= 0:
        raise ValueError(f"data.holdout must be positive, got {holdout}")
    if len(records) < 2:
        raise ValueError(f"data.holdout needs at least 2 files to split, got {len(records)}")
    count = round(holdout * len(records)) if holdout < 1 else int(holdout)
    count = min(max(count, 1), len(records) - 1)
    order = sorted(range(len(records)), key=lambda i: _file_key(records[i]))
    chosen = set(order[:count])
    train = [r for i, r in enumerate(records) if i not in chosen]
    valid = [r for i, r in enumerate(records) if i in chosen]
    return train, valid


def _file_key(record: dict[str, Any]) -> str:
    return hashlib.sha1(f"holdout|{file_key(record['path'])}".encode()).hexdigest()


def distinct_items(dataset: Dataset) -> int:
    """Distinct training files behind ``dataset`` (its virtual epoch may repeat them)."""
    return int(getattr(dataset, "num_files", None) or len(dataset))


def plan_max_steps(dataset: Dataset, train: TrainSettings, num_processes: int) -> int:
    """``train.max_steps``, capped by ``train.max_epochs``; raises if the data is too small.

    With ``B = batch_size x processes x grad_accum`` samples per optimizer step and ``N``
    distinct files: refuses ``N < train.min_items`` and ``N < train.min_items_per_batch x B``;
    warns when ``N < B`` (every batch repeats files); caps the steps at
    ``ceil(max_epochs x N / B)`` (one epoch = every file seen once on average).
    """
    items = distinct_items(dataset)
    batch = train.batch_size * num_processes * train.grad_accum
    max_steps = train.max_steps
    min_items = train.min_items
    if items < min_items:
        raise ValueError(f"only {items} training files, fewer than train.min_items="
                         f"{min_items}: add recordings or lower train.min_items")
    per_batch = train.min_items_per_batch
    if items < per_batch * batch:
        raise ValueError(
            f"only {items} training files for an effective batch of {batch} "
            f"(train.min_items_per_batch={per_batch:g} needs {math.ceil(per_batch * batch)}): "
            "a model trained on so few files memorises them; add recordings, lower "
            "train.batch_size, or train LoRA adapters (configs/finetune/dit_lora.yaml)")
    if items < batch:
        logger.warning("%d training files for an effective batch of %d: every batch repeats "
                       "files, so watch the validation loss for over-fitting", items, batch)
    max_epochs = train.max_epochs
    if max_epochs:
        cap = max(1, math.ceil(max_epochs * items / batch))
        if cap < max_steps:
            logger.info("train.max_epochs=%g over %d files at batch %d: max_steps %d -> %d",
                        max_epochs, items, batch, max_steps, cap)
            max_steps = cap
    return max_steps

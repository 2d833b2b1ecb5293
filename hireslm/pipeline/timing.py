"""Wall time per restoration stage, honest on a GPU (CUDA is synchronised around a stage)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np


class StageTimes:
    """Seconds spent per stage name, added up over a pipeline's life."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.device: Any = None  # a torch.device once the generative stages are placed

    def timed(self, stage: str) -> _StageTimer:
        return _StageTimer(self, stage)

    def timed_blocks(self, stage: str, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` through, adding the time spent producing them to ``stage``."""
        while True:
            with self.timed(stage):
                block = next(blocks, None)
            if block is None:
                return
            yield block


class _StageTimer:
    def __init__(self, times: StageTimes, stage: str) -> None:
        self.times, self.stage = times, stage

    def __enter__(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.times.seconds[self.stage] += time.perf_counter() - self.start

    def _sync(self) -> None:
        device = self.times.device
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)

"""What a restoration gives back: the audio (whole, or as a stream of blocks) and the
account of what the input was, what was decided and on what evidence, and what was done. A
job writes the account as the file's report line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hireslm.pipeline.treatment import Treatment


@dataclass
class RestorationAccount:
    """What restoring one input did.

    ``analysis`` holds each channel's first-pass analysis, ``treatment`` what was kept,
    recovered and generated with the reasons, as the report writes it, and ``decision`` the
    ``Treatment`` itself (both None for digital silence), ``gain_db`` the
    loudness gain applied before the models and undone after them.
    """

    input_sample_rate: int
    channels: int
    duration_s: float
    output_frames: int
    gain_db: float
    seconds: float = 0.0
    silent: bool = False
    warnings: list[str] = field(default_factory=list)
    analysis: list[dict[str, Any]] = field(default_factory=list)
    treatment: dict[str, Any] | None = None
    decision: Treatment | None = None
    level_change_db: float | None = None  # output's mean power against the input's
    speech_change_db: float | None = None  # the same over the input's loudest speech frames

    @property
    def real_time_factor(self) -> float:
        return self.seconds / self.duration_s if self.duration_s > 0 else float("nan")


@dataclass
class RestoredAudio:
    """``audio`` ``(C, M)`` float32 at ``sample_rate`` (48 kHz), every sample inside (-1, 1),
    and the ``account`` of what was done."""

    audio: np.ndarray
    sample_rate: int
    account: RestorationAccount


class Restoration:
    """A restoration under way: iterate for the output's ``(C, n)`` blocks at
    ``sample_rate`` (they add up to ``account.output_frames``); ``account`` is complete once
    they are all read."""

    def __init__(self, blocks: Iterator[np.ndarray], account: RestorationAccount,
                 sample_rate: int) -> None:
        self.channels = account.channels
        self.sample_rate = sample_rate
        self._blocks = blocks
        self._account = account
        self._done = False

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._blocks
        self._done = True

    @property
    def account(self) -> RestorationAccount:
        if not self._done:
            raise RuntimeError("the account is complete once every block has been read")
        return self._account

"""The account of one restoration: what the input was, what was decided and on what
evidence, and what was done. A job writes it as the file's report line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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

"""A source read through the local repairs: what the pipeline restores from where the first
pass found clipped runs or dropouts."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hireslm.audio.source import AudioSource, SourceInfo
from hireslm.repair.clip_detect import ClipLevels
from hireslm.repair.stream import DEFAULT_DROPOUTS, LocalRepairer


class RepairedSource:
    """``source`` with its clipped runs restored (with ``clip_levels``) and, with
    ``dropouts``, its short gaps filled, at its own rate; ``repairer`` holds the runs
    repaired once the blocks have been read."""

    def __init__(self, source: AudioSource, clip_levels: ClipLevels | None,
                 dropouts: bool) -> None:
        self.source = source
        self.name = source.name
        self.clip_levels = clip_levels
        self.dropouts = dropouts
        self.repairer: LocalRepairer | None = None

    @property
    def info(self) -> SourceInfo:
        return self.source.info

    def warnings(self) -> tuple[str, ...]:
        return self.source.warnings()

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        info = self.info
        self.repairer = LocalRepairer(info.channels, info.sample_rate,
                                      clip_levels=self.clip_levels,
                                      dropouts=DEFAULT_DROPOUTS if self.dropouts else None)
        for block in self.source.blocks(block_frames):
            out = self.repairer.push(block)
            if out.shape[1]:
                yield out.astype(np.float32)
        out = self.repairer.finish()
        if out.shape[1]:
            yield out.astype(np.float32)

    def reasons(self) -> list[str]:
        """What was repaired, for the report (once the blocks have been read)."""
        if self.repairer is None:
            return []
        rate, reasons = self.info.sample_rate, []
        for runs, what, how in ((self.repairer.clipped, "clipped runs", "restored (A-SPADE "
                                 "declipping; every unclipped sample kept)"),
                                (self.repairer.dropouts, "dropouts", "filled (AR "
                                 "interpolation from both sides; the rest kept)")):
            count = len(runs.start)
            if count:
                ms = 1000.0 * float(np.sum(runs.stop - runs.start)) / rate
                reasons.append(f"{count} {what} ({ms:.0f} ms in all) {how}")
        return reasons

"""Local repair of a stream in blocks, with bounded memory and the whole-array result.

Both repairs are local: the output over a region depends only on the input within a fixed
radius of it (one frame for the declipper; the detection and fill context for dropouts). A
``_Stage`` buffers the stream, repairs a region once the input reaches ``radius`` past it,
and forgets what no later region can need, so memory is a region plus two radii whatever
the length, and the output equals ``declip`` / ``fill_dropouts`` on the whole array.

Clip levels come from the whole file (its extremes), so a stream is declipped only with
levels measured beforehand, e.g. by ``ClipLevelMeter`` in the analysis pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hireslm.repair.clip_detect import ClipLevels
from hireslm.repair.declip import DeclipSettings, declip_region
from hireslm.repair.dropouts import DropoutRepairSettings, fill_region
from hireslm.repair.runs import Runs

# (window (C, M), offset, start, stop, total) -> ((C, stop - start), runs in the region)
DEFAULT_DECLIP = DeclipSettings()
DEFAULT_DROPOUTS = DropoutRepairSettings()

RegionRepair = Callable[[np.ndarray, int, int, int, int], tuple[np.ndarray, Runs]]


class _Stage:
    """One local repair over a stream of ``(C, n)`` blocks."""

    def __init__(self, repair: RegionRepair, radius: int, region: int, channels: int) -> None:
        self.repair = repair
        self.radius = radius
        self.region = region
        self._buffer = np.zeros((channels, 0))
        self._offset = 0  # global index of the buffer's first sample
        self._done = 0  # samples output so far
        self._runs: list[Runs] = []

    @property
    def runs(self) -> Runs:
        return Runs.concat(self._runs)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add a block; return the output now final, ``(C, k)``, ``k >= 0``."""
        if self._buffer.shape[1] == 0:
            self._buffer = np.zeros((block.shape[0], 0), dtype=block.dtype)
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        end = self._offset + self._buffer.shape[1]
        out = []
        while self._done + self.region + self.radius <= end:
            out.append(self._step(self._done + self.region, end))
        return self._emit(out)

    def finish(self) -> np.ndarray:
        """The rest of the output, once the stream has ended."""
        end = self._offset + self._buffer.shape[1]
        out = []
        while self._done < end:
            out.append(self._step(min(self._done + self.region, end), end))
        return self._emit(out)

    def _step(self, stop: int, total: int) -> np.ndarray:
        start = self._done
        lo = max(start - self.radius, self._offset)
        hi = min(stop + self.radius, total)
        window = self._buffer[:, lo - self._offset:hi - self._offset]
        repaired, runs = self.repair(window, lo, start, stop, total)
        self._runs.append(runs)
        self._done = stop
        keep = max(self._done - self.radius, self._offset)  # no later region reaches back
        self._buffer = self._buffer[:, keep - self._offset:]
        self._offset = keep
        return repaired

    def _emit(self, parts: list[np.ndarray]) -> np.ndarray:
        dtype = self._buffer.dtype if np.issubdtype(self._buffer.dtype, np.floating) \
            else np.float64
        if not parts:
            return np.zeros((self._buffer.shape[0], 0), dtype=dtype)
        return np.concatenate(parts, axis=1).astype(dtype, copy=False)


class LocalRepairer:
    """Declip, then fill dropouts, over a stream: ``push((C, n))`` blocks, ``finish()``.

    Each call returns the samples that are final, in order; all calls together return
    exactly as many samples as were pushed. ``clipped`` and ``dropouts`` hold the runs
    repaired so far (global sample indices, for a report).

    Args:
        channels, sample_rate: the stream's.
        clip_levels: the file's clip levels (``ClipLevelMeter``); ``None`` skips declipping.
        dropouts: ``None`` skips the dropout repair.
    """

    def __init__(
        self, channels: int, sample_rate: int, *, clip_levels: ClipLevels | None,
        declip: DeclipSettings = DEFAULT_DECLIP,
        dropouts: DropoutRepairSettings | None = DEFAULT_DROPOUTS,
    ) -> None:
        self.channels = channels
        self.stages: list[tuple[str, _Stage]] = []
        if clip_levels is not None and clip_levels.any:
            frame = declip.frame(sample_rate)

            def clip_region(window: np.ndarray, offset: int, start: int, stop: int,
                            total: int) -> tuple[np.ndarray, Runs]:
                out, runs, _ = declip_region(window, offset, start, stop, total, clip_levels,
                                             sample_rate, declip)
                return out, runs

            self.stages.append(("clipped", _Stage(
                clip_region, frame, declip.block_frames * (frame // 4), channels)))
        if dropouts is not None:
            def gap_region(window: np.ndarray, offset: int, start: int, stop: int,
                           total: int) -> tuple[np.ndarray, Runs]:
                return fill_region(window, offset, start, stop, sample_rate, dropouts)

            region = max(int(dropouts.region_seconds * sample_rate), 1)
            self.stages.append(("dropouts", _Stage(
                gap_region, dropouts.radius(sample_rate), region, channels)))

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add a ``(C, n)`` block; return the repaired samples now final."""
        for _, stage in self.stages:
            block = stage.push(block)
        return block

    def finish(self) -> np.ndarray:
        """The remaining repaired samples."""
        out = None
        for _, stage in self.stages:
            if out is not None:
                out = np.concatenate([stage.push(out), stage.finish()], axis=1)
            else:
                out = stage.finish()
        return np.zeros((self.channels, 0)) if out is None else out

    def _runs(self, name: str) -> Runs:
        return next((s.runs for n, s in self.stages if n == name), Runs())

    @property
    def clipped(self) -> Runs:
        return self._runs("clipped")

    @property
    def dropouts(self) -> Runs:
        return self._runs("dropouts")

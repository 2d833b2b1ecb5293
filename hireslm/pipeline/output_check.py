"""A restoration's output is checked before it is written: finite, and at a sane level.

A damaged release (a NaN weight) or a numeric failure must fail the file with a reason, not
write NaN (or, through integer conversion, full-scale -1.0) under an ``ok`` status. Each
output block is checked as it streams, before it reaches the file, and the whole output's
level is compared with the input's at the end, before the file is renamed into place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

# The output's mean power may fall this far below the input's (denoising a file that is all
# noise lowers it by tens of dB) or rise this far above it (the loudness gain is undone, so a
# sound restoration lands within a few dB; a broken model's noise lands far above).
MIN_LEVEL_DB = -60.0
MAX_LEVEL_DB = 12.0
# The speech frames whose level change is reported: 20 ms frames, the input's loudest fifth
# (what a listener hears as the voice, whatever the pauses hold).
FRAME_SECONDS = 0.02
SPEECH_SHARE = 0.2


class BadOutputError(RuntimeError):
    """The models produced output that cannot be a restoration of the input."""


class OutputCheck:
    """Watches a file's input and output streams; raises ``BadOutputError`` on bad output."""

    def __init__(self, sample_rate: int = 48000) -> None:
        self.input_energy = 0.0
        self.output_energy = 0.0
        self.input_samples = 0
        self.output_samples = 0
        self._input_frames = _FrameEnergies(round(FRAME_SECONDS * sample_rate))
        self._output_frames = _FrameEnergies(round(FRAME_SECONDS * sample_rate))

    def watch_input(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``(C, n)`` input blocks through, measuring their power."""
        for block in blocks:
            self.input_energy += float(np.square(block, dtype=np.float64).sum())
            self.input_samples += block.size
            self._input_frames.add(block)
            yield block

    def watch_output(self, blocks: Iterable[np.ndarray],
                     sample_rate: int) -> Iterator[np.ndarray]:
        """Pass ``(C, n)`` output blocks through; raise at the first non-finite one."""
        for block in blocks:
            if not np.isfinite(block).all():
                at = self.output_samples / max(block.shape[0], 1) / sample_rate
                raise BadOutputError(
                    f"the models produced NaN or infinite samples (from {at:.1f} s): the "
                    "release may be damaged; nothing was written")
            self.output_energy += float(np.square(block, dtype=np.float64).sum())
            self.output_samples += block.size
            self._output_frames.add(block)
            yield block

    def level_db(self) -> float:
        """The output's mean power relative to the input's, in dB."""
        mean_in = self.input_energy / max(self.input_samples, 1)
        mean_out = self.output_energy / max(self.output_samples, 1)
        if mean_in <= 0.0:
            return 0.0 if mean_out <= 0.0 else math.inf
        return -math.inf if mean_out <= 0.0 else 10.0 * math.log10(mean_out / mean_in)

    def speech_change_db(self) -> float | None:
        """The output's power over the input's loudest ``SPEECH_SHARE`` of 20 ms frames,
        relative to the input's there, in dB (None for input without frames or signal):
        how much of the voice itself the restoration kept."""
        before, after = self._input_frames.energies(), self._output_frames.energies()
        n = min(len(before), len(after))
        if n == 0:
            return None
        before, after = before[:n], after[:n]
        loudest = np.argsort(before)[-max(1, int(round(SPEECH_SHARE * n))):]
        signal = float(before[loudest].sum())
        if signal <= 0.0:
            return None
        return 10.0 * math.log10(max(float(after[loudest].sum()), 1e-30) / signal)

    def finish(self) -> None:
        """Raise unless the output's level is within the sane range of the input's."""
        level = self.level_db()
        if not MIN_LEVEL_DB <= level <= MAX_LEVEL_DB:
            raise BadOutputError(
                f"the output is {level:+.1f} dB from the input's level (sane: "
                f"{MIN_LEVEL_DB:+.0f} to {MAX_LEVEL_DB:+.0f} dB): the models failed on this "
                "file or the release is damaged; nothing was written")


class _FrameEnergies:
    """Energy (summed over channels) per frame of ``frame`` samples over a stream of
    ``(C, n)`` blocks of any sizes; 50 values per second of audio."""

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self.done: list[np.ndarray] = []
        self.partial = 0.0
        self.filled = 0

    def add(self, block: np.ndarray) -> None:
        power = np.square(block, dtype=np.float64).sum(axis=0)  # (n,)
        head = min(self.frame - self.filled, power.size)
        self.partial += float(power[:head].sum())
        self.filled += head
        rest = power[head:]
        if self.filled == self.frame:
            whole = rest.size // self.frame
            frames = rest[: whole * self.frame].reshape(whole, self.frame).sum(axis=1)
            self.done.append(np.concatenate([[self.partial], frames]))
            tail = rest[whole * self.frame:]
            self.partial, self.filled = float(tail.sum()), tail.size

    def energies(self) -> np.ndarray:
        parts = [*self.done, np.array([self.partial])] if self.filled else self.done
        return np.concatenate(parts) if parts else np.zeros(0)

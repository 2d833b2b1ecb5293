"""The recovery gate: the recovered signal only where recovery removed noise, not speech.

A denoiser run over clean speech still changes it (it thins the voice, takes the room tone,
and on a short dense clip or band-limited speech it removes speech itself), and the
analysis' noise estimate cannot tell bursty noise in a short clip from pauses. So the
recovery runs over the whole stream and a *judge* looks, per segment and channel, at the
input and what recovery made of it, and says which to use, with its evidence
(``hireslm.pipeline.evidence``). Decisions change with a short crossfade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hireslm.recovery import WaveRecovery

# Long enough that a segment holds speech, not only a pause (where recovery takes the room
# tone and little else, which would read as "much removed"); the last segment takes the
# remainder, so a short clip is judged whole.
SEGMENT_SECONDS = 8.0
RAMP_SECONDS = 0.05


class Verdict(Protocol):
    """A judge's word on one channel of one segment: use the recovered signal or not, and
    the evidence (JSON-ready) it rests on."""

    use_recovered: bool

    def to_dict(self) -> dict[str, Any]: ...


# (dry (C, n), recovered (C, n)) -> one verdict per channel
Judge = Callable[[np.ndarray, np.ndarray], Sequence[Verdict]]


@dataclass
class GateStats:
    """What the gate did to one stream, per channel: samples seen and samples recovered,
    and per segment ``(start, length, verdicts)`` in 48 kHz samples."""

    samples: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    segments: list[tuple[int, int, Sequence[Verdict]]] = field(default_factory=list)

    def recovered_share(self) -> list[float]:
        return [r / s if s else 0.0 for r, s in zip(self.recovered, self.samples, strict=True)]


def removal_ratio_db(dry: np.ndarray, wet: np.ndarray) -> np.ndarray:
    """Per channel, ``10 log10(E[dry^2] / E[(dry - wet)^2])``: how far the input lies above
    what recovery removed from it. ``(C, n)`` each -> ``(C,)``; ``inf`` where nothing was
    removed."""
    signal = np.sum(dry.astype(np.float64) ** 2, axis=-1)
    removed = np.sum((dry.astype(np.float64) - wet) ** 2, axis=-1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.maximum(signal, 1e-30) / removed)


@dataclass(frozen=True)
class RatioVerdict:
    """The plain removal-ratio test: recovered where the input lies less than
    ``threshold_db`` above what recovery removed."""

    ratio_db: float
    threshold_db: float

    @property
    def use_recovered(self) -> bool:
        return self.ratio_db < self.threshold_db

    def to_dict(self) -> dict[str, Any]:
        return {"removal_ratio_db": round(self.ratio_db, 2), "threshold_db": self.threshold_db}


def ratio_judge(threshold_db: float) -> Judge:
    """A judge by ``removal_ratio_db`` alone (it cannot tell removed speech from noise)."""
    def judge(dry: np.ndarray, wet: np.ndarray) -> list[RatioVerdict]:
        return [RatioVerdict(float(r), threshold_db) for r in removal_ratio_db(dry, wet)]
    return judge


def always_recovered(dry: np.ndarray, wet: np.ndarray) -> list[Verdict]:
    """The judge of ``--denoise always``: the recovered signal everywhere."""
    return [_Always() for _ in range(dry.shape[0])]


class _Always:
    use_recovered = True

    def to_dict(self) -> dict[str, Any]:
        return {"forced": True}


def gated_recovery(
    recovery: WaveRecovery,
    blocks: Iterable[np.ndarray],
    channels: int,
    judge: Judge,
    stats: GateStats | None = None,
    sample_rate: int = 48000,
) -> Iterator[np.ndarray]:
    """Run ``recovery`` over ``(C, n)`` blocks and keep, per segment and channel, the
    recovered signal where ``judge`` says so and the input elsewhere. Yields ``(C, m)``
    blocks adding up to exactly the input's length; memory holds the recovery's latency
    plus two segments."""
    stats = stats if stats is not None else GateStats()
    stats.samples, stats.recovered, stats.segments = [0] * channels, [0] * channels, []
    pending: list[np.ndarray] = []  # input blocks handed to recovery, awaiting their output

    def tee() -> Iterator[np.ndarray]:
        for block in blocks:
            pending.append(block)
            yield block

    segment = round(SEGMENT_SECONDS * sample_rate)
    ramp = round(RAMP_SECONDS * sample_rate)
    previous: np.ndarray | None = None  # 1 where the last segment used the recovered signal
    dry_buffer = np.zeros((channels, 0), dtype=np.float32)
    wet_buffer = np.zeros((channels, 0), dtype=np.float32)
    for wet in _then_end(recovery.stream(tee(), channels)):
        if wet is not None:
            wet_buffer = np.concatenate([wet_buffer, wet], axis=1)
            while dry_buffer.shape[1] < wet_buffer.shape[1]:
                dry_buffer = np.concatenate([dry_buffer, pending.pop(0)], axis=1)
        final = wet is None
        while wet_buffer.shape[1] >= 2 * segment or (final and wet_buffer.shape[1]):
            n = wet_buffer.shape[1] if final and wet_buffer.shape[1] < 2 * segment else segment
            dry, recovered = dry_buffer[:, :n], wet_buffer[:, :n]
            verdicts = judge(dry, recovered)
            stats.segments.append((sum(stats.samples) // channels, n, verdicts))
            use = np.array([v.use_recovered for v in verdicts], dtype=np.float64)
            weight = np.repeat(use[:, None], n, axis=1)
            if previous is not None:
                fade = min(ramp, n)
                weight[:, :fade] = previous[:, None] + (use - previous)[:, None] * np.linspace(
                    0.0, 1.0, fade, endpoint=False)
            for c in range(channels):
                stats.samples[c] += n
                stats.recovered[c] += int(round(weight[c].sum()))
            yield (weight * recovered + (1.0 - weight) * dry).astype(np.float32)
            previous = use
            dry_buffer, wet_buffer = dry_buffer[:, n:], wet_buffer[:, n:]


def _then_end(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    """``blocks``, then one ``None`` to mark the end."""
    yield from blocks
    yield None

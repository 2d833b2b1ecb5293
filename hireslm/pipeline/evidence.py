"""Evidence of what recovery removed, and the decision taken from it AFTER recovery ran.

A denoiser run over clean speech still changes it; run over noisy speech it removes noise.
What it removed tells the two apart, without a threshold on the input's SNR (which a short
dense clip, with no pause to show its floor, cannot give):

- **noise removal** leaves a residual ``r = dry - wet`` that is independent of the speech
  envelope: its 20 ms frame energies do not follow the input's, it is as strong in the
  input's quiet frames as in its loud ones (stationary noise, hum), and the loud (speech)
  frames lose only what that floor explains;
- **damage** leaves a residual that follows the speech: its frame energy correlates with the
  input's, it sits in the loud (voiced) frames, and the loud frames lose more than any floor
  explains (a destroyed clip loses tens of dB in every frame).

``measure_evidence(dry, wet)`` measures this per channel (``Evidence``, a frozen dataclass
with ``to_dict()`` for the report) and ``decide(evidence)`` turns it into a ``Verdict``:
``recovered`` (use wet), ``input`` (keep dry) or ``unsure`` (keep dry). ``verdicts`` does
both, ``segment_bounds`` cuts a stream into the decision's segments (~8 s, the last one
taking the remainder, so a clip shorter than 16 s is judged whole), and
``decide_segments`` gives ``(start, end, verdicts)`` for a whole ``(C, n)`` pair.

The thresholds (``Thresholds``) were measured on the TUNE sources of
``benchmarks/make_devset.py`` only (docs in ``benchmarks/eval_decisions.py`` and the
constants below); the rule for a segment with no measurable floor is not tuned on any
corpus: there, a low envelope correlation alone proves nothing (a dense clip has little
envelope to follow), so the residual must itself be shown to be noise-like, i.e. as loud in
the quiet frames as in the loud ones, and the loud frames may lose no more than the removed
floor explains.

NumPy only: the jobs level may import this without torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 48000
FRAME_SECONDS = 0.02
SEGMENT_SECONDS = 8.0  # as hireslm.pipeline.gate.SEGMENT_SECONDS
# A frame whose mean square is below this (-100 dBFS) is digital silence: never evidence.
SILENT_POWER = 1e-10
# Share of active frames that make the "loud" and the "quiet" end of a segment.
EXTREME_SHARE = 0.2
# Fewer active frames than this (0.2 s) is no evidence at all: keep the input.
MIN_FRAMES = 10
# Hum: bins within this of a multiple of 50 or 60 Hz, up to HUM_MAX_HZ.
HUM_TOLERANCE_HZ = 2.0
HUM_MAX_HZ = 1000.0
# Bands of the residual's spread: log-spaced edges from 100 Hz to 16 kHz.
SPREAD_BANDS = 12
TINY = 1e-20

RECOVERED = "recovered"
INPUT = "input"
UNSURE = "unsure"


@dataclass(frozen=True)
class Evidence:
    """What recovery removed from one channel of one segment (all from 20 ms frames).

    - ``removed_db``: input power over removed power, whole segment (the old gate's ratio).
    - ``envelope_corr``: Pearson correlation of the residual's log frame energies with the
      input's, over active frames (~1: the residual follows the speech; <= 0: it does not).
    - ``loud_loss_db`` / ``quiet_loss_db``: input over recovered power in the input's loudest
      / quietest 20 % of active frames.
    - ``input_range_db``: the input's loudest 20 % over its quietest 20 % (its floor's depth).
    - ``residual_range_db``: the residual's power in those same loud frames over its power in
      those quiet frames (~0: as strong in the pauses as in the speech, i.e. stationary).
    - ``residual_follow``: ``residual_range_db / input_range_db`` (0: independent of the
      envelope, 1: proportional to the speech).
    - ``excess_loud_loss_db``: how much more the loud frames lost than the residual's quiet
      level explains (``10 log10((P_loud - R_quiet) / W_loud)``; 0: all they lost is floor).
    - ``spectral_corr``: correlation of the residual's time-frequency pattern (12 log bands,
      each band's and each frame's mean removed) with the input's: damage follows the
      speech's spectrum frame by frame even where a dense clip leaves no envelope to follow.
    - ``residual_spread_db``: median over 12 bands of the std over frames of the residual's
      log band energy (noise ~1-5 dB, speech-like 8-15 dB).
    - ``hum_share``: share of the residual's energy below 1 kHz at multiples of 50 or 60 Hz.
    - ``floor_measurable``: the input has a floor to compare with (``input_range_db`` at
      least ``Thresholds.floor_range_db`` and at least ``Thresholds.floor_seconds`` long).
    """

    duration_s: float
    frames: int
    removed_db: float
    envelope_corr: float
    loud_loss_db: float
    quiet_loss_db: float
    input_range_db: float
    residual_range_db: float
    residual_follow: float
    excess_loud_loss_db: float
    spectral_corr: float
    residual_spread_db: float
    hum_share: float
    floor_measurable: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 3) if math.isfinite(value) else None
            out[key] = value
        return out


@dataclass(frozen=True)
class Thresholds:
    """Where the verdict turns. Measured on the tune sources of the development set
    (benchmarks/eval_decisions.py prints the measurement with ``--measure``)."""

    # Noise-like residual: correlation at most this ...
    noise_corr: float = 0.45
    # ... and following the envelope at most this much.
    noise_follow: float = 0.5
    # Speech survived: the loud frames lost at most this beyond the floor.
    excess_loss_db: float = 2.0
    # Recovery did something worth taking: input over removed below this.
    worth_db: float = 25.0
    # Floor measurable: input range at least this, and the segment at least this long.
    floor_range_db: float = 12.0
    floor_seconds: float = 2.0
    # Without a measurable floor (corpus-free): the residual is stationary (as loud in the
    # quiet frames as in the loud ones within this) and the loud frames lost only floor.
    stationary_range_db: float = 3.0
    no_floor_excess_db: float = 1.0


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Verdict:
    """The decision for one channel of one segment, with its reason and evidence."""

    decision: str  # RECOVERED, INPUT or UNSURE
    reason: str
    evidence: Evidence | None = None
    thresholds: Thresholds = field(default=DEFAULT_THRESHOLDS, repr=False)

    @property
    def use_recovered(self) -> bool:
        return self.decision == RECOVERED

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "use_recovered": self.use_recovered,
                "reason": self.reason,
                "evidence": None if self.evidence is None else self.evidence.to_dict()}


def _frames(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean square per whole frame of ``(n,)`` float64 -> ``(n // frame,)``."""
    count = x.shape[-1] // frame
    return np.mean(x[: count * frame].reshape(count, frame) ** 2, axis=-1)


def _db(p: float | np.ndarray) -> float | np.ndarray:
    return 10.0 * np.log10(np.maximum(p, TINY))


def _band_db(x: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
    """Log energy (dB) of ``(n,)`` in 20 ms Hann frames and ``SPREAD_BANDS`` log-spaced bands
    from 100 Hz to 16 kHz (or Nyquist): ``(T, B)``."""
    count = x.size // frame
    spec = np.abs(np.fft.rfft(x[: count * frame].reshape(count, frame) * np.hanning(frame),
                              axis=-1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    edges = np.geomspace(100.0, min(16000.0, sample_rate / 2), SPREAD_BANDS + 1)
    bands = [spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=-1)
             for lo, hi in zip(edges[:-1], edges[1:], strict=False)]
    return _db(np.stack(bands, axis=-1))


def _spectral(dry: np.ndarray, residual: np.ndarray, active: np.ndarray, sample_rate: int,
              frame: int) -> tuple[float, float]:
    """(spectro-temporal correlation of residual and input, residual spread).

    Both from log band energies over the active frames, in the bands where the input has
    energy (within 60 dB of its strongest band). The correlation is over the double-centred
    patterns (each band's mean over time and each frame's mean over bands removed): does the
    residual's time-frequency pattern follow the input's, whatever the overall level does?
    The spread is the median over bands of the std over frames of the residual's log energy.
    """
    l_dry = _band_db(dry, sample_rate, frame)[active]
    l_res = _band_db(residual, sample_rate, frame)[active]
    level = np.mean(10 ** (l_dry / 10), axis=0)
    bands = _db(level) > _db(level.max()) - 60.0
    if l_dry.shape[0] < 2 or bands.sum() < 2:
        return math.nan, math.nan
    l_dry, l_res = l_dry[:, bands], l_res[:, bands]
    l_res = np.maximum(l_res, l_res.max() - 100.0)
    spread = float(np.median(np.std(l_res, axis=0)))

    def centred(m: np.ndarray) -> np.ndarray:
        m = m - m.mean(axis=0, keepdims=True)
        return m - m.mean(axis=1, keepdims=True)

    a, b = centred(l_dry).ravel(), centred(l_res).ravel()
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return (float(np.dot(a, b)) / denom if denom > 0 else 0.0), spread


def _hum_share(residual: np.ndarray, sample_rate: int) -> float:
    """Share of the residual's 25-1000 Hz energy within 2 Hz of multiples of 50 or 60 Hz
    (the larger), from 1 s Hann windows (1 Hz bins)."""
    n_fft = min(residual.size, sample_rate)
    hop = max(1, n_fft // 2)
    window = np.hanning(n_fft)
    power = sum(np.abs(np.fft.rfft(residual[s: s + n_fft] * window)) ** 2
                for s in range(0, max(1, residual.size - n_fft + 1), hop))
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    low = (f >= 25.0) & (f <= HUM_MAX_HZ)
    total = float(np.sum(power[low]))
    if total <= TINY:
        return 0.0
    share = 0.0
    for f0 in (50.0, 60.0):
        near = np.abs(f - f0 * np.round(f / f0)) <= HUM_TOLERANCE_HZ
        share = max(share, float(np.sum(power[low & near])) / total)
    return share


def measure_channel(dry: np.ndarray, wet: np.ndarray, sample_rate: int = SAMPLE_RATE,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Evidence | None:
    """``Evidence`` for one channel, ``(n,)`` each; ``None`` when the segment has fewer
    than ``MIN_FRAMES`` active 20 ms frames (nothing to measure)."""
    frame = round(FRAME_SECONDS * sample_rate)
    d = np.asarray(dry, dtype=np.float64)
    w = np.asarray(wet, dtype=np.float64)
    r = d - w
    p_dry, p_wet, p_res = _frames(d, frame), _frames(w, frame), _frames(r, frame)
    active = p_dry > SILENT_POWER
    if int(active.sum()) < MIN_FRAMES:
        return None
    p_dry, p_wet, p_res = p_dry[active], p_wet[active], p_res[active]
    l_dry, l_res = _db(p_dry), _db(p_res)
    if np.std(l_dry) > 0 and np.std(l_res) > 0:
        corr = float(np.corrcoef(l_dry, l_res)[0, 1])
    else:
        corr = 0.0
    order = np.argsort(l_dry, kind="stable")
    k = max(1, int(round(EXTREME_SHARE * order.size)))
    quiet, loud = order[:k], order[-k:]
    dry_loud, dry_quiet = float(np.mean(p_dry[loud])), float(np.mean(p_dry[quiet]))
    wet_loud, wet_quiet = float(np.mean(p_wet[loud])), float(np.mean(p_wet[quiet]))
    res_loud, res_quiet = float(np.mean(p_res[loud])), float(np.mean(p_res[quiet]))
    input_range = float(_db(dry_loud) - _db(dry_quiet))
    residual_range = float(_db(res_loud) - _db(res_quiet))
    follow = residual_range / input_range if input_range > 1.0 else math.nan
    explained = max(dry_loud - res_quiet, dry_loud * 1e-6)
    excess = float(_db(explained) - _db(wet_loud))
    removed = float(_db(np.sum(p_dry)) - _db(np.sum(p_res)))
    spectral_corr, spread = _spectral(d, r, active, sample_rate, frame)
    hum = _hum_share(r, sample_rate)
    duration = d.size / sample_rate
    return Evidence(
        duration_s=duration, frames=int(active.sum()), removed_db=removed,
        envelope_corr=corr, loud_loss_db=float(_db(dry_loud) - _db(wet_loud)),
        quiet_loss_db=float(_db(dry_quiet) - _db(wet_quiet)), input_range_db=input_range,
        residual_range_db=residual_range, residual_follow=follow,
        excess_loud_loss_db=excess, spectral_corr=spectral_corr, residual_spread_db=spread,
        hum_share=hum,
        floor_measurable=bool(input_range >= thresholds.floor_range_db
                              and duration >= thresholds.floor_seconds),
    )


def measure_evidence(dry: np.ndarray, wet: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Evidence | None]:
    """Per channel ``Evidence`` of ``(C, n)`` (or ``(n,)``) ``dry`` and ``wet``."""
    dry, wet = np.atleast_2d(dry), np.atleast_2d(wet)
    if dry.shape != wet.shape:
        raise ValueError(f"dry and wet differ in shape: {dry.shape} vs {wet.shape}")
    return [measure_channel(dry[c], wet[c], sample_rate, thresholds)
            for c in range(dry.shape[0])]


def decide(evidence: Evidence | None, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """The verdict for one channel of one segment from its ``Evidence``."""
    t = thresholds
    if evidence is None:
        return Verdict(UNSURE, "too little signal to measure: kept the input", None, t)
    e = evidence
    if e.removed_db >= t.worth_db:
        return Verdict(INPUT, f"recovery removed little (input {e.removed_db:.1f} dB above "
                       "it): kept the input", e, t)
    if e.excess_loud_loss_db > t.excess_loss_db:
        return Verdict(INPUT, f"speech removed: the loudest frames lost "
                       f"{e.loud_loss_db:.1f} dB, {e.excess_loud_loss_db:.1f} dB more than "
                       "the removed floor explains: kept the input", e, t)
    if e.floor_measurable:
        follow = e.residual_follow if math.isfinite(e.residual_follow) else 1.0
        if e.envelope_corr <= t.noise_corr and follow <= t.noise_follow:
            return Verdict(RECOVERED, f"noise removed: the residual is independent of the "
                           f"speech (envelope correlation {e.envelope_corr:.2f}, follows "
                           f"{follow:.2f} of the input's range): recovered", e, t)
        return Verdict(INPUT, f"the removed part follows the speech (envelope correlation "
                       f"{e.envelope_corr:.2f}, follows {follow:.2f} of the input's range): "
                       "kept the input", e, t)
    # No measurable floor (a dense or short clip): only a plainly noise-like residual counts.
    if (abs(e.residual_range_db) <= t.stationary_range_db
            and e.excess_loud_loss_db <= t.no_floor_excess_db):
        return Verdict(RECOVERED, f"no floor measurable, but the removed part is stationary "
                       f"(as loud in the quietest frames as in the loudest, within "
                       f"{abs(e.residual_range_db):.1f} dB) and the speech kept its level: "
                       "recovered", e, t)
    return Verdict(UNSURE, f"no floor measurable (input range {e.input_range_db:.1f} dB, "
                   f"{e.duration_s:.1f} s) and the removed part is not plainly noise: kept "
                   "the input", e, t)


def verdicts(dry: np.ndarray, wet: np.ndarray, sample_rate: int = SAMPLE_RATE,
             thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Verdict]:
    """Per channel ``Verdict`` for one segment of ``(C, n)`` ``dry`` and ``wet``."""
    return [decide(e, thresholds) for e in measure_evidence(dry, wet, sample_rate, thresholds)]


def segment_bounds(n: int, sample_rate: int = SAMPLE_RATE,
                   segment_seconds: float = SEGMENT_SECONDS) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``n`` samples in segments of ``segment_seconds``, the
    last one taking the remainder (between 1 and 2 segments long), as the gate cuts them: a
    stream shorter than two segments is one segment."""
    segment = max(1, round(segment_seconds * sample_rate))
    bounds, start = [], 0
    while n - start >= 2 * segment:
        bounds.append((start, start + segment))
        start += segment
    if n > start or not bounds:
        bounds.append((start, n))
    return bounds


def decide_segments(dry: np.ndarray, wet: np.ndarray, sample_rate: int = SAMPLE_RATE,
                    thresholds: Thresholds = DEFAULT_THRESHOLDS,
                    segment_seconds: float = SEGMENT_SECONDS
                    ) -> list[tuple[int, int, list[Verdict]]]:
    """``(start, end, per-channel verdicts)`` for each segment of a whole ``(C, n)`` pair."""
    dry, wet = np.atleast_2d(dry), np.atleast_2d(wet)
    return [(s, e, verdicts(dry[:, s:e], wet[:, s:e], sample_rate, thresholds))
            for s, e in segment_bounds(dry.shape[1], sample_rate, segment_seconds)]


def apply_verdicts(dry: np.ndarray, wet: np.ndarray,
                   decisions: list[tuple[int, int, list[Verdict]]],
                   sample_rate: int = SAMPLE_RATE, ramp_seconds: float = 0.05) -> np.ndarray:
    """The output: ``wet`` where a segment's channel verdict says recovered, ``dry``
    elsewhere, with a ``ramp_seconds`` crossfade where the choice changes (as the gate)."""
    dry, wet = np.atleast_2d(dry), np.atleast_2d(wet)
    weight = np.zeros(dry.shape, dtype=np.float64)
    ramp = max(1, round(ramp_seconds * sample_rate))
    previous = None
    for start, end, per_channel in decisions:
        use = np.array([v.use_recovered for v in per_channel], dtype=np.float64)
        weight[:, start:end] = use[:, None]
        if previous is not None:
            fade = min(ramp, end - start)
            weight[:, start:start + fade] = previous[:, None] + (use - previous)[:, None] * \
                np.linspace(0.0, 1.0, fade, endpoint=False)
        previous = use
    return (weight * wet + (1.0 - weight) * dry).astype(np.float32)

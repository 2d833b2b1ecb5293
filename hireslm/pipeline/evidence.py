"""Evidence of what recovery removed, and the decision taken from it AFTER recovery ran.

A denoiser run over clean speech still changes it; run over noisy speech it removes noise.
What it removed tells the two apart, without a threshold on the input's SNR (which a short
dense clip, with no pause to show its floor, cannot give). With ``r = dry - wet``:

- **noise removal** leaves a residual independent of the speech: band by band, its level
  does not rise and fall with the recovered signal's (``band_corr`` <= ~0.3; independence
  gives 0), or it is mains hum (``hum_share``), and the loud (speech) frames lose only what
  the removed floor explains (``excess_loud_loss_db`` ~0);
- **damage** leaves a residual that follows the speech: it rises and falls with what was
  kept (``band_corr`` 0.4-1 on clean, band-limited, coded and dense speech), it is
  proportional to the input's envelope (``residual_follow`` ~1), or the loud frames lose far
  more than any floor explains (a destroyed clip loses tens of dB in every frame).

``measure_evidence(dry, wet)`` measures this per channel (``Evidence``, a frozen dataclass
with ``to_dict()`` for the report), ``decide(evidence)`` turns it into a ``Verdict``:
``recovered`` (use wet), ``input`` (keep dry) or ``unsure`` (keep dry); ``verdicts`` does
both for one segment. ``segment_bounds`` cuts a stream as the gate does (8 s segments, the
last one taking the remainder, so a clip under 16 s is judged whole), ``decide_segments``
gives ``(start, end, verdicts)`` for a whole ``(C, n)`` pair and ``apply_verdicts`` builds
the output from them.

The thresholds (``Thresholds``) were measured on the TUNE sources of
``benchmarks/make_devset.py`` only (``benchmarks/eval_decisions.py --measure`` prints that
measurement; the held-out sources are only reported). A short clip must be clearer than a
long one: the band-correlation limit drops by one standard error, ``1 / sqrt(frames)``. Where
no floor is measurable at all (dense speech, no pause: the input's loudest and quietest
frames within 12 dB) the rule is not tuned on any corpus: a low SNR reading proves nothing
there, so only a plainly noise-like residual is recovered: no positive dependence on the
recovered speech at all (correlation <= 0) or mostly hum, with the loud frames keeping at
least half their energy; anything else is ``unsure`` and keeps the input.

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
# Recovered and residual band levels are floored this far below their maximum.
CLAMP_DB = 60.0

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
    - ``band_corr``: median over 12 log bands of the correlation over time of the residual's
      log band energy with the RECOVERED signal's: does what was removed rise and fall with
      what was kept? Damage does (0.4-1 on clean speech); removed noise does not (<= 0.3):
      its null value, 0, needs no corpus, and it needs no pause (a dense clip's bands still
      move with its syllables).
    - ``residual_spread_db``: median over 12 bands of the std over frames of the residual's
      log band energy (noise ~1-5 dB, speech-like 8-15 dB).
    - ``hum_share``: share of the residual's energy below 1 kHz at multiples of 50 or 60 Hz.
    - ``floor_measurable``: the input has a floor to compare with (``input_range_db`` at
      least ``Thresholds.floor_range_db``).
    - ``noise_corr_limit``: the band correlation below which this segment's residual reads
      as noise: ``Thresholds.noise_corr`` less one standard error of a correlation over
      ``frames`` frames (``1 / sqrt(frames)``), so a short clip must be clearer.
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
    band_corr: float
    residual_spread_db: float
    hum_share: float
    floor_measurable: bool
    noise_corr_limit: float

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 3) if math.isfinite(value) else None
            out[key] = value
        return out


@dataclass(frozen=True)
class Thresholds:
    """Where the verdict turns. Measured on the TUNE sources of the development set only
    (``benchmarks/eval_decisions.py --measure`` prints every tune segment's evidence and
    whether DeepFilterNet3 beat its input there); the numbers in the comments are those
    tune measurements."""

    # Noise-like: the residual's band levels correlate with the recovered speech's at most
    # this, less one standard error (1/sqrt(frames): 0.05 for 8 s, 0.14 for 1 s). Tune:
    # white/pink/low-pass+noise+MP3 segments -0.23..0.27; clean, band-limited, coded and
    # dense segments 0.40..0.97.
    noise_corr: float = 0.35
    # Hum: at least this share of the residual's 25-1000 Hz energy at multiples of 50/60 Hz.
    # Tune: hum files 0.55..0.97, every other segment <= 0.27.
    hum_share: float = 0.4
    # Speech survived: the loud frames lost at most this beyond what the removed floor
    # explains. Tune: clean speech <= 1.95 dB except where DFN3 damaged it (clipped,
    # band-limited and acted voices 2.9..10 dB, rooms 2.3..10 dB); noise it helped on
    # <= 2.1 dB, a few at 2.9..13 (given up: kept as input).
    excess_loss_db: float = 2.5
    # Not proportional to the input: residual range over input range at most this. Tune:
    # the damaged band-limited/babble segments whose band correlation is low read 0.88..1.05;
    # removed noise, ambience and music 0.0..0.69.
    max_follow: float = 0.8
    # Nothing worth deciding: the input lies at least this far above the removed part
    # (tune: clean speech 20-33 dB; every noisy segment below 24 dB).
    worth_db: float = 30.0
    # Floor measurable: the input's loudest 20 % of frames at least this far above its
    # quietest 20 % (tune: clean phrases with pauses 15-80 dB, dense clips 6.8-16.6 dB,
    # noisy input 9-29 dB: its noise fills the pauses).
    floor_range_db: float = 12.0
    # Without a measurable floor (not tuned on any corpus): the residual must be plainly
    # noise: no positive dependence on the recovered speech at all (correlation <= 0, the
    # value independence gives) or mostly mains hum (more than half), and the loud frames
    # must keep at least half their energy beyond the floor (3 dB).
    no_floor_corr: float = 0.0
    no_floor_hum_share: float = 0.5
    no_floor_excess_db: float = 3.0


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
             for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return _db(np.stack(bands, axis=-1))


def _clamp(levels: np.ndarray, depth_db: float = CLAMP_DB) -> np.ndarray:
    return np.maximum(levels, levels.max() - depth_db)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / denom if denom > 0 else 0.0


def _band_measures(dry: np.ndarray, wet: np.ndarray, residual: np.ndarray, active: np.ndarray,
                   sample_rate: int, frame: int) -> tuple[float, float]:
    """(band correlation of the residual with the recovered signal, residual spread).

    From log band energies over the active frames, in the bands where the input has energy
    (within 60 dB of its strongest band); the recovered and residual levels are floored
    ``CLAMP_DB`` below their maxima (a denoiser zeroes pauses). The correlation is, per
    band, the Pearson correlation over time of the residual's and the recovered signal's
    log energies, and its median over bands: does what was removed rise and fall with what
    was kept? The spread is the median over bands of the std over frames of the residual's
    log energy.
    """
    l_dry = _band_db(dry, sample_rate, frame)[active]
    level = np.mean(10 ** (l_dry / 10), axis=0)
    bands = _db(level) > _db(level.max()) - 60.0
    if l_dry.shape[0] < 2 or not bands.any():
        return math.nan, math.nan
    l_wet = _clamp(_band_db(wet, sample_rate, frame)[active][:, bands])
    l_res = _clamp(_band_db(residual, sample_rate, frame)[active][:, bands])
    corr = float(np.median([_pearson(l_res[:, k], l_wet[:, k])
                            for k in range(l_res.shape[1])]))
    spread = float(np.median(np.std(l_res, axis=0)))
    return corr, spread


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
    band_corr, spread = _band_measures(d, w, r, active, sample_rate, frame)
    hum = _hum_share(r, sample_rate)
    duration = d.size / sample_rate
    return Evidence(
        duration_s=duration, frames=int(active.sum()), removed_db=removed,
        envelope_corr=corr, loud_loss_db=float(_db(dry_loud) - _db(wet_loud)),
        quiet_loss_db=float(_db(dry_quiet) - _db(wet_quiet)), input_range_db=input_range,
        residual_range_db=residual_range, residual_follow=follow,
        excess_loud_loss_db=excess, band_corr=band_corr, residual_spread_db=spread,
        hum_share=hum,
        floor_measurable=bool(input_range >= thresholds.floor_range_db),
        noise_corr_limit=thresholds.noise_corr - 1.0 / math.sqrt(int(active.sum())),
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
    corr = e.band_corr if math.isfinite(e.band_corr) else 1.0
    follow = e.residual_follow if math.isfinite(e.residual_follow) else 1.0
    if not e.floor_measurable:
        # No floor to compare with (dense speech, a short clip): only plainly noise counts.
        plainly = corr <= t.no_floor_corr or e.hum_share > t.no_floor_hum_share
        if plainly and e.excess_loud_loss_db <= t.no_floor_excess_db:
            what = (f"mains hum ({e.hum_share:.0%} of the removed low band)"
                    if e.hum_share > t.no_floor_hum_share else
                    f"independent of the recovered speech (band correlation {corr:.2f})")
            return Verdict(RECOVERED, f"no floor measurable, but the removed part is plainly "
                           f"noise: {what}, and the loudest frames lost only "
                           f"{e.loud_loss_db:.1f} dB: recovered", e, t)
        return Verdict(UNSURE, f"no floor measurable (input range {e.input_range_db:.1f} dB, "
                       f"{e.duration_s:.1f} s) and the removed part is not plainly noise "
                       f"(band correlation {corr:.2f}, hum {e.hum_share:.0%}, loudest "
                       f"frames lost {e.loud_loss_db:.1f} dB): kept the input", e, t)
    if e.excess_loud_loss_db > t.excess_loss_db:
        return Verdict(INPUT, f"speech removed: the loudest frames lost "
                       f"{e.loud_loss_db:.1f} dB, {e.excess_loud_loss_db:.1f} dB more than "
                       "the removed floor explains: kept the input", e, t)
    if follow > t.max_follow:
        return Verdict(INPUT, f"the removed part follows the input's envelope ({follow:.2f} "
                       "of its range): kept the input", e, t)
    if corr <= e.noise_corr_limit:
        return Verdict(RECOVERED, f"noise removed: the removed part does not follow the "
                       f"recovered speech (band correlation {corr:.2f}) and the speech kept "
                       f"its level: recovered", e, t)
    if e.hum_share >= t.hum_share:
        return Verdict(RECOVERED, f"hum removed: {e.hum_share:.0%} of the removed low band "
                       "is at mains harmonics and the speech kept its level: recovered", e, t)
    if corr <= t.noise_corr:
        return Verdict(UNSURE, f"weak evidence: the removed part barely follows the recovered "
                       f"speech (band correlation {corr:.2f}, above this "
                       f"{e.duration_s:.1f} s segment's limit {e.noise_corr_limit:.2f}): "
                       "kept the input", e, t)
    return Verdict(INPUT, f"the removed part follows the speech (band correlation "
                   f"{corr:.2f}): kept the input", e, t)


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

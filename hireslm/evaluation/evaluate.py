"""Scoring a pair of signals, and every pair of two folder trees."""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hireslm.analysis.diagnose import DiagnosisThresholds
from hireslm.audio.bandwidth import estimate_bandwidth
from hireslm.audio.errors import AudioError
from hireslm.audio.io import load_audio
from hireslm.audio.resample import resample
from hireslm.evaluation.dnsmos import DNSMOS_RATE, DnsmosScorer
from hireslm.evaluation.metrics import (
    PESQ_RATE,
    MetricUndefined,
    bwe_log_spectral_distances,
    bwe_split_bin,
    check_pair,
    estoi,
    log_spectral_distances,
    pesq_wb,
    si_sdr,
)
from hireslm.evaluation.pairs import LoadedPair, Matching, Pair, load_pair, match_files
from hireslm.evaluation.visqol import VISQOL_RATE, VisqolScorer

logger = logging.getLogger(__name__)

# metric name -> the columns it fills (plain dict; order is the report's column order)
METRICS: dict[str, tuple[str, ...]] = {
    "lsd": ("lsd", "lsd_hf"),
    "lsd_bwe": ("lsd_bwe", "lsd_bwe_hf", "lsd_bwe_lf"),
    "si_sdr": ("si_sdr",),
    "pesq": ("pesq",),
    "estoi": ("estoi",),
    "visqol": ("visqol",),
    "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
}
# metric name -> the packages it imports (the ``eval`` extra)
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq",),
    "estoi": ("pystoi",),
    "visqol": ("visqol",),
    "dnsmos": ("speechmos", "onnxruntime", "librosa", "requests"),
}
# lsd_bwe_hf/_lf need a cutoff: the default set leaves them out unless one is known
DEFAULT_METRICS = tuple(m for m in METRICS if m != "lsd_bwe")
NO_CUTOFF = ("no cutoff: no degraded input file for this reference (--input DIR) and no "
             "--lsd-cutoff-hz")


@dataclass(frozen=True)
class EvaluationOptions:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    sample_rate: int = 48000  # both files are resampled to this rate
    channels: str = "mix"  # "mix": mono mix; "each": per channel, then averaged
    length_tolerance_ms: float = 10.0
    lsd_split_hz: float = 4000.0  # lsd_hf counts the bins at and above this frequency
    dnsmos_fast: bool = False  # one window per clip under 9.01 s (see DnsmosScorer)
    # lsd_bwe_hf/_lf split here for every file; None: at each file's cutoff, measured from its
    # degraded input (``Pair.degraded``)
    lsd_cutoff_hz: float | None = None
    # a measured cutoff at or above this is no band limit: lsd_bwe_hf/_lf undefined
    band_limited_below_hz: float = DiagnosisThresholds().band_limited_below_hz

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
        if self.lsd_cutoff_hz is not None:
            bwe_split_bin(self.lsd_cutoff_hz, self.sample_rate)  # raises outside (0, Nyquist)

    @property
    def columns(self) -> list[str]:
        return [c for m in METRICS if m in self.metrics for c in METRICS[m]]


@dataclass
class FileResult:
    """One reference's line of the report.

    ``status``: ``ok`` (scored; single metrics may still be NaN, reason in ``notes``),
    ``missing`` (no restored file) or ``error`` (unreadable, length mismatch...; ``notes``
    has ``file``).
    """

    key: str
    group: str
    reference: str
    estimate: str | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    duration_s: float = math.nan
    cutoff_hz: float = math.nan  # where lsd_bwe_hf/_lf split (measured or given)


@dataclass
class Evaluation:
    options: EvaluationOptions
    results: list[FileResult]
    unmatched: list[str]  # restored files without a reference


def check_requirements(metrics: Iterable[str]) -> None:
    """Raise ``ImportError`` naming the missing packages of the chosen metrics."""
    missing = sorted({pkg for m in metrics for pkg in REQUIREMENTS.get(m, ())
                      if importlib.util.find_spec(pkg) is None})
    if missing:
        raise ImportError(f"missing packages {missing} for the chosen metrics: "
                          "pip install 'hireslm[eval]'")


def score_signals(
    reference: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    options: EvaluationOptions = EvaluationOptions(),
    dnsmos: DnsmosScorer | None = None,
    visqol: VisqolScorer | None = None,
    cutoff_hz: float | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Every chosen metric of one aligned mono pair.

    Args:
        reference, estimate: ``(N,)`` at ``sample_rate`` (48 kHz for a full-band LSD).
        dnsmos, visqol: needed when ``"dnsmos"``, ``"visqol"`` are among the metrics.
        cutoff_hz: where ``lsd_bwe_hf``/``_lf`` split (the input's cutoff); None:
            ``options.lsd_cutoff_hz``; without either they are undefined.
    Returns:
        ``{column: value}`` (NaN where undefined) and ``{column: reason}`` for the NaNs.
    """
    values = {c: math.nan for c in options.columns}
    notes: dict[str, str] = {}

    def attempt(columns: Sequence[str], compute: Callable[[], Sequence[float]]) -> None:
        try:
            values.update(zip(columns, compute(), strict=True))
        except MetricUndefined as exc:
            notes.update({c: str(exc) for c in columns})

    chosen = set(options.metrics)
    if "dnsmos" in chosen and dnsmos is None:
        raise ValueError("DNSMOS chosen but no DnsmosScorer given")
    if "visqol" in chosen and visqol is None:
        raise ValueError("ViSQOL chosen but no VisqolScorer given")
    try:
        check_pair(reference, estimate)
        silence = None
    except MetricUndefined as exc:
        silence = str(exc)
    if silence:
        # Intrusive metrics need both signals; DNSMOS only the estimate.
        notes.update({c: silence for m in chosen - {"dnsmos"} for c in METRICS[m]})
    else:
        if "lsd" in chosen:
            attempt(METRICS["lsd"], lambda: log_spectral_distances(
                reference, estimate, sample_rate, (0.0, options.lsd_split_hz)))
        if "lsd_bwe" in chosen:
            cutoff = cutoff_hz if cutoff_hz is not None else options.lsd_cutoff_hz
            attempt(METRICS["lsd_bwe"], lambda: bwe_log_spectral_distances(
                reference, estimate, sample_rate, cutoff))
            if cutoff is None:
                notes.update({c: NO_CUTOFF for c in METRICS["lsd_bwe"][1:]})
        if "si_sdr" in chosen:
            attempt(("si_sdr",), lambda: (si_sdr(reference, estimate),))
        if "visqol" in chosen:
            ref48, est48 = (resample(w, sample_rate, VISQOL_RATE) for w in (reference, estimate))
            attempt(("visqol",), lambda: (visqol(ref48, est48),))
    needs_16k = chosen & {"pesq", "estoi", "dnsmos"}
    est16 = resample(estimate, sample_rate, PESQ_RATE) if needs_16k else None
    if needs_16k - {"dnsmos"} and not silence:
        ref16 = resample(reference, sample_rate, PESQ_RATE)
        if "pesq" in chosen:
            attempt(("pesq",), lambda: (pesq_wb(ref16, est16),))
        if "estoi" in chosen:
            attempt(("estoi",), lambda: (estoi(ref16, est16),))
    if "dnsmos" in chosen:
        attempt(METRICS["dnsmos"], lambda: tuple(dnsmos(est16, DNSMOS_RATE).values()))
    return values, notes


def score_pair(
    pair: LoadedPair,
    options: EvaluationOptions,
    dnsmos: DnsmosScorer | None = None,
    visqol: VisqolScorer | None = None,
    cutoff_hz: float | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """``score_signals`` per channel of a loaded ``(C, N)`` pair, averaged over channels
    where defined."""
    per_channel = [score_signals(r, e, pair.sample_rate, options, dnsmos, visqol, cutoff_hz)
                   for r, e in zip(pair.reference, pair.estimate, strict=True)]
    values = {}
    for column in options.columns:
        defined = [v[column] for v, _ in per_channel if not math.isnan(v[column])]
        values[column] = float(np.mean(defined)) if defined else math.nan
    notes: dict[str, str] = {}
    for channel, (_, channel_notes) in enumerate(per_channel):
        for column, reason in channel_notes.items():
            prefix = f"channel {channel}: " if len(per_channel) > 1 else ""
            notes[column] = "; ".join(filter(None, [notes.get(column), prefix + reason]))
    return values, notes


def input_cutoff(pair: Pair, options: EvaluationOptions) -> tuple[float, str | None]:
    """Where ``lsd_bwe_hf``/``_lf`` split for this pair: ``options.lsd_cutoff_hz``, else the
    bandwidth of ``pair.degraded`` (``hireslm.audio.estimate_bandwidth``, the -60 dB edge of
    its long-term spectrum, at its own rate).

    Returns:
        the cutoff in Hz (NaN when none) and, when the split is undefined, why.
    """
    if options.lsd_cutoff_hz is not None:
        return options.lsd_cutoff_hz, None
    if pair.degraded is None:
        return math.nan, NO_CUTOFF
    try:
        wave, rate = load_audio(pair.degraded)
    except AudioError as exc:
        return math.nan, f"no cutoff: {exc}"
    cutoff = estimate_bandwidth(wave, rate)
    if not 0 < cutoff < options.band_limited_below_hz:
        return cutoff, (f"input not band-limited: measured cutoff {cutoff:.0f} Hz, not in "
                        f"(0, {options.band_limited_below_hz:.0f}) Hz")
    return cutoff, None


def evaluate_pairs(
    pairs: Sequence[Pair],
    options: EvaluationOptions = EvaluationOptions(),
    *,
    on_scored: Callable[[FileResult, LoadedPair], None] | None = None,
    estimate_name: str = "restored file",
) -> list[FileResult]:
    """Load and score every pair; a bad pair becomes a ``missing``/``error`` result.

    ``on_scored(result, loaded)`` is called after each scored pair (plots hook in here).
    ``estimate_name`` names the scored side in messages ("no restored file").
    """
    check_requirements(options.metrics)
    dnsmos = DnsmosScorer(options.dnsmos_fast) if "dnsmos" in options.metrics else None
    visqol = VisqolScorer() if "visqol" in options.metrics else None
    results = []
    start = time.perf_counter()
    for index, pair in enumerate(pairs, 1):
        result = FileResult(pair.key, pair.group, str(pair.reference),
                            str(pair.estimate) if pair.estimate else None, "ok",
                            {c: math.nan for c in options.columns})
        if pair.estimate is None:
            result.status, result.notes["file"] = "missing", f"no {estimate_name}"
        elif pair.problem:
            result.status, result.notes["file"] = "error", pair.problem
        else:
            try:
                loaded = load_pair(pair.reference, pair.estimate,
                                   sample_rate=options.sample_rate, channels=options.channels,
                                   length_tolerance_s=options.length_tolerance_ms / 1000)
            except AudioError as exc:
                result.status, result.notes["file"] = "error", str(exc)
            else:
                result.duration_s = loaded.reference.shape[1] / loaded.sample_rate
                cutoff, why = (input_cutoff(pair, options) if "lsd_bwe" in options.metrics
                               else (math.nan, None))
                result.cutoff_hz = cutoff
                result.metrics, result.notes = score_pair(
                    loaded, options, dnsmos, visqol, None if why else cutoff)
                for column in METRICS["lsd_bwe"][1:]:
                    if why and result.notes.get(column) == NO_CUTOFF:
                        result.notes[column] = why
                if loaded.trimmed:
                    result.notes["file"] = f"lengths differ by {loaded.trimmed} samples: trimmed"
                if on_scored is not None:
                    on_scored(result, loaded)
        if result.status != "ok":
            logger.warning("%s [%s]: %s", pair.key, pair.group, result.notes["file"])
        if index % 50 == 0 or index == len(pairs):
            logger.info("done %d/%d pairs (%.0f s)", index, len(pairs),
                        time.perf_counter() - start)
        results.append(result)
    return results


def evaluate_dirs(
    ref_dir: str | Path,
    est_dir: str | Path,
    options: EvaluationOptions = EvaluationOptions(),
    *,
    kinds: bool = False,
    group_by_folder: bool = False,
    exclude: Iterable[str | Path] = (),
    on_scored: Callable[[FileResult, LoadedPair], None] | None = None,
    estimate_name: str = "restored file",
    degraded_dir: str | Path | None = None,
) -> Evaluation:
    """Score every reference under ``ref_dir`` against its restored file under ``est_dir``
    (or, with ``estimate_name="input file"``, its degraded input).

    ``degraded_dir`` holds the degraded inputs, mirroring ``ref_dir`` as ``est_dir`` does (per
    kind with ``kinds``): with ``lsd_bwe``, each file's cutoff is measured from its input
    (``input_cutoff``). See ``hireslm.evaluation.pairs.match_files`` for ``kinds``,
    ``group_by_folder`` and ``exclude``; ``evaluate_pairs`` for ``on_scored`` and
    ``estimate_name``.
    """
    exclude = [Path(p) for p in exclude]
    matching: Matching = match_files(Path(ref_dir), Path(est_dir), kinds=kinds,
                                     group_by_folder=group_by_folder, exclude=exclude)
    if not matching.pairs:
        raise FileNotFoundError(f"{ref_dir}: no reference audio files")
    if degraded_dir is not None and "lsd_bwe" in options.metrics:
        inputs = {(p.group, p.key): p.estimate for p in match_files(
            Path(ref_dir), Path(degraded_dir), kinds=kinds, group_by_folder=group_by_folder,
            exclude=exclude).pairs}
        matching.pairs = [replace(p, degraded=inputs.get((p.group, p.key)))
                          for p in matching.pairs]
    for path in matching.unmatched:
        logger.warning("%s: no reference with this relative path; not scored", path)
    results = evaluate_pairs(matching.pairs, options, on_scored=on_scored,
                             estimate_name=estimate_name)
    return Evaluation(options, results, [str(p) for p in matching.unmatched])

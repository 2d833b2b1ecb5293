"""Objective evaluation of restored speech against clean references (``hireslm evaluate``).

    from hireslm.evaluation import EvaluationOptions, evaluate_dirs, write_reports
    evaluation = evaluate_dirs("testset/clean", "restored/noise_5db")
    write_reports(evaluation, "restored/noise_5db/evaluation")

Metrics (``metrics``, ``dnsmos``, ``visqol``), pairing and loading (``pairs``), scoring
(``evaluate``), reports (``report``), spectrogram figures (``plots``). See docs/evaluation.md.
"""

from hireslm.evaluation.dnsmos import DnsmosScorer
from hireslm.evaluation.evaluate import (
    METRICS,
    Evaluation,
    EvaluationOptions,
    FileResult,
    evaluate_dirs,
    evaluate_pairs,
    score_pair,
    score_signals,
)
from hireslm.evaluation.metrics import (
    MetricUndefined,
    bwe_log_spectral_distances,
    estoi,
    log_spectral_distance,
    pesq_wb,
    si_sdr,
)
from hireslm.evaluation.pairs import (
    ChannelMismatchError,
    LengthMismatchError,
    load_pair,
    match_files,
)
from hireslm.evaluation.report import markdown_table, summarise, write_reports
from hireslm.evaluation.visqol import VisqolScorer

__all__ = [
    "METRICS",
    "ChannelMismatchError",
    "DnsmosScorer",
    "Evaluation",
    "EvaluationOptions",
    "FileResult",
    "LengthMismatchError",
    "MetricUndefined",
    "VisqolScorer",
    "bwe_log_spectral_distances",
    "estoi",
    "evaluate_dirs",
    "evaluate_pairs",
    "load_pair",
    "log_spectral_distance",
    "markdown_table",
    "match_files",
    "pesq_wb",
    "score_pair",
    "score_signals",
    "si_sdr",
    "summarise",
    "write_reports",
]

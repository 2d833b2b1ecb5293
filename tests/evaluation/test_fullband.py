"""Full-band measurement on real speech (LibriVox clips at 48 kHz): ViSQOL v3 in audio mode,
and the log-spectral distance above a cutoff as the band-extension papers compute it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hireslm.audio import save_audio
from hireslm.cli.main import main
from hireslm.data.degradations import DEGRADATIONS
from hireslm.evaluation import (
    EvaluationOptions,
    VisqolScorer,
    bwe_log_spectral_distances,
    score_signals,
)
from hireslm.evaluation.metrics import bwe_split_bin

SR = 48000




@pytest.fixture(scope="module")
def visqol() -> VisqolScorer:
    return VisqolScorer()


def lowpass(wave: np.ndarray, cutoff_hz: float) -> np.ndarray:
    return DEGRADATIONS["lowpass"](wave[None], SR, np.random.default_rng(0),
                                   cutoff_hz=cutoff_hz)[0]


VISQOL = EvaluationOptions(metrics=("visqol", "pesq"))


def test_visqol_of_itself_is_near_the_top_and_falls_for_a_lowpass(speech, visqol):
    same, notes = score_signals(speech, speech.copy(), SR, VISQOL, visqol=visqol)
    assert notes == {} and 4.6 < same["visqol"] <= 5.0
    cut, _ = score_signals(speech, lowpass(speech, 4000), SR, VISQOL, visqol=visqol)
    assert cut["visqol"] < same["visqol"] - 0.3


def test_visqol_hears_the_band_above_8khz(wide, visqol):
    """An 8 kHz low-pass that PESQ (16 kHz) barely notices costs ViSQOL most of its scale."""
    values, _ = score_signals(wide, lowpass(wide, 8000), SR, VISQOL, visqol=visqol)
    assert values["pesq"] > 4.3
    assert values["visqol"] < 3.0


def test_visqol_of_a_short_clip_is_nan_with_the_reason(speech, visqol):
    short = speech[: int(0.9 * SR)]
    values, notes = score_signals(short, short, SR, VISQOL, visqol=visqol)
    assert math.isnan(values["visqol"]) and "at least 0.96 s (0.90 s here)" in notes["visqol"]
    values, notes = score_signals(speech, np.zeros_like(speech), SR, VISQOL, visqol=visqol)
    assert math.isnan(values["visqol"]) and notes["visqol"] == "estimate is digital silence"
    ok, _ = score_signals(speech[: int(0.96 * SR)], speech[: int(0.96 * SR)], SR, VISQOL,
                          visqol=visqol)
    assert ok["visqol"] > 4.6


# LSD above the cutoff (NU-Wave 2 / AP-BWE convention)


def nuwave2_lsd(pred: np.ndarray, target: np.ndarray, hf: int) -> tuple[float, ...]:
    """NU-Wave 2's ``cal_lsd`` (for_test.py, with its ``STFTMag(2048, 512)``), in float64."""
    def stft(x: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(x.astype(np.float64))[None]
        return torch.stft(x, 2048, 512, window=torch.hann_window(2048, dtype=torch.float64),
                          return_complex=True).abs()

    sp = torch.log10(stft(pred).square().clamp(1e-8))
    st = torch.log10(stft(target).square().clamp(1e-8))
    return tuple(float((a - b).square().mean(dim=1).sqrt().mean()) for a, b in (
        (sp, st), (sp[:, hf:, :], st[:, hf:, :]), (sp[:, :hf, :], st[:, :hf, :])))


def test_lsd_above_the_cutoff_is_zero_for_itself_and_large_for_a_lowpass(wide):
    assert bwe_log_spectral_distances(wide, wide.copy(), SR, 4000) == (0.0, 0.0, 0.0)
    full, high, low = bwe_log_spectral_distances(wide, lowpass(wide, 4000), SR, 4000)
    assert high > 5.0 and high > full > low


def test_lsd_bwe_is_nuwave2s_computation(wide):
    degraded = lowpass(wide, 8000) + 1e-3 * np.random.default_rng(2).standard_normal(wide.size)
    assert bwe_split_bin(8000, SR) == int(1025 * 16000 / 48000) == 341
    ours = bwe_log_spectral_distances(wide, degraded, SR, 8000)
    assert ours == pytest.approx(nuwave2_lsd(degraded, wide, 341), rel=1e-9)
    assert math.isnan(bwe_log_spectral_distances(wide, degraded, SR)[1])
    with pytest.raises(ValueError, match="no bins on one side"):
        bwe_split_bin(24000, SR)


@pytest.fixture()
def bwe_folders(tmp_path, wide) -> tuple[Path, Path, Path]:
    """ref/{limited,wide}.wav; inputs: a 4 kHz low-pass of the first, the second with noise
    (full band); est: the references themselves (a perfect restoration)."""
    ref, inputs, est = (tmp_path / name for name in ("ref", "inputs", "est"))
    noise = 0.01 * np.random.default_rng(3).standard_normal(wide.shape)
    for name, degraded in (("limited", lowpass(wide, 4000)), ("wide", wide + noise)):
        save_audio(ref / f"{name}.wav", wide[None], SR, subtype="FLOAT")
        save_audio(est / f"{name}.wav", wide[None], SR, subtype="FLOAT")
        save_audio(inputs / f"{name}.wav", degraded[None].astype(np.float32), SR,
                   subtype="FLOAT")
    return ref, inputs, est


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {r["key"]: r for r in csv.DictReader(handle)}


def test_cli_lsd_bwe_splits_at_each_inputs_measured_cutoff(bwe_folders, tmp_path):
    ref, inputs, est = bwe_folders
    out = tmp_path / "report"
    assert main(["evaluate", str(ref), str(est), "-o", str(out), "--metrics", "lsd_bwe",
                 "--input", str(inputs)]) == 0
    limited, wide = (rows(out / "metrics.csv")[k] for k in ("limited", "wide"))
    # the low-pass's -60 dB edge, where its filter has rolled off
    assert 3000 < float(limited["cutoff_hz"]) <= 4000
    assert float(limited["lsd_bwe_hf"]) == 0.0 and float(limited["input_lsd_bwe_hf"]) > 5.0
    assert float(limited["input_lsd_bwe_hf"]) > float(limited["input_lsd_bwe_lf"])
    assert wide["lsd_bwe_hf"] == "" and wide["lsd_bwe"] == "0"
    assert "input not band-limited: measured cutoff 24000 Hz" in wide["notes"]
    assert "LSD-BWE-HF undefined for 1 files" in (out / "summary.md").read_text()


def test_cli_lsd_bwe_without_an_input_needs_a_given_cutoff(bwe_folders, tmp_path):
    ref, inputs, _ = bwe_folders
    out = tmp_path / "report"
    assert main(["evaluate", str(ref), str(inputs), "-o", str(out), "--metrics",
                 "lsd_bwe"]) == 0
    limited = rows(out / "metrics.csv")["limited"]
    assert limited["lsd_bwe_hf"] == "" and "no cutoff" in limited["notes"]
    assert float(limited["lsd_bwe"]) > 1.0
    assert main(["evaluate", str(ref), str(inputs), "-o", str(out), "--metrics", "lsd_bwe",
                 "--lsd-cutoff-hz", "4000"]) == 0
    for row in rows(out / "metrics.csv").values():
        assert float(row["cutoff_hz"]) == 4000.0 and row["lsd_bwe_hf"] != ""

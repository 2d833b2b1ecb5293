"""Never worse than the input: what ``--keep`` keeps, recovers and generates, on real speech
through a tiny random-weight release (whose generated signal is nothing like speech, so any
of it leaking into the kept band shows)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from release_factory import make_tiny_release

from hireslm.analysis import analyse_wave
from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.data.degradations.filters import lowpass
from hireslm.options import DEFAULT_OPTIONS
from hireslm.pipeline import RestorationPipeline, RestoreOptions
from hireslm.pipeline.treatment import decide_treatment

SR = 48000


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> RestorationPipeline:
    return RestorationPipeline.from_pretrained(make_tiny_release(tmp_path_factory.mktemp("r")))


@pytest.fixture(scope="module")
def full_band(speech_48k: np.ndarray) -> np.ndarray:
    """Real speech whose band reaches 24 kHz (the fixture's faint broadband floor)."""
    return speech_48k


@pytest.fixture(scope="module")
def band_limited(librivox_files: list[Path]) -> np.ndarray:
    """A real 16 kHz recording at 48 kHz, then low-passed to end at 5 kHz: ``(1, N)``."""
    wave, rate = load_audio(librivox_files[2])
    wave = resample(wave, rate, SR)[:, : 3 * SR]
    return lowpass(wave, SR, None, cutoff_hz=5000.0).astype(np.float32)


def _band_db(wave: np.ndarray, low: float, high: float) -> float:
    spec = np.abs(np.fft.rfft(wave[0])) ** 2
    freqs = np.fft.rfftfreq(wave.shape[-1], 1 / SR)
    return float(10 * np.log10(spec[(freqs >= low) & (freqs < high)].mean() + 1e-30))


def test_full_band_clean_input_passes_untouched(pipeline, full_band):
    treatment = decide_treatment(analyse_wave(full_band, SR), "auto", can_recover=False)
    assert (treatment.recover, treatment.generate) == (False, False)
    out = pipeline(full_band, SR)
    # Only the loudness round trip in float32 touches it.
    np.testing.assert_allclose(out, full_band, atol=2e-6)


def test_band_limited_input_keeps_its_band_and_gains_the_missing_one(pipeline, band_limited):
    out, treatment = _restored(pipeline, band_limited, RestoreOptions(min_generated_hz=0.0))
    assert treatment.generate and not treatment.recover
    (cutoff,) = treatment.keep_below_hz
    assert 4000 < cutoff < 5500
    # By default the band is generated from 8 kHz up: below, the input as it is.
    assert _restored(pipeline, band_limited)[1].keep_below_hz == (8000.0,)
    assert out.shape == band_limited.shape
    # Below the crossfade the output is the input, to well under the input's own level.
    below = _band_db(out - band_limited, 50, cutoff * 2 ** -0.25)
    assert below < _band_db(band_limited, 50, cutoff * 2 ** -0.25) - 60
    # Above the cutoff something was made where the input had nothing.
    assert _band_db(out, 7000, 20000) > _band_db(band_limited, 7000, 20000) + 20


def test_keep_none_regenerates_the_whole_band(pipeline, band_limited):
    out, treatment = _restored(pipeline, band_limited, RestoreOptions(keep="none"))
    assert treatment.keep_below_hz is None
    assert _band_db(out - band_limited, 50, 3000) > _band_db(band_limited, 50, 3000) - 20


def test_keep_input_never_recovers(pipeline, band_limited):
    noisy = band_limited + np.random.default_rng(0).normal(0, 0.05, band_limited.shape)
    channels = analyse_wave(noisy.astype(np.float32), SR)
    assert channels[0].flags.noisy
    assert decide_treatment(channels, "auto", can_recover=True).recover
    assert not decide_treatment(channels, "input", can_recover=True).recover
    assert not decide_treatment(channels, "auto", can_recover=False).recover


def test_channels_keep_their_own_cutoff(pipeline, band_limited, full_band):
    n = min(band_limited.shape[1], full_band.shape[1])
    stereo = np.concatenate([band_limited[:, :n], full_band[:, :n]])
    out, treatment = _restored(pipeline, stereo)
    assert math.isfinite(treatment.keep_below_hz[0]) and treatment.keep_below_hz[1] == math.inf
    np.testing.assert_allclose(out[1], stereo[1], atol=2e-6)


def test_fusion_is_what_the_pipeline_applies(pipeline, band_limited):
    """The kept band comes through chunking and overlap-add unchanged (chunk borders too)."""
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2, min_generated_hz=0.0)
    out = pipeline(band_limited, SR, options)
    cutoff = _restored(pipeline, band_limited, options)[1].keep_below_hz[0]
    spec = torch.stft(torch.from_numpy(out - band_limited), 2048, 480,
                      window=torch.hann_window(2048), return_complex=True).abs() ** 2
    freqs = torch.linspace(0, SR / 2, spec.shape[1])
    per_frame = 10 * torch.log10(spec[0, freqs < cutoff * 2 ** -0.25].mean(0) + 1e-20)
    # The last frames of this measuring STFT see the clip's cut end, where the generated
    # band's edge leaks into every bin; the pipeline's own chunks are padded by reflection.
    assert float(per_frame[:-3].max()) < 10 * np.log10(np.mean(band_limited ** 2)) - 50


def test_report_says_what_was_kept_and_generated(tmp_path, band_limited, full_band):
    inputs = tmp_path / "in"
    save_audio(inputs / "narrow.wav", band_limited, SR)
    save_audio(inputs / "wide.wav", full_band, SR)
    release_dir = make_tiny_release(tmp_path / "release")
    assert main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--checkpoint",
                 str(release_dir), "--no-progress"]) == 0
    lines = (tmp_path / "out" / "restore_report.jsonl").read_text().splitlines()
    records = {Path(r["input"]).name: r for r in map(json.loads, lines)}
    narrow, wide = records["narrow.wav"]["treatment"], records["wide.wav"]["treatment"]
    assert narrow["generated"][0].endswith("-24000 Hz") and narrow["recovered"] is None
    assert wide["generated"] == ["nothing"] and wide["kept"] == ["0-24000 Hz"]
    assert records["narrow.wav"]["analysis"][0]["flags"]["band_limited"]
    assert main(["restore", str(inputs), "-o", str(tmp_path / "none"), "--checkpoint",
                 str(release_dir), "--no-progress", "--keep", "none"]) == 0
    line = json.loads((tmp_path / "none" / "restore_report.jsonl").read_text().splitlines()[0])
    assert line["treatment"]["kept"] is None


def _restored(pipeline, wave, options=DEFAULT_OPTIONS):
    """The restored audio and the ``Treatment`` the pipeline decided for it."""
    result = pipeline.restore(wave, options, sample_rate=SR)
    return result.audio, result.account.decision

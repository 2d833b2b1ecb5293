"""The restore decision on real speech, one test per way it used to fail, with the shipped
release (DeepFilterNet3 recovery, the demo generative stages): clean speech, however short
or band-limited, keeps its quality; stationary noise is removed; a band limit hidden under
later noise is found after recovery; a file that needs only recovery loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from debian_speech import syllables_48k
from pesq import pesq

from hireslm.audio import load_audio, resample, save_audio
from hireslm.data.degradations.codecs import mp3
from hireslm.data.degradations.filters import lowpass
from hireslm.data.degradations.noise import colored_noise, mix_at_snr
from hireslm.evaluation.metrics import log_spectral_distance
from hireslm.jobs.restore_one import restore_file
from hireslm.pipeline import RestorationPipeline, RestoreOptions

SR = 48000


@pytest.fixture(scope="module")
def pipeline() -> RestorationPipeline:
    return RestorationPipeline.from_pretrained(lazy=True)  # the shipped release


@pytest.fixture(scope="module")
def reading(librivox_files) -> np.ndarray:
    """A LibriVox reading (16 kHz, its band ends near 8 kHz) at 48 kHz: ``(1, N)``."""
    wave, rate = load_audio(librivox_files[1])
    return resample(wave, rate, SR)


@pytest.fixture(scope="module")
def full_band() -> np.ndarray:
    """A speaker's recorded syllables, band intact to about 16 kHz (klettres-data)."""
    try:
        return syllables_48k("de")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float:
    return float(pesq(16000, resample(reference, SR, 16000)[0],
                      resample(degraded, SR, 16000)[0], "wb"))


def _pink(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = colored_noise(1, wave.shape[1], SR, np.random.default_rng(seed), alpha=1.0)
    return mix_at_snr(wave, noise, snr_db).astype(np.float32)


def test_a_short_dense_clean_clip_passes_through(pipeline, reading):
    clip = reading[:, SR: SR + round(0.9 * SR)]  # 0.9 s of running speech, no pause
    result = pipeline.restore(clip, sample_rate=SR)
    assert result.account.treatment["recovered_share"] == [0.0]
    assert _pesq_wb(clip, result.audio) >= 4.0


def test_a_clean_band_limited_recording_passes_through(pipeline, reading):
    vintage = lowpass(reading[:, : 3 * SR], SR, None, cutoff_hz=5500.0).astype(np.float32)
    result = pipeline.restore(vintage, sample_rate=SR)
    assert result.account.treatment["recovered_share"] == [0.0]
    assert _pesq_wb(vintage, result.audio) >= 4.0


@pytest.mark.parametrize("speech", ["reading", "full_band"])
def test_pink_noise_at_15_db_is_removed(pipeline, speech, request):
    clean = request.getfixturevalue(speech)[:, : 4 * SR]
    noisy = _pink(clean, 15.0)
    result = pipeline.restore(noisy, RestoreOptions(keep="input"), sample_rate=SR)
    assert result.account.treatment["recovered"] is None  # --keep input: the input as it is
    result = pipeline.restore(noisy, sample_rate=SR)
    assert result.account.treatment["recovered_share"][0] > 0.9
    verdicts = [c["decision"] for s in result.account.treatment["segments"]
                for c in s["channels"]]
    assert verdicts and set(verdicts) == {"recovered"}
    assert _pesq_wb(clean, result.audio) > _pesq_wb(clean, noisy) + 0.3


def test_a_band_limit_under_later_noise_is_found_after_recovery(pipeline, reading):
    """A reading whose band ends near 8 kHz, then hiss, then MP3: the hiss fills the empty
    band, so the input reads as wide; recovery removes it and the band is measured again."""
    hiss = colored_noise(1, reading.shape[1], SR, np.random.default_rng(3), alpha=0.0)
    hissed = mix_at_snr(reading, hiss, 15.0).astype(np.float32)
    coded = mp3(hissed, SR, np.random.default_rng(0), bitrate_kbps=128)
    result = pipeline.restore(coded, sample_rate=SR)
    treatment = result.account.treatment
    input_band = result.account.analysis[0]["bandwidth_hz"]
    assert input_band > 12000 and treatment["recovered_share"][0] > 0.9
    (generated,) = treatment["generated"]
    assert generated != "nothing" and float(generated.split("-")[0]) < 9000
    assert any("re-measured after recovery" in reason for reason in treatment["reasons"])


def test_denoise_never_and_an_attenuation_limit(pipeline, reading):
    noisy = _pink(reading[:, : 3 * SR], 10.0)
    kept = pipeline.restore(noisy, RestoreOptions(denoise="never", keep="auto"),
                            sample_rate=SR)
    assert kept.account.treatment["recovered"] is None
    full = pipeline.restore(noisy, RestoreOptions(denoise="always"), sample_rate=SR)
    limited = pipeline.restore(noisy, RestoreOptions(denoise="always", atten_limit_db=6.0),
                               sample_rate=SR)
    assert full.account.treatment["recovered_share"] == [1.0]
    # 6 dB at most taken from any bin: much of the noise stays.
    removed = [float(np.mean((noisy - r.audio) ** 2)) for r in (full, limited)]
    assert removed[1] < 0.6 * removed[0]


def test_a_file_that_needs_only_recovery_loads_no_torch(full_band, tmp_path):
    """Restored through the job level in a fresh interpreter; the same output, to the bit, as
    the pipeline with every stage loaded up front."""
    save_audio(tmp_path / "in" / "noisy.wav", _pink(full_band, 20.0, seed=7), SR,
               subtype="FLOAT")
    code = (
        "import sys\n"
        "from hireslm.jobs import RunSettings, run\n"
        f"summary = run([{str(tmp_path / 'in')!r}], {str(tmp_path / 'lazy')!r},"
        " settings=RunSettings(progress=False, html=False))\n"
        "print(dict(summary.counts), 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=600)
    assert done.stdout.split("\n")[-2] == "{'ok': 1} False", done.stderr[-2000:]
    record = json.loads((tmp_path / "lazy" / "restore_report.jsonl").read_text())
    assert record["treatment"]["generated"] == ["nothing"]
    assert record["treatment"]["recovered_share"][0] > 0.9
    eager = RestorationPipeline.from_pretrained()  # every stage loaded now
    restore_file(eager, tmp_path / "in" / "noisy.wav", tmp_path / "eager.wav")
    np.testing.assert_array_equal(load_audio(tmp_path / "eager.wav")[0],
                                  load_audio(tmp_path / "lazy" / "noisy.wav")[0])


def test_float_input_over_full_scale_is_scaled_down_not_flattened(pipeline, reading):
    loud = (reading / np.abs(reading).max() * 10.0).astype(np.float32)  # peaks +20 dBFS
    result = pipeline.restore(loud, RestoreOptions(denoise="never"), sample_rate=SR)
    assert np.abs(result.audio).max() < 1.0
    assert np.mean(np.abs(result.audio) > 0.9) < 1e-3  # the limiter barely touched it
    assert any("scaled down" in w for w in result.account.warnings)


def test_the_report_says_what_was_done_to_clipped_speech(pipeline, reading):
    peak = np.abs(reading).max()
    clipped = np.clip(reading, -0.3 * peak, 0.3 * peak).astype(np.float32)
    treatment = pipeline.restore(clipped, sample_rate=SR).account.treatment
    (reason,) = [r for r in treatment["reasons"] if r.startswith("channel 0 clipped")]
    assert ("recovered" in reason) == (treatment["recovered_share"][0] > 0)
    assert "clipped runs restored" in reason
    assert any("A-SPADE" in r for r in treatment["reasons"])
    kept = pipeline.restore(clipped, RestoreOptions(repair=False), sample_rate=SR)
    assert any("kept as they are" in r for r in kept.account.treatment["reasons"])


def test_clipped_runs_and_dropouts_are_repaired_and_the_rest_kept(pipeline, reading):
    """Through the whole restore (no denoising, no band generated, so the output is the
    repaired input): clipped at 30 % of its peak, and 10 ms gaps every 300 ms."""
    options = RestoreOptions(denoise="never", complete_band_hz=1.0)
    clean = (0.5 * reading[:, : 3 * SR] / np.abs(reading).max() / 0.3).astype(np.float32)
    clipped = np.clip(clean, -0.5, 0.5)
    gapped = clean * 0.45  # peaks at 0.75: under the limiter
    for start in range(SR // 10, gapped.shape[1] - SR // 100, round(0.3 * SR)):
        gapped[:, start:start + SR // 100] = 0.0
    for damaged, kept in ((clipped, np.abs(clipped) < 0.499), (gapped, gapped != 0.0)):
        result = pipeline.restore(damaged, options, sample_rate=SR)
        np.testing.assert_allclose(result.audio[kept], damaged[kept], atol=1e-5)
        reference = clean * (damaged[kept].std() / clean[kept].std())
        assert _pesq_wb(reference, result.audio) > _pesq_wb(reference, damaged) + 0.3
        assert log_spectral_distance(reference[0], result.audio[0], SR) < \
            log_spectral_distance(reference[0], damaged[0], SR)

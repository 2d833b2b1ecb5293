"""``hireslm.analysis`` on real speech degraded by the project's own degradations, and
``hireslm analyze`` run in-process on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from hireslm.analysis import (
    ClippingMeter,
    DiagnosisThresholds,
    SignalAnalyzer,
    SilenceMeter,
    analyse_wave,
    diagnose,
)
from hireslm.audio import load_audio, resample, save_audio
from hireslm.audio.errors import NonFiniteAudioError
from hireslm.cli.main import main
from hireslm.data.degradations import clipping, lowpass, mp3, noise, reverb

SR = 48000


def _one(wave: np.ndarray, sample_rate: int = SR, **kwargs):
    return analyse_wave(wave, sample_rate, **kwargs)[0]


@pytest.fixture(scope="module")
def speech_16k(librivox_files) -> np.ndarray:
    """A whole 7 s LibriVox clip at its own 16 kHz, ``(1, N)``."""
    wave, rate = load_audio(librivox_files[0])
    assert rate == 16000
    return wave


@pytest.fixture(scope="module")
def long_48k(speech_16k) -> np.ndarray:
    """The 7 s clip at 48 kHz with a faint broadband floor (full band, like ``speech_48k``)."""
    wave = resample(speech_16k, 16000, SR)
    floor = np.random.default_rng(7).standard_normal(wave.shape) * 1e-3
    return (wave + floor).astype(np.float32)


# --- bandwidth and edges ---------------------------------------------------------------

def test_bandwidth_matches_the_reference_rule(speech_48k):
    """The streamed, level-binned spectrum gives the -60 dB rule on whole-signal STFT frames
    (``estimate_bandwidth``'s rule without its zero-padded edge frames)."""
    wave = lowpass(speech_48k, SR, None, cutoff_hz=6000.0)
    freqs, _, spec = signal.stft(wave[0].astype(np.float64), fs=SR, nperseg=2048,
                                 noverlap=1536, boundary=None, padded=False)
    power = np.abs(spec) ** 2
    energy = power[2:].sum(axis=0)
    spectrum_db = 10 * np.log10(power[:, energy >= energy.max() * 1e-3].mean(axis=1) + 1e-30)
    usable = freqs >= 50
    expected = freqs[np.nonzero(usable & (spectrum_db >= spectrum_db[usable].max() - 60))[0][-1]]
    assert _one(wave).bandwidth_hz == pytest.approx(expected, abs=2 * SR / 2048)


@pytest.mark.parametrize("cutoff", [4000.0, 8000.0])
@pytest.mark.parametrize("family", ["elliptic", "butterworth"])
def test_lowpass_reads_band_limited_at_its_cutoff(cutoff, family, speech_48k):
    """A brick wall reads within 10% of its -60 dB cutoff. A gentler filter reads lower: the
    -60 dB-below-peak rule meets its slope where it is about 30 dB down (docs/analysis.md)."""
    result = _one(lowpass(speech_48k, SR, None, cutoff_hz=cutoff, family=family, order=8))
    if family == "elliptic":
        assert result.bandwidth_hz == pytest.approx(cutoff, rel=0.1)
        assert result.edge == "cliff"
    else:
        assert 0.75 * cutoff <= result.bandwidth_hz <= 1.02 * cutoff
    assert result.flags.band_limited
    assert result.codec_cutoff_hz is None  # a filter, not a codec: no holes in the band
    assert not result.flags.codec


def test_full_band_speech_has_no_edge(speech_48k):
    result = _one(speech_48k)
    assert result.bandwidth_hz > 22000
    assert result.edge is None
    assert result.flags.names() == []


def test_a_16k_file_is_band_limited_but_not_a_codec_cut(speech_16k):
    """Upsampled 16 kHz audio ends at 8 kHz: a cliff at the native Nyquist, the rate's limit."""
    result = _one(resample(speech_16k, 16000, SR), native_sample_rate=16000,
                  subtype="MPEG_LAYER_III")
    assert result.bandwidth_hz < 8000
    assert result.flags.band_limited
    assert result.codec_cutoff_hz is None
    assert result.flags.codec  # the subtype says so


def test_mp3_shows_a_codec_cut(long_48k):
    result = _one(mp3(long_48k, SR, None, bitrate_kbps=32))
    assert result.flags.codec and result.flags.band_limited
    assert result.codec_holes > 0.03
    assert result.codec_cutoff_hz == result.bandwidth_hz < 9000


# --- noise -------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [5.0, 15.0])
def test_stationary_noise_snr_is_measured(snr, long_48k):
    noisy = noise(long_48k, SR, np.random.default_rng(3), snr_db=snr, color="pink")
    result = _one(noisy)
    assert result.snr_db == pytest.approx(snr, abs=2.5)
    assert result.flags.noisy
    assert result.noise_floor_db < result.speech_level_db


def test_clean_speech_is_not_noisy(long_48k):
    result = _one(long_48k)
    assert result.snr_db > 25
    assert not result.flags.noisy


def test_dc_offset_is_not_noise(long_48k):
    assert _one(long_48k + 0.01).snr_db == pytest.approx(_one(long_48k).snr_db, abs=0.5)


# --- clipping ----------------------------------------------------------------------------

def test_clipping_is_found_and_clean_is_not(speech_48k):
    clipped = clipping(speech_48k, SR, None, threshold=0.25)
    result = _one(clipped)
    assert result.flags.clipped and result.clipped_fraction > 0.01
    assert _one(speech_48k).clipped_fraction == 0.0
    mild = _one(clipping(speech_48k, SR, None, threshold=0.9))
    assert 0 < mild.clipped_fraction < result.clipped_fraction


def test_clipping_needs_the_native_rate(speech_16k):
    """Resampling turns plateaus into ringing: measured at 48 kHz a clipped 16 kHz file reads
    clean, measured on its own samples it reads clipped."""
    clipped = clipping(speech_16k, 16000, None, threshold=0.25)
    upsampled = resample(clipped, 16000, SR)
    assert _one(upsampled).clipped_fraction < 1e-4
    analyzer = SignalAnalyzer(SR, 1, native_sample_rate=16000, native_samples=True)
    analyzer.update(upsampled)
    analyzer.update_native(clipped)
    result = analyzer.result()[0]
    assert result.flags.clipped and result.clipped_fraction > 0.01
    assert result.bandwidth_hz < 8000  # spectral measures still from the 48 kHz stream


def test_clipping_meter_asymmetric_and_across_blocks():
    x = np.sin(np.linspace(0, 40 * np.pi, 4000))[None]
    x = np.clip(x, -0.5, 0.8)  # both sides clipped, at different levels
    whole = ClippingMeter(1)
    whole.update(x)
    pieces = ClippingMeter(1)
    for start in range(0, 4000, 7):  # many plateaus straddle a border
        pieces.update(x[:, start : start + 7])
    assert whole.result() == pieces.result()
    expected = ((x >= 0.8) | (x <= -0.5)).mean()
    assert whole.result()[0].clipped_fraction == pytest.approx(expected, rel=0.02)


def test_quiet_quantised_audio_is_not_clipped(speech_16k):
    quiet = np.round(speech_16k * 0.003 * 32767) / 32767  # a few dozen 16-bit steps
    meter = ClippingMeter(1)
    meter.update(quiet)
    assert meter.result()[0].clipped_fraction == 0.0


# --- reverberation -----------------------------------------------------------------------

def test_reverberant_speech_reads_higher_than_dry(speech_16k):
    wet = reverb(speech_16k, 16000, np.random.default_rng(0), rt60_s=0.6)
    dry_result, wet_result = _one(speech_16k, 16000), _one(wet, 16000)
    assert wet_result.rt60_s > dry_result.rt60_s + 0.1
    assert wet_result.flags.reverberant and not dry_result.flags.reverberant


# --- silence, edge cases -----------------------------------------------------------------

def test_digital_silence_share_and_silent_channel(speech_48k):
    gap = np.concatenate([speech_48k, np.zeros((1, SR)), speech_48k], axis=1)
    result = _one(gap)
    assert result.silence_fraction == pytest.approx(SR / gap.shape[1], abs=0.01)
    assert not result.silent and not result.flags.silent
    silent = _one(np.zeros((1, SR), dtype=np.float32))
    assert silent.silent and silent.flags.names() == ["silent"]
    record = silent.to_dict()
    json.dumps(record, allow_nan=False)  # no NaN/inf leaks into the report
    assert record["snr_db"] is None and record["bandwidth_hz"] == 0.0


def test_silence_meter_counts_runs_across_blocks():
    x = np.ones((1, 100))
    x[0, 10:30] = 0.0  # 20 samples: counted
    x[0, 50:53] = 0.0  # 3 samples: too short
    x[0, 90:] = 0.0  # 10 samples at the end: counted
    for size in (1, 3, 100):
        meter = SilenceMeter(1, min_run=5)
        for start in range(0, 100, size):
            meter.update(x[:, start : start + size])
        assert meter.result()[0].silence_fraction == pytest.approx(0.30)


def test_short_signal_and_bad_blocks(speech_48k):
    short = _one(speech_48k[:, 24000:25000])  # shorter than one frame
    assert short.bandwidth_hz > 0 and short.snr_db is not None
    analyzer = SignalAnalyzer(SR, 1)
    with pytest.raises(NonFiniteAudioError):
        analyzer.update(np.full((1, 10), np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        analyzer.update(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(RuntimeError):
        analyzer.update_native(np.zeros((1, 10), dtype=np.float32))


def test_thresholds_are_explicit(speech_48k):
    result = _one(lowpass(speech_48k, SR, None, cutoff_hz=4000.0))
    assert diagnose(result).band_limited
    assert not diagnose(result, DiagnosisThresholds(band_limited_below_hz=3000.0)).band_limited


# --- streaming invariants ----------------------------------------------------------------

def _degraded_stereo(speech: np.ndarray) -> np.ndarray:
    left = speech
    right = clipping(lowpass(speech, SR, None, cutoff_hz=4000.0), SR, None, threshold=0.3)
    right = right.copy()
    right[:, 20000:30000] = 0.0
    return np.concatenate([left, right]).astype(np.float32)


def test_results_do_not_depend_on_block_size(speech_48k):
    wave = _degraded_stereo(speech_48k)
    reference = [c.to_dict() for c in analyse_wave(wave, SR)]
    rng = np.random.default_rng(0)
    for sizes in ([1, 2, 3, 511, 512, 513], [4096], [SR // 3]):
        analyzer = SignalAnalyzer(SR, 2)
        start = 0
        while start < wave.shape[1]:
            size = int(rng.choice(sizes))
            analyzer.update(wave[:, start : start + size])
            start += size
        got = [c.to_dict() for c in analyzer.result()]
        for a, b in zip(got, reference, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], float):
                    assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-6), key
                else:
                    assert a[key] == b[key], key


def test_channels_are_analysed_independently(speech_48k):
    wave = _degraded_stereo(speech_48k)
    left, right = analyse_wave(wave, SR)
    assert left.channel == 0 and right.channel == 1
    assert left.flags.names() == []
    assert right.flags.band_limited and right.flags.clipped
    assert right.silence_fraction == pytest.approx(10000 / wave.shape[1], abs=1e-3)
    assert left.to_dict() == _one(wave[:1]).to_dict()


# --- hireslm analyze ---------------------------------------------------------------------

@pytest.fixture
def archive(tmp_path, speech_16k) -> Path:
    """Real files: a 16 kHz FLAC, a stereo 44.1 kHz WAV whose right channel is clipped, an
    MP3, a hidden file, a corrupt file, and a file that is not audio."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    save_audio(root / "a.flac", speech_16k, 16000)
    stereo = resample(speech_16k, 16000, 44100)
    right = clipping(stereo, 44100, None, threshold=0.25)
    save_audio(root / "sub" / "stereo.wav", np.concatenate([stereo, right]), 44100)
    sf.write(root / "sub" / "talk.mp3", speech_16k[0], 16000, format="MP3")
    save_audio(root / "sub" / ".hidden.wav", speech_16k, 16000)
    (root / "notes.txt").write_text("not audio")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    return root


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_analyze_folder_to_stdout(archive, capsys):
    assert main(["analyze", str(archive)]) == 0
    records = {Path(r["input"]).name: r for r in _lines(capsys.readouterr().out)}
    assert sorted(records) == ["a.flac", "stereo.wav", "talk.mp3"]  # hidden and .txt skipped
    flac = records["a.flac"]
    assert flac["status"] == "ok" and flac["sample_rate"] == 16000 and flac["channels"] == 1
    assert flac["duration_s"] == pytest.approx(7.1, abs=0.01)
    assert flac["damage"] == ["band_limited"]
    left, right = records["stereo.wav"]["analysis"]
    assert not left["flags"]["clipped"] and right["flags"]["clipped"]  # measured at 44.1 kHz
    assert right["bandwidth_hz"] > left["bandwidth_hz"]  # clipping's harmonics
    assert records["talk.mp3"]["subtype"] == "MPEG_LAYER_III"
    assert records["talk.mp3"]["analysis"][0]["flags"]["codec"]


def test_cli_analyze_failed_file_and_report(archive, tmp_path, capsys):
    report = tmp_path / "out" / "report.jsonl"
    broken = tmp_path / "broken.wav"
    code = main(["analyze", str(archive / "a.flac"), str(broken), "-o", str(report)])
    assert code == 1
    assert capsys.readouterr().out == ""
    text = report.read_text(encoding="utf-8")
    records = _lines(text)
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert records[1]["input"] == str(broken) and "broken.wav" in records[1]["error"]
    assert "\n" not in records[1]["error"]
    assert not list(report.parent.glob(".*.part"))


def test_cli_analyze_usage_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.wav")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty)]) == 1

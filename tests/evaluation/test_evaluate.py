"""Evaluation metrics, pairing and ``hireslm evaluate`` on real speech (LibriVox clips)."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.data.degradations import DEGRADATIONS
from hireslm.data.manifest import describe_file
from hireslm.evaluation import (
    ChannelMismatchError,
    DnsmosScorer,
    EvaluationOptions,
    LengthMismatchError,
    load_pair,
    log_spectral_distance,
    match_files,
    score_signals,
    si_sdr,
)

REPO = Path(__file__).resolve().parents[2]
SR = 48000
FAST = EvaluationOptions(metrics=("lsd", "si_sdr", "pesq", "estoi"))
FAST_CLI = ["--metrics", "lsd,si_sdr,pesq,estoi"]




def noisy(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(wave.shape)
    noise *= np.sqrt(np.mean(wave**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


# metrics


def test_identical_signals_score_perfectly(speech):
    values, notes = score_signals(speech, speech.copy(), SR, FAST)
    assert notes == {}
    assert values["lsd"] == 0.0 and values["lsd_hf"] == 0.0
    assert values["si_sdr"] > 100
    assert values["pesq"] == pytest.approx(4.64, abs=0.01)
    assert values["estoi"] > 0.99


def test_noise_scores_worse_and_si_sdr_measures_the_snr(speech):
    clean, _ = score_signals(speech, speech, SR, FAST)
    light, _ = score_signals(speech, noisy(speech, 20.0), SR, FAST)
    heavy, _ = score_signals(speech, noisy(speech, 5.0), SR, FAST)
    assert light["si_sdr"] == pytest.approx(20.0, abs=0.3)
    assert heavy["si_sdr"] == pytest.approx(5.0, abs=0.3)
    for better, worse in ((clean, light), (light, heavy)):
        assert worse["lsd"] > better["lsd"]
        assert worse["pesq"] < better["pesq"]
        assert worse["estoi"] < better["estoi"]


def test_si_sdr_ignores_gain_lsd_does_not(wide):
    assert si_sdr(wide, 0.3 * wide) > 100
    # a gain g shifts every log-power bin by 2 log10(g)
    assert log_spectral_distance(wide, 0.3 * wide, SR) == pytest.approx(
        -2 * np.log10(0.3), rel=1e-3)


def test_lsd_hears_the_band_pesq_cannot(wide):
    """An 8 kHz low-pass is nearly inaudible to PESQ/ESTOI (16 kHz), plain to LSD at 48 kHz."""
    cut = DEGRADATIONS["lowpass"](wide[None], SR, np.random.default_rng(0), cutoff_hz=8000)[0]
    values, _ = score_signals(wide, cut, SR, FAST)
    assert values["pesq"] > 4.3 and values["estoi"] > 0.98
    assert values["lsd_hf"] > values["lsd"] > 1.0


def test_silence_and_short_signals_give_nan_with_a_reason(speech):
    silent = np.zeros_like(speech)
    values, notes = score_signals(speech, silent, SR, FAST)
    assert all(math.isnan(v) for v in values.values())
    assert set(notes) == set(values) and notes["pesq"] == "estimate is digital silence"
    _, notes = score_signals(silent, speech, SR, FAST)
    assert notes["si_sdr"] == "reference is digital silence"
    short = speech[SR : SR + SR // 10]
    values, notes = score_signals(short, short, SR, FAST)
    assert values["lsd"] == 0.0
    assert math.isnan(values["pesq"]) and "1/4 of a second" in notes["pesq"]
    assert math.isnan(values["estoi"]) and "384 ms" in notes["estoi"]


def test_dnsmos_scores_noise_lower(speech):
    # 4.6 s doubles to one 9.01 s window: one model call per score
    long, rate = load_audio(sorted((REPO / "examples" / "librivox").glob("*.flac"))[0])
    clip = resample(long, rate, SR)[0, : int(4.6 * SR)]
    options = EvaluationOptions(metrics=("dnsmos",))
    scorer = DnsmosScorer()
    clean, _ = score_signals(clip, clip, SR, options, scorer)
    dirty, _ = score_signals(clip, noisy(clip, 0.0), SR, options, scorer)
    assert all(1.0 <= v <= 5.0 for v in clean.values())
    assert dirty["dnsmos_bak"] < clean["dnsmos_bak"] - 0.5
    values, notes = score_signals(clip, np.zeros_like(clip), SR, options, scorer)
    assert math.isnan(values["dnsmos_ovrl"]) and "silence" in notes["dnsmos_ovrl"]
    # doubled, 4.6 s gives one window that starts at 0: exactly the fast mode's tiling
    scorer.fast = True
    assert score_signals(clip, clip, SR, options, scorer)[0] == pytest.approx(clean, abs=1e-6)


# pairing and loading


def test_files_pair_by_relative_path_whatever_the_extension(tmp_path, speech):
    ref, est = tmp_path / "ref", tmp_path / "est"
    for rel in ("a.flac", "sub/b.wav", "dup/c.flac", "dup/c.mp3", "gone.wav"):
        save_audio(ref / rel, speech[None, :SR], SR)
    for rel in ("a.wav", "sub/b.flac", "dup/c.flac.wav", "dup/c.mp3.wav", "extra.wav"):
        save_audio(est / rel, speech[None, :SR], SR)
    matching = match_files(ref, est, group_by_folder=True)
    pairs = {p.key: p for p in matching.pairs}
    assert pairs["a"].estimate == est / "a.wav"
    assert pairs["sub/b"].estimate == est / "sub/b.flac" and pairs["sub/b"].group == "sub"
    assert pairs["dup/c.flac"].estimate == est / "dup/c.flac.wav"
    assert pairs["dup/c.mp3"].estimate == est / "dup/c.mp3.wav"
    assert pairs["gone"].estimate is None
    assert matching.unmatched == [est / "extra.wav"]


def test_length_and_channel_policy(tmp_path, speech):
    save_audio(tmp_path / "ref.flac", resample(speech[None], SR, 16000), 16000)
    save_audio(tmp_path / "near.wav", speech[None, : speech.size - 96], SR)  # 2 ms short
    save_audio(tmp_path / "far.wav", speech[None, : speech.size - 4800], SR)  # 100 ms short
    pair = load_pair(tmp_path / "ref.flac", tmp_path / "near.wav")
    assert pair.reference.shape == pair.estimate.shape == (1, speech.size - 96)
    assert pair.trimmed == 96
    with pytest.raises(LengthMismatchError, match=r"100\.0 ms shorter .*tolerance 10 ms"):
        load_pair(tmp_path / "ref.flac", tmp_path / "far.wav")
    save_audio(tmp_path / "stereo.wav", np.stack([speech, 0.5 * speech]), SR)
    save_audio(tmp_path / "three.wav", np.stack([speech] * 3), SR)
    mixed = load_pair(tmp_path / "ref.flac", tmp_path / "stereo.wav")
    each = load_pair(tmp_path / "ref.flac", tmp_path / "stereo.wav", channels="each")
    assert mixed.estimate.shape[0] == 1 and each.estimate.shape[0] == 2
    assert each.reference.shape == each.estimate.shape
    with pytest.raises(ChannelMismatchError, match="3 channels vs 2"):
        load_pair(tmp_path / "stereo.wav", tmp_path / "three.wav", channels="each")


# the command


@pytest.fixture()
def folders(tmp_path, librivox_files) -> tuple[Path, Path]:
    """ref/{x,y}/*.flac at 16 kHz; est mirrors it as 48 kHz WAVs with noise at 10 dB."""
    ref, est = tmp_path / "ref", tmp_path / "est"
    for i, path in enumerate(librivox_files[:3]):
        wave, rate = load_audio(path)
        wave = wave[:, : 2 * rate]
        rel = Path("x" if i < 2 else "y") / path.stem
        save_audio(ref / f"{rel}.flac", wave, rate)
        save_audio(est / f"{rel}.wav", noisy(resample(wave, rate, SR), 10.0, i), SR,
                   subtype="FLOAT")
    return ref, est


def test_cli_writes_csv_json_and_markdown(folders, tmp_path):
    ref, est = folders
    out = tmp_path / "report"
    assert main(["evaluate", str(ref), str(est), "-o", str(out), "--group-by-folder",
                 *FAST_CLI]) == 0
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {r["group"] for r in rows} == {"x", "y"}
    assert all(r["status"] == "ok" and 9.0 < float(r["si_sdr"]) < 11.0 for r in rows)
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summary"]) == {"x", "y", "all"}
    assert report["summary"]["all"]["means"]["si_sdr"] == pytest.approx(
        np.mean([float(r["si_sdr"]) for r in rows]))
    table = (out / "summary.md").read_text()
    assert "| group | scored |" in table and "PESQ-WB" in table
    assert "| x | 2 |" in table and "| **all** | 3 |" in table


def test_cli_missing_file_fails_unless_allowed(folders, tmp_path, caplog):
    ref, est = folders
    victim = sorted(est.rglob("*.wav"))[0]
    victim.unlink()
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(ref), str(est), "-o", str(tmp_path / "r1"),
                     "--metrics", "si_sdr"]) == 1
    assert "no restored file" in caplog.text
    assert "1 of 3 references have no restored file" in caplog.text
    assert main(["evaluate", str(ref), str(est), "-o", str(tmp_path / "r2"),
                 "--metrics", "si_sdr", "--allow-missing"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r2" / "metrics.csv", newline="")))
    assert [r["status"] for r in rows].count("missing") == 1


def test_cli_silent_and_misaligned_files(folders, tmp_path, caplog):
    ref, est = folders
    silent, short = sorted(est.rglob("*.wav"))[:2]
    frames = sf.info(str(silent)).frames
    save_audio(silent, np.zeros((1, frames), np.float32), SR)
    wave, _ = load_audio(short)
    save_audio(short, wave[:, : -SR // 2], SR)  # half a second short
    out = tmp_path / "report"
    with caplog.at_level(logging.WARNING):
        code = main(["evaluate", str(ref), str(est), "-o", str(out), *FAST_CLI])
    assert code == 1  # the length mismatch is an error; silence alone is not
    assert "500.0 ms shorter" in caplog.text and "sample-aligned" in caplog.text
    report = json.loads((out / "metrics.json").read_text())
    by_key = {f["key"]: f for f in report["files"]}
    silent_row = by_key[silent.relative_to(est).with_suffix("").as_posix()]
    assert silent_row["status"] == "ok" and silent_row["metrics"]["pesq"] is None
    assert silent_row["notes"]["pesq"] == "estimate is digital silence"
    assert by_key[short.relative_to(est).with_suffix("").as_posix()]["status"] == "error"
    table = (out / "summary.md").read_text()
    assert "undefined for 1 files (estimate is digital silence)" in table
    assert "1 errors" in table


def test_cli_kinds_rows_and_plots(folders, tmp_path):
    ref, est = folders
    kinds = tmp_path / "kinds"
    for kind in ("noisy", "same"):
        for path in ref.rglob("*.flac"):
            target = kinds / kind / path.relative_to(ref).with_suffix(".wav")
            source = est / path.relative_to(ref).with_suffix(".wav") if kind == "noisy" else path
            wave, rate = load_audio(source)
            save_audio(target, wave, rate)
    out = tmp_path / "report"
    assert main(["evaluate", str(ref), str(kinds), "-o", str(out), "--kinds", "--metrics",
                 "lsd,si_sdr", "--plots", "--max-plots", "1", "--input-dir", str(kinds)]) == 0
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["same"]["means"]["lsd"] == pytest.approx(0.0, abs=1e-6)
    assert summary["noisy"]["means"]["si_sdr"] == pytest.approx(10.0, abs=0.5)
    plots = sorted(p.relative_to(out / "plots").parts[0] for p in out.rglob("*.png"))
    assert plots == ["noisy", "same"]


def test_testset_builder_layout_pairs_with_evaluate(tmp_path, librivox_files):
    spec = importlib.util.spec_from_file_location(
        "make_testset", REPO / "benchmarks" / "make_testset.py")
    make_testset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_testset)
    records = [{**describe_file(p), "speaker": "librivox:en"} for p in librivox_files[:2]]
    (tmp_path / "copy.flac").write_bytes(librivox_files[0].read_bytes())
    records.append({**records[0], "path": str(tmp_path / "copy.flac")})  # same audio: dropped
    records.append(records[1])  # the same path twice: once
    (tmp_path / "speech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    save_audio(tmp_path / "hiss.wav", np.random.default_rng(0).standard_normal((1, SR)) * 0.1,
               SR)
    (tmp_path / "noise.jsonl").write_text(json.dumps({"path": str(tmp_path / "hiss.wav")}))
    config = tmp_path / "testset.yaml"
    config.write_text(
        f"manifest: {tmp_path / 'speech.jsonl'}\nnoise_manifest: {tmp_path / 'noise.jsonl'}\n"
        "seed: 3\nsample_rate: 48000\nmono: true\nkinds:\n"
        "  noise_5db: {noise: {snr_db: 5, file_prob: 1.0}}\n"
        "  lowpass_4k: {lowpass: {cutoff_hz: 4000}}\n")
    out = tmp_path / "testset"
    assert make_testset.main(["--config", str(config), "--out", str(out)]) == 0
    assert make_testset.main(["--config", str(config), "--out", str(out)]) == 1  # no --force
    clean = sorted(p.relative_to(out / "clean").as_posix() for p in out.glob("clean/**/*.wav"))
    # Of two identical recordings, the one whose path sorts first is kept.
    kept = min(str(tmp_path / "copy.flac"), str(librivox_files[0]))
    assert len(clean) == 2 and f"librivox/{Path(kept).stem}.wav" in clean
    for kind in ("lowpass_4k", "noise_5db"):
        assert sorted(p.relative_to(out / kind).as_posix() for p in out.glob(f"{kind}/**/*.wav")
                      ) == clean
    assert sf.info(str(out / "clean" / clean[0])).samplerate == SR
    assert main(["evaluate", str(out / "clean"), str(out), "--kinds", "--metrics", "si_sdr",
                 "-o", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())["summary"]
    assert summary["noise_5db"]["means"]["si_sdr"] == pytest.approx(5.0, abs=0.5)
    assert "clean" not in summary  # the references' own folder is not a kind
    assert summary["all"]["scored"] == 4


def test_cli_input_scores_inputs_beside_the_restored_files(folders, tmp_path, caplog):
    """--input: the degraded inputs (here at 5 dB SNR, 16 kHz) scored against the same
    references, side by side with the restored files (10 dB) and the difference."""
    ref, est = folders
    inputs = tmp_path / "inputs"
    for i, path in enumerate(sorted(ref.rglob("*.flac"))):
        wave, rate = load_audio(path)
        save_audio(inputs / path.relative_to(ref), noisy(wave, 5.0, 10 + i), rate,
                   subtype="PCM_24")
    out = tmp_path / "report"
    with caplog.at_level(logging.INFO):
        assert main(["evaluate", str(ref), str(est), "-o", str(out), "--metrics",
                     "lsd,si_sdr", "--input", str(inputs)]) == 0
    comparison = json.loads((out / "metrics.json").read_text())["comparison"]["all"]
    si_sdr = comparison["columns"]["si_sdr"]
    assert comparison["files"] == 3 and si_sdr["files"] == 3
    assert si_sdr["input"] == pytest.approx(5.0, abs=0.5)
    assert si_sdr["restored"] == pytest.approx(10.0, abs=0.5)
    assert si_sdr["difference"] == pytest.approx(si_sdr["restored"] - si_sdr["input"])
    # The "restored" files' noise fills the band above the inputs' 8 kHz, empty in the
    # references too: their LSD is worse, and the table says so.
    assert comparison["columns"]["lsd"]["difference"] > 0
    rows = list(csv.DictReader(open(out / "metrics.csv", newline="")))
    assert all(float(r["input_si_sdr"]) < float(r["si_sdr"]) for r in rows)
    table = (out / "summary.md").read_text()
    assert "| group | files | metric | input | restored | difference |" in table
    row = next(line for line in table.splitlines() if "SI-SDR" in line and "**all**" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3" and cells[5].startswith("+") and cells[5].endswith("(better)")
    assert float(cells[5].split()[0]) == pytest.approx(float(cells[4]) - float(cells[3]),
                                                       abs=0.11)
    lsd_row = next(line for line in table.splitlines() if "| 3 | LSD ↓" in line)
    assert lsd_row.rstrip(" |").endswith("(worse)") and "| +" in lsd_row
    assert "Input vs restored" in caplog.text  # printed, not only written


def test_input_missing_files_are_named_as_inputs(folders, tmp_path, caplog):
    ref, est = folders
    inputs = tmp_path / "inputs"
    first = sorted(ref.rglob("*.flac"))[0]
    wave, rate = load_audio(first)
    save_audio(inputs / first.relative_to(ref), wave, rate)
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(ref), str(est), "-o", str(tmp_path / "r"), "--metrics",
                     "si_sdr", "--input", str(inputs)]) == 0
    assert caplog.text.count("no input file") == 2
    comparison = json.loads((tmp_path / "r" / "metrics.json").read_text())["comparison"]
    assert comparison["all"]["files"] == 1  # the means cover the files scored on both sides

"""Manifests: indexing real audio files, bad-file reporting, JSONL I/O, filters, splits, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli import data as data_cli
from hireslm.data.manifest import (
    assign_splits,
    filter_records,
    find_audio_files,
    index_folders,
    read_manifest,
    summarize,
    write_manifest,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "librivox").glob("*.flac"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real speech at several rates/channels/formats in speaker folders, plus three bad files."""
    root = tmp_path_factory.mktemp("corpus")
    speech, sr = load_audio(EXAMPLES[1])  # 2.99 s, 16 kHz
    other, _ = load_audio(EXAMPLES[4])  # 3.29 s
    files = {
        "mono16": save_audio(root / "alice" / "a.flac", speech, sr),
        "stereo44": save_audio(
            root / "alice" / "b.wav",
            np.concatenate([resample(speech, sr, 44100)] * 2, axis=0), 44100),
        "ogg48": save_audio(root / "bob" / "c.ogg", resample(other, sr, 48000), 48000,
                            subtype="VORBIS"),
        "wide48": save_audio(root / "bob" / "deep" / "d.flac", _widen(other, sr), 48000),
    }
    (root / "bob" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(200))
    sf.write(root / "bob" / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    nan = speech.copy()
    nan[0, 1000:1010] = np.nan
    sf.write(root / "bob" / "nan.wav", nan.T, sr, subtype="FLOAT")
    (root / "bob" / "notes.txt").write_text("not audio")
    files["root"] = root
    return files


def _widen(wave: np.ndarray, sr: int) -> np.ndarray:
    """The speech at 48 kHz with a faint full-band noise floor, so it measures full-band."""
    up = resample(wave, sr, 48000)
    rng = np.random.default_rng(0)
    return (up + 1e-3 * rng.standard_normal(up.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def indexed(corpus: dict[str, Path]) -> tuple[list[dict], list[dict]]:
    return index_folders([corpus["root"]], workers=1, speaker_from="parent")


def test_find_audio_files_recurses_and_filters_extensions(corpus):
    found = find_audio_files([corpus["root"]])
    assert corpus["wide48"].resolve() in found
    assert all(p.suffix in {".wav", ".flac", ".ogg"} for p in found)
    assert len(found) == 7
    assert find_audio_files([corpus["root"]], extensions=["flac"]) == sorted(
        [corpus["mono16"].resolve(), corpus["wide48"].resolve()])
    with pytest.raises(FileNotFoundError):
        find_audio_files([corpus["root"] / "missing"])


def test_index_records_real_properties(corpus, indexed):
    records, _ = indexed
    by_path = {r["path"]: r for r in records}
    assert len(records) == 4
    mono = by_path[str(corpus["mono16"].resolve())]
    assert (mono["sample_rate"], mono["channels"], mono["frames"]) == (16000, 1, 47840)
    assert mono["duration"] == pytest.approx(2.99)
    assert mono["speaker"] == "alice"
    stereo = by_path[str(corpus["stereo44"].resolve())]
    assert (stereo["sample_rate"], stereo["channels"]) == (44100, 2)
    assert stereo["duration"] == pytest.approx(2.99, abs=1e-3)
    ogg = by_path[str(corpus["ogg48"].resolve())]
    assert ogg["sample_rate"] == 48000 and ogg["duration"] == pytest.approx(3.29, abs=0.01)
    assert by_path[str(corpus["wide48"].resolve())]["speaker"] == "deep"
    # Band-limited 16 kHz speech stays under its 8 kHz Nyquist limit even when resampled up.
    for key in ("mono16", "stereo44", "ogg48"):
        assert 2000 < by_path[str(corpus[key].resolve())]["bandwidth_hz"] <= 8100
    assert by_path[str(corpus["wide48"].resolve())]["bandwidth_hz"] > 20000
    for record in records:
        assert Path(record["path"]).is_absolute()
        assert -40 < record["loudness_lufs"] < 0


def test_index_reports_bad_files_without_crashing(indexed):
    _, failures = indexed
    names = sorted(Path(f["path"]).name for f in failures)
    assert names == ["corrupt.wav", "empty.wav", "nan.wav"]
    errors = {Path(f["path"]).name: f["error"] for f in failures}
    assert "NaN" in errors["nan.wav"]
    assert "no samples" in errors["empty.wav"]
    assert "corrupt.wav" in errors["corrupt.wav"]


def test_speaker_rules(corpus):
    records, _ = index_folders([corpus["root"] / "bob"], speaker_from="grandparent")
    assert {Path(r["path"]).name: r["speaker"] for r in records} == {
        "c.ogg": corpus["root"].name, "d.flac": "bob"}
    records, _ = index_folders([corpus["root"] / "alice"], speaker_from="stem-prefix")
    assert [r["speaker"] for r in records] == ["a", "b"]
    records, _ = index_folders([corpus["root"] / "alice"], speaker_from=lambda p: None)
    assert all("speaker" not in r for r in records)
    with pytest.raises(ValueError, match="speaker_from"):
        index_folders([corpus["root"]], speaker_from="folder")


def test_parallel_index_matches_serial(corpus, indexed):
    records, failures = index_folders([corpus["root"]], workers=2, speaker_from="parent")
    assert records == indexed[0]
    assert [f["path"] for f in failures] == [f["path"] for f in indexed[1]]


def test_manifest_round_trip_is_atomic(tmp_path, indexed):
    records, _ = indexed
    path = write_manifest(tmp_path / "sub" / "m.jsonl", records)
    assert read_manifest(path) == records
    assert len(path.read_text().splitlines()) == len(records)
    assert [p.name for p in path.parent.iterdir()] == ["m.jsonl"]  # no temp file left


def test_read_manifest_names_the_bad_line(tmp_path, indexed):
    good = json.dumps(indexed[0][0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n\n" + '{"path": "x", "duration": 1\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: malformed JSON"):
        read_manifest(bad)
    bad.write_text(good + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r":2: expected a JSON object"):
        read_manifest(bad)
    bad.write_text('{"path": "/x.wav", "duration": 1.0}\n')
    with pytest.raises(ValueError, match=r":1: record lacks sample_rate, channels, frames"):
        read_manifest(bad)


def test_filter_records(indexed):
    records, _ = indexed
    assert len(filter_records(records, min_bandwidth_hz=16000)) == 1
    assert len(filter_records(records, min_duration=3.0)) == 2
    assert len(filter_records(records, max_duration=3.0)) == 2
    assert {r["speaker"] for r in filter_records(records, speakers=["alice"])} == {"alice"}
    assert len(filter_records(records, exclude_speakers=["alice", "deep"])) == 1
    split = assign_splits(records, {"train": 1.0})
    assert len(filter_records(split, split="train")) == 4
    assert filter_records(records, split="train") == []  # records without a split fail it


def test_assign_splits_is_deterministic_and_groups_speakers():
    records = [{"path": f"/data/spk{i % 40}/utt{i}.wav", "speaker": f"spk{i % 40}",
                "duration": 1.0, "sample_rate": 16000, "channels": 1, "frames": 16000}
               for i in range(400)]
    first = assign_splits(records, by="speaker")
    again = assign_splits(list(reversed(records[:200])), by="speaker")
    by_path = {r["path"]: r["split"] for r in first}
    assert all(by_path[r["path"]] == r["split"] for r in again)
    per_speaker: dict[str, set[str]] = {}
    for r in first:
        per_speaker.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_speaker.values())
    by_file = assign_splits(records, {"train": 0.8, "test": 0.2}, by="file")
    shares = np.mean([r["split"] == "test" for r in by_file])
    assert 0.1 < shares < 0.3
    assert "split" not in records[0]  # inputs untouched
    with pytest.raises(ValueError):
        assign_splits(records, by="language")


def test_summarize(indexed):
    stats = summarize(indexed[0])
    assert stats["files"] == 4 and stats["speakers"] == 3
    assert stats["hours"] == pytest.approx((2.99 * 2 + 3.29 * 2) / 3600, abs=1e-3)
    assert stats["sample_rates"] == {"16000": 1, "44100": 1, "48000": 2}
    assert sum(stats["bandwidth_histogram"].values()) == 4
    assert stats["bandwidth_histogram"][">=20k"] == 1


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_cli.add_arguments(parser)
    return data_cli.run(parser.parse_args(argv))


def test_cli_index(corpus, tmp_path, capsys):
    out = tmp_path / "m.jsonl"
    code = _cli(["index", str(corpus["root"]), "-o", str(out), "--workers", "1",
                 "--speaker-from", "parent", "--min-bandwidth", "16000", "--split-by", "speaker"])
    assert code == 0
    records = read_manifest(out)
    assert [Path(r["path"]).name for r in records] == ["d.flac"]
    assert records[0]["speaker"] == "deep" and records[0]["split"] in {"train", "valid", "test"}
    printed = capsys.readouterr().out
    assert "1 of 4 readable files kept, 3 failed" in printed
    assert "corrupt.wav" in printed
    assert _cli(["index", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.jsonl"),
                 "--workers", "1"]) == 1

"""Progress: every second of every file is credited once, so the bar ends at 100%."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli.main import main
from hireslm.jobs.restore_one import restore_file
from hireslm.pipeline import RestorationPipeline, RestoreOptions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> RestorationPipeline:
    return RestorationPipeline.from_pretrained(make_tiny_release(tmp_path_factory.mktemp("r")))


def _speech(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    wave, sr = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    wave = resample(wave, sr, rate)[:, : int(seconds * rate)]
    return np.concatenate([wave, 0.5 * wave])[:channels]


@pytest.mark.parametrize("seconds,chunk,batch,channels,keep", [
    (3.1, 8.0, 4, 1, "auto"),   # one chunk: its overlap was never credited (84%)
    (5.3, 1.0, 1, 1, "auto"),   # many chunks, one per batch
    (5.3, 1.0, 3, 2, "none"),   # batches of chunks of a stereo file
    (2.0, 0.6, 4, 1, "input"),
])
def test_credited_seconds_sum_to_the_duration(pipeline, tmp_path, seconds, chunk, batch,
                                              channels, keep):
    source = save_audio(tmp_path / "in.flac", _speech(16000, seconds, channels), 16000)
    credited: list[float] = []
    options = RestoreOptions(chunk_seconds=chunk, overlap_seconds=0.25, batch_size=batch,
                             keep=keep)
    result = restore_file(pipeline, source, tmp_path / "out.wav", options,
                          on_progress=credited.append)
    assert all(c > 0 for c in credited)
    assert abs(sum(credited) - result.duration_s) < 1 / 48000
    assert abs(sum(credited) - sf.info(str(source)).duration) < 1 / 48000


def test_full_band_input_passed_through_is_credited(pipeline, tmp_path):
    """A clean full-band file skips the models; its blocks are credited as they pass."""
    rng = np.random.default_rng(0)
    wave = _speech(48000, 2.0) + 1e-4 * rng.standard_normal((1, 96000)).astype(np.float32)
    source = save_audio(tmp_path / "in.wav", wave, 48000, subtype="FLOAT")
    credited: list[float] = []
    result = restore_file(pipeline, source, tmp_path / "out.wav", on_progress=credited.append)
    assert abs(sum(credited) - result.duration_s) < 1 / 48000


def test_the_bar_ends_at_100_percent_in_audio_seconds_per_second(tmp_path, capsys):
    release = make_tiny_release(tmp_path / "release")
    inputs = tmp_path / "in"
    for i, seconds in enumerate((1.3, 3.1, 2.2)):  # short clips: each file's overlap counted
        save_audio(inputs / f"{i}.wav", _speech(16000, seconds), 16000)
    assert main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--checkpoint",
                 str(release), "--chunk-seconds", "1.0"]) == 0
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    bar = [line for line in last if line.startswith("restoring")][-1]
    assert "100%" in bar and "6.6/6.6 s of audio" in bar, bar
    assert "(audio s per s)" in bar, bar


def test_a_failed_file_is_credited_too(pipeline, tmp_path, capsys):
    """A file that fails after its header was read (NaN samples) still counts as done."""
    nan = np.zeros((1, 16000), np.float32)
    nan[0, 8000] = np.nan
    source = tmp_path / "nan.wav"
    sf.write(source, nan.T, 16000, subtype="FLOAT")
    credited: list[float] = []
    with pytest.raises(ValueError, match="NaN"):
        restore_file(pipeline, source, tmp_path / "out.wav", on_progress=credited.append)
    assert sum(credited) == pytest.approx(1.0)
    release = make_tiny_release(tmp_path / "release")
    save_audio(tmp_path / "in" / "good.wav", _speech(16000, 1.5), 16000)
    source.rename(tmp_path / "in" / "nan.wav")
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(release), "--chunk-seconds", "1.0"]) == 1
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    bar = [line for line in lines if line.startswith("restoring")][-1]
    assert "100%" in bar and "2.5/2.5 s of audio" in bar, bar

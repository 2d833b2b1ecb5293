"""Formats only FFmpeg reads (M4A/AAC, WMA, AMR, video soundtracks), made here with PyAV from
real speech, read through hireslm.audio and restored through ``hireslm restore``."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from release_factory import make_tiny_release

from hireslm.analysis.first_pass import analyse_source
from hireslm.audio import audio_info, iter_audio_blocks, load_audio, resample
from hireslm.audio.errors import UnreadableAudioError, UnsupportedAudioError
from hireslm.audio.io import AUDIO_EXTENSIONS, stream_note
from hireslm.audio.source import FileSource
from hireslm.cli.analyze import analysis_record
from hireslm.cli.main import main
from hireslm.data.manifest import describe_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


def _speech(rate: int, channels: int, seconds: float = 2.5) -> np.ndarray:
    wave, sr = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    wave = resample(wave, sr, rate)[:, : int(seconds * rate)]
    return np.concatenate([wave, 0.6 * wave])[:channels]


def encode(path: Path, wave: np.ndarray, rate: int, codec: str, *, container: str | None = None,
           bit_rate: int | None = None, video: bool = False) -> Path:
    """Write ``(C, N)`` float audio with FFmpeg's ``codec`` (and a tiny video stream)."""
    layout = "mono" if wave.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container) as out:
        if video:
            picture = out.add_stream("mpeg4", rate=5)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        sample_format = stream.codec_context.codec.audio_formats[0].name
        for start in range(0, wave.shape[1], 4096):
            block = wave[:, start:start + 4096]
            if not sample_format.endswith("p"):  # packed: one plane, channels interleaved
                block = block.T.reshape(1, -1)
            if sample_format.startswith("s16"):
                block = np.round(block * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=block.dtype),
                                               format=sample_format, layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if video:
            for i in range(int(wave.shape[1] / rate * 5)):
                image = av.VideoFrame.from_ndarray(
                    np.full((48, 64, 3), 40 * (i % 6), np.uint8), format="rgb24")
                image.pts = i
                out.mux(picture.encode(image))
            out.mux(picture.encode(None))
    return path


CASES = [  # name, rate, channels, codec, container, bit rate, video
    ("speech.m4a", 44100, 2, "aac", None, None, False),
    ("speech.wma", 44100, 2, "wmav2", "asf", 128000, False),
    ("speech.amr", 8000, 1, "libopencore_amrnb", "amr", None, False),
    ("lecture.mp4", 22050, 1, "aac", None, None, True),
    ("clip.webm", 48000, 2, "libopus", None, None, False),
    ("interview.mkv", 16000, 1, "aac", "matroska", None, True),
]


@pytest.mark.parametrize("name,rate,channels,codec,container,bit_rate,video", CASES)
def test_ffmpeg_only_formats_are_read_exactly(tmp_path, name, rate, channels, codec, container,
                                              bit_rate, video):
    assert Path(name).suffix in AUDIO_EXTENSIONS
    source = _speech(rate, channels)
    path = encode(tmp_path / name, source, rate, codec, container=container,
                  bit_rate=bit_rate, video=video)
    info = audio_info(path)
    assert (info.samplerate, info.channels) == (rate, channels)
    wave, sr = load_audio(path)
    blocks = list(iter_audio_blocks(path, 10000))
    # The frame count is exact: what load_audio and the blocks yield, which the output's
    # length is made from; codecs pad (or, encoding WMA here, drop) up to a frame or two.
    assert sr == rate and wave.shape == (channels, info.frames)
    assert sum(b.shape[1] for b in blocks) == info.frames
    assert all(b.shape[1] == 10000 for b in blocks[:-1])
    assert np.array_equal(np.concatenate(blocks, axis=1), wave)
    assert abs(info.frames - source.shape[1]) < 3000
    # It is the speech (lossy, so compared by level, and by correlation where aligned).
    level = np.sqrt(np.mean(wave ** 2)) / np.sqrt(np.mean(source ** 2))
    assert 0.7 < level < 1.4, level


def test_overlapping_blocks_match_soundfile_semantics(tmp_path):
    path = encode(tmp_path / "speech.m4a", _speech(16000, 1), 16000, "aac")
    wave, _ = load_audio(path)
    blocks = list(iter_audio_blocks(path, 8000, overlap_frames=2000))
    assert np.array_equal(blocks[1][:, :2000], blocks[0][:, -2000:])
    assert blocks[-1].shape[1] > 2000
    stitched = np.concatenate([blocks[0]] + [b[:, 2000:] for b in blocks[1:]], axis=1)
    assert np.array_equal(stitched, wave)


def test_a_video_without_sound_says_so(tmp_path):
    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as out:
        picture = out.add_stream("mpeg4", rate=5)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            image.pts = i
            out.mux(picture.encode(image))
        out.mux(picture.encode(None))
    with pytest.raises(UnreadableAudioError, match="no audio stream .*video"):
        audio_info(path)


def test_a_cut_m4a_is_reported_not_skipped(tmp_path):
    good = encode(tmp_path / "good.m4a", _speech(16000, 1), 16000, "aac")
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UnreadableAudioError, match="cut.m4a"):
        audio_info(cut)


def test_training_refuses_what_it_cannot_seek_in_and_analysis_calls_aac_lossy(tmp_path):
    path = encode(tmp_path / "voice.m4a", _speech(16000, 1), 16000, "aac", bit_rate=32000)
    with pytest.raises(UnreadableAudioError, match="convert it to FLAC or WAV"):
        describe_file(path)
    assert analysis_record(path)["analysis"][0]["lossy_format"] is True


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


def test_restore_reads_m4a_and_reports_what_it_cannot(tmp_path, release):
    inputs = tmp_path / "in"
    inputs.mkdir()
    encode(inputs / "speech.m4a", _speech(44100, 2), 44100, "aac")
    encode(inputs / "lecture.mp4", _speech(22050, 1), 22050, "aac", video=True)
    (inputs / "broken.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(300))
    out = tmp_path / "out"
    code = main(["restore", str(inputs), "-o", str(out), "--checkpoint", str(release),
                 "--chunk-seconds", "1.0", "--no-progress"])
    assert code == 1  # one file failed, and says so
    records = {Path(r["input"]).name: r for r in map(
        json.loads, (out / "restore_report.jsonl").read_text().splitlines())}
    assert records["broken.m4a"]["status"] == "failed"
    assert "broken.m4a" in records["broken.m4a"]["error"]
    for name, channels in (("speech.m4a", 2), ("lecture.mp4", 1)):
        source = audio_info(inputs / name)
        restored = audio_info(out / Path(name).with_suffix(".wav"))
        assert records[name]["status"] == "ok"
        assert (restored.samplerate, restored.channels) == (48000, channels)
        assert restored.frames == round(source.frames * 48000 / source.samplerate)


def test_a_text_file_named_flac_is_not_audio(tmp_path):
    path = tmp_path / "notes.flac"
    path.write_text("not audio\n")
    with pytest.raises(UnreadableAudioError, match="notes.flac: not readable audio"):
        audio_info(path)


def _two_streams(path: Path, waves: list[np.ndarray], rate: int,
                 default: int | None = None) -> Path:
    """A Matroska file with one mono AAC stream per wave (``default``: the one flagged)."""
    with av.open(str(path), "w", format="matroska") as out:
        streams = []
        for i in range(len(waves)):
            stream = out.add_stream("aac", rate=rate, layout="mono")
            if default is not None:
                stream.disposition = av.stream.Disposition(int(i == default))
            streams.append(stream)
        for stream, wave in zip(streams, waves, strict=True):
            for start in range(0, wave.shape[1], 4096):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(wave[:, start:start + 4096], dtype=np.float32),
                    format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


def _level(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))


def test_of_two_audio_streams_the_one_with_sound_is_read_and_said(tmp_path):
    speech = _speech(16000, 1)
    path = _two_streams(tmp_path / "film.mkv", [np.zeros_like(speech), speech], 16000)
    info = audio_info(path)
    assert (info.stream_index, info.audio_streams) == (1, 2)
    assert "first with sound" in info.stream_choice
    assert stream_note(info).startswith("audio stream 2 of 2 read")
    wave, _ = load_audio(path)
    blocks = list(iter_audio_blocks(path, 10000))
    assert wave.shape[1] == info.frames == sum(b.shape[1] for b in blocks)
    assert 0.7 < _level(wave) / _level(speech) < 1.4
    assert analyse_source(FileSource(path)).peak > 0.1  # the first pass reads the speech too
    # Asked for, the silent stream is read; a stream that is not there is refused.
    silent = audio_info(path, stream=0)
    assert (silent.stream_index, silent.stream_choice) == (0, "the one asked for")
    assert not np.abs(load_audio(path, stream=0)[0]).max() > 1e-6
    assert not np.abs(np.concatenate(list(iter_audio_blocks(path, 9000, stream=0)), 1)).any()
    with pytest.raises(UnsupportedAudioError, match="stream 2 .*holds 2"):
        audio_info(path, stream=2)


def test_the_default_stream_is_read_unless_it_is_silent(tmp_path):
    speech, other = _speech(16000, 1), 0.5 * _speech(16000, 1)[:, ::-1]
    flagged = _two_streams(tmp_path / "flagged.mkv", [speech, other], 16000, default=1)
    info = audio_info(flagged)
    assert (info.stream_index, info.stream_choice) == (1, "the container's default audio stream")
    assert 0.35 < _level(load_audio(flagged)[0]) / _level(speech) < 0.7
    mute = _two_streams(tmp_path / "mute_default.mkv", [np.zeros_like(speech), speech], 16000,
                        default=0)
    info = audio_info(mute)
    assert info.stream_index == 1 and "default (stream 1) is digital silence" in stream_note(info)
    single = audio_info(encode(tmp_path / "one.m4a", speech, 16000, "aac"))
    assert (single.audio_streams, stream_note(single)) == (1, None)


def test_a_file_libsndfile_reads_has_one_stream(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, _speech(16000, 1).T, 16000)
    info = audio_info(path, stream=0)
    assert (info.stream_index, info.audio_streams, stream_note(info)) == (0, 1, None)
    for read in (lambda p: audio_info(p, stream=1), lambda p: load_audio(p, stream=1),
                 lambda p: list(iter_audio_blocks(p, 1000, stream=1))):
        with pytest.raises(UnsupportedAudioError, match="stream 1 .*holds 1"):
            read(path)


def test_a_restore_says_which_stream_it_read_and_restores_the_one_asked_for(release, tmp_path,
                                                                            caplog):
    speech = _speech(16000, 1)
    (tmp_path / "in").mkdir()
    _two_streams(tmp_path / "in" / "film.mkv", [np.zeros_like(speech), speech], 16000)
    for name, flags in {"chosen": [], "asked": ["--stream", "0"]}.items():
        assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / name),
                     "--checkpoint", str(release), "--no-progress", "--no-html",
                     *flags]) == 0
    chosen, asked = (json.loads((tmp_path / name / "restore_report.jsonl").read_text())
                     for name in ("chosen", "asked"))
    assert chosen["status"] == "ok"
    assert any(w.startswith("audio stream 2 of 2 read") for w in chosen["warnings"])
    assert asked["status"] == "silent"  # stream 0 is the digital silence
    assert any("the one asked for" in w for w in asked["warnings"])
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "bad"),
                 "--checkpoint", str(release), "--stream", "-1"]) == 2

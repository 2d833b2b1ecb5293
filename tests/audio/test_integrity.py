"""Files that hold less, or other, audio than their headers say: cut copies, lying frame
counts, a rate change mid-stream. Made here from real speech (LibriVox)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from hireslm.analysis.first_pass import analyse_source
from hireslm.audio import audio_info, iter_audio_blocks, load_audio, resample
from hireslm.audio.errors import UnsupportedAudioError
from hireslm.audio.io import header_shortfall
from hireslm.audio.source import FileSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


def _speech(index: int = 0) -> tuple[np.ndarray, int]:
    """One of the LibriVox clips: ``(1, N)`` float32 at 16 kHz."""
    return load_audio(sorted(EXAMPLES.glob("*.flac"))[index])


def _mp3(path: Path, wave: np.ndarray, rate: int) -> Path:
    """``wave`` as a 64 kbps MP3 (libsndfile's LAME, with its Info frame)."""
    sf.write(path, wave.T, rate, format="MP3", bitrate_mode="CONSTANT",
             compression_level=0.5)
    return path


def _first_half(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("overlap", [0, 1600])
def test_a_cut_mp3_yields_only_what_decodes(tmp_path, overlap):
    # Another recording read first leaves its samples in memory the cut file's blocks reused.
    other, _ = _speech(1)
    wave, rate = _speech(0)
    cut = _first_half(_mp3(tmp_path / "whole.mp3", wave, rate), tmp_path / "cut.mp3")
    assert sf.info(str(cut)).frames == wave.shape[1]  # the header still announces it all
    list(iter_audio_blocks(_mp3(tmp_path / "other.mp3", other, rate), 16000))
    decoded, _ = load_audio(cut)
    assert 0.3 * wave.shape[1] < decoded.shape[1] < 0.7 * wave.shape[1]
    blocks = list(iter_audio_blocks(cut, 16000, overlap_frames=overlap))
    assert all(b.shape[1] == 16000 for b in blocks[:-1])
    stitched = np.concatenate([blocks[0]] + [b[:, overlap:] for b in blocks[1:]], axis=1)
    # Reading in blocks seeks libmpg123 after each one, which re-decodes a frame: 1e-7 apart.
    assert stitched.shape == decoded.shape
    assert np.allclose(stitched, decoded, atol=1e-6, rtol=0)
    assert float(np.abs(stitched).max()) <= 1.0


def _set_info_frames(path: Path, frames: int) -> None:
    """Rewrite the MPEG frame count in the Info/Xing tag of ``path``'s first frame."""
    data = bytearray(path.read_bytes())
    at = max(data.find(b"Info", 0, 64), data.find(b"Xing", 0, 64))
    assert at > 0 and data[at + 7] & 1, "no frame count in the tag"
    data[at + 8:at + 12] = frames.to_bytes(4, "big")
    path.write_bytes(bytes(data))


def test_a_cut_mp3_counts_what_decodes_and_says_it_is_truncated(tmp_path):
    wave, rate = _speech(0)
    whole = _mp3(tmp_path / "whole.mp3", wave, rate)
    cut = _first_half(whole, tmp_path / "cut.mp3")
    decoded, _ = load_audio(cut)
    info = audio_info(cut)
    assert info.frames == decoded.shape[1] == sum(b.shape[1] for b in iter_audio_blocks(cut, 7000))
    assert info.announced_frames == wave.shape[1]
    assert abs(info.duration - decoded.shape[1] / rate) < 1e-9
    assert "truncated" in header_shortfall(info)
    intact = audio_info(whole)
    assert intact.frames == wave.shape[1] and header_shortfall(intact) is None


def test_an_mp3_announcing_an_hour_restores_its_one_second(tmp_path):
    wave, rate = _speech(0)
    path = _mp3(tmp_path / "one_second.mp3", wave[:, :rate], rate)
    _set_info_frames(path, 3600 * rate // 576)  # MPEG-2 layer III: 576 samples a frame
    assert sf.info(str(path)).duration > 3500
    info = audio_info(path)
    assert rate <= info.frames < 1.2 * rate
    analysis = analyse_source(FileSource(path))
    assert analysis.frames == info.frames
    assert abs(analysis.frames_48k - info.frames * 3) <= 1
    assert any("truncated" in w for w in analysis.warnings)
    assert load_audio(path)[0].shape[1] == info.frames


def test_whole_mp3s_are_counted_as_announced(tmp_path):
    for rate, channels in ((8000, 1), (22050, 2), (44100, 2), (48000, 1)):
        wave, source_rate = _speech(0)
        wave = resample(wave, source_rate, rate)[:, : 3 * rate]
        wave = np.concatenate([wave, 0.5 * wave])[:channels]
        for mode in ("CONSTANT", "VARIABLE"):
            path = tmp_path / f"{rate}_{mode}.mp3"
            sf.write(path, wave.T, rate, format="MP3", bitrate_mode=mode)
            info = audio_info(path)
            assert (info.frames, info.announced_frames) == (wave.shape[1], wave.shape[1])
            assert header_shortfall(info) is None


def _without_first_frame(path: Path) -> Path:
    """Drop the first frame of an MPEG-1 layer III file (libsndfile's Info tag, no ID3)."""
    data = path.read_bytes()
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[data[2] >> 4]
    rate = (44100, 48000, 32000)[(data[2] >> 2) & 3]
    assert data[1] >> 3 & 3 == 3 and (data[1] >> 1) & 3 == 1, "not MPEG-1 layer III"
    length = 144 * kbps * 1000 // rate + ((data[2] >> 1) & 1)
    assert b"Info" in data[:length] or b"Xing" in data[:length]
    path.write_bytes(data[length:])
    return path


@pytest.mark.parametrize("tag", ["with Info tag", "untagged"])
def test_an_mp3_that_changes_rate_is_refused(tmp_path, tag):
    wave, rate = _speech(0)
    fast = _mp3(tmp_path / "a.mp3", resample(wave, rate, 48000)[:, :96000], 48000)
    if tag == "untagged":  # libsndfile then guesses the length: the 16 kHz part played 3x fast
        _without_first_frame(fast)
    slow = _mp3(tmp_path / "b.mp3", wave[:, 32000:64000], rate)
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(fast.read_bytes() + slow.read_bytes())
    expected = "changes from 1 channel at 48000 Hz to 1 channel at 16000 Hz after about 2.[01] s"
    for read in (audio_info, load_audio, lambda p: list(iter_audio_blocks(p, 16000))):
        with pytest.raises(UnsupportedAudioError, match=expected):
            read(joined)
    # Each part alone is read, and so is the same rate joined twice.
    assert audio_info(slow).frames == 32000
    twice = tmp_path / "twice.mp3"
    twice.write_bytes(slow.read_bytes() * 2)
    assert audio_info(twice).samplerate == rate
    assert load_audio(fast)[0].shape[1] >= 96000 - 1152


def test_mp3s_with_id3_tags_and_other_encoders_are_not_refused(tmp_path):
    wave, rate = _speech(0)
    path = tmp_path / "lame.mp3"
    with av.open(str(path), "w", format="mp3") as out:  # FFmpeg's LAME: ID3v2, Xing, ID3v1
        out.metadata["title"] = "x" * 3000
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.round(wave * 2**30).astype(np.int32),
                                           format="s32p", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert path.read_bytes()[:3] == b"ID3"
    info = audio_info(path)
    assert info.frames == wave.shape[1] and header_shortfall(info) is None
    assert sum(b.shape[1] for b in iter_audio_blocks(path, 10000)) == info.frames


@pytest.mark.parametrize("suffix,fmt,subtype", [
    ("wav", "WAV", "PCM_16"), ("wav", "WAVEX", "PCM_24"), ("wav", "RF64", "PCM_16"),
    ("aiff", "AIFF", "PCM_16"), ("aifc", "AIFF", "FLOAT"), ("au", "AU", "PCM_16"),
    ("snd", "AU", "ULAW"), ("caf", "CAF", "PCM_16"), ("caf", "CAF", "FLOAT"),
    ("w64", "W64", "PCM_24"),
])
def test_cut_uncompressed_files_say_they_are_truncated(tmp_path, suffix, fmt, subtype):
    wave, rate = _speech(0)
    wave = np.concatenate([wave, 0.5 * wave])  # stereo
    whole = tmp_path / f"whole.{suffix}"
    sf.write(whole, wave.T, rate, format=fmt, subtype=subtype)
    intact = audio_info(whole)
    assert intact.frames == wave.shape[1] and header_shortfall(intact) is None
    cut = _first_half(whole, tmp_path / f"cut.{suffix}")
    info = audio_info(cut)
    assert 0.4 * wave.shape[1] < info.frames < 0.6 * wave.shape[1]
    assert sum(b.shape[1] for b in iter_audio_blocks(cut, 10000)) == info.frames
    assert "truncated" in (header_shortfall(info) or "")


@pytest.mark.parametrize("damage", ["two joined", "VBR untagged"])
def test_an_mp3_libsndfile_stops_short_in_is_read_to_its_last_frame(tmp_path, damage):
    wave, rate = _speech(0)
    wave = resample(wave, rate, 44100)
    part = tmp_path / "part.mp3"
    sf.write(part, wave.T, 44100, format="MP3", bitrate_mode="VARIABLE")
    path = tmp_path / "damaged.mp3"
    if damage == "two joined":  # the first part's Info tag announces the first part only
        path.write_bytes(part.read_bytes() * 2)
        expected = 2 * wave.shape[1]
    else:  # without its Xing tag libmpg123 guesses the length from the first frame: half
        path.write_bytes(_without_first_frame(part).read_bytes())
        expected = wave.shape[1]
    assert sf.info(str(path)).frames < 0.6 * expected
    info = audio_info(path)
    # Joined, the second part's tag frame, delay and padding are in the stream: 0.06 s.
    assert abs(info.frames - expected) < 4410 and info.samplerate == 44100
    assert info.subtype == "MP3"  # read by FFmpeg, still known for a lossy codec
    decoded, _ = load_audio(path)
    blocks = iter_audio_blocks(path, 30000)
    assert decoded.shape[1] == info.frames == sum(b.shape[1] for b in blocks)
    assert header_shortfall(info) is None

"""The audio front end on real files: formats, resampling, loudness, mel, bandwidth, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from hireslm.audio import (
    AudioConfig,
    EmptyAudioError,
    LogMelSpectrogram,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
    check_audio,
    estimate_bandwidth,
    iter_audio_blocks,
    load_audio,
    measure_loudness,
    normalize_loudness,
    resample,
    save_audio,
)
from hireslm.audio.loudness import LoudnessMeter

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"
CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "audio.yaml"


def _speech_48k() -> np.ndarray:
    """Real speech (LibriVox, 16 kHz) resampled to 48 kHz, shape (1, N)."""
    wave, sr = load_audio(sorted(EXAMPLES.glob("*.flac"))[0])
    return resample(wave, sr, 48000)


def _sine(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]


# Lossless formats must round-trip to 16-bit precision; lossy ones keep length and level.
@pytest.mark.parametrize(
    "suffix,subtype,tolerance",
    [("wav", "PCM_16", 1e-4), ("wav", "FLOAT", 0.0), ("flac", "PCM_24", 1e-6),
     ("aiff", "PCM_16", 1e-4), ("ogg", None, None), ("opus", None, None), ("mp3", None, None)],
)
def test_round_trip_every_format(tmp_path, suffix, subtype, tolerance):
    wave = np.concatenate([_speech_48k()[:, :48000]] * 2)  # stereo, channels kept
    path = save_audio(tmp_path / f"x.{suffix}", wave, 48000, subtype=subtype)
    loaded, sr = load_audio(path)
    assert sr == 48000 and loaded.dtype == np.float32 and loaded.shape[0] == 2
    if tolerance is not None:
        assert loaded.shape == wave.shape
        assert np.max(np.abs(loaded - wave)) <= tolerance + 1e-7
    else:  # lossy codecs may pad by a frame; the level survives
        assert abs(loaded.shape[1] - wave.shape[1]) < 4096
        rms_in, rms_out = np.sqrt(np.mean(wave**2)), np.sqrt(np.mean(loaded**2))
        assert abs(20 * np.log10(rms_out / rms_in)) < 1.5


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_audio(tmp_path / "a.wav", _sine(440, 48000), 48000)
    with pytest.raises(ValueError):
        save_audio(tmp_path / "b.xyz", _sine(440, 48000), 48000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


@pytest.mark.parametrize("sr_in", [8000, 16000, 22050, 44100, 96000, 192000])
def test_resample_keeps_frequency_and_level(sr_in):
    freq = 1000.0
    out = resample(_sine(freq, sr_in, seconds=2.0), sr_in, 48000)
    assert out.shape[1] == 96000
    middle = out[0, 24000:72000]  # away from the filter's edge effects
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    peak_hz = np.argmax(spectrum) * 48000 / middle.size
    assert abs(peak_hz - freq) < 2.0
    assert abs(np.sqrt(2 * np.mean(middle**2)) - 0.5) < 0.005


def test_resample_back_and_forth_is_near_identity():
    speech = _speech_48k()
    back = resample(resample(speech, 48000, 44100), 44100, 48000)
    assert back.shape == speech.shape
    err = back - speech
    assert 10 * np.log10(np.sum(speech**2) / np.sum(err**2)) > 40


def test_loudness_normalisation_hits_target_and_returns_gain():
    speech = _speech_48k() * 0.05
    normalised, gain_db = normalize_loudness(speech, 48000, target_lufs=-20.0)
    assert abs(measure_loudness(normalised, 48000) + 20.0) < 0.1
    assert abs(gain_db - (-20.0 - measure_loudness(speech, 48000))) < 1e-6
    silent, gain_silent = normalize_loudness(np.zeros((1, 48000), np.float32), 48000)
    assert gain_silent == 0.0 and not silent.any()


def test_log_mel_shapes_and_batching():
    config = AudioConfig.from_yaml(CONFIG_PATH)
    assert config == AudioConfig()  # the YAML and the code defaults agree
    mel = LogMelSpectrogram(config)
    speech = torch.from_numpy(_speech_48k())
    for n in (480, 48000, 48001, speech.shape[1]):
        out = mel(speech[:, :n])
        assert out.shape == (1, 128, n // 480 + 1)
    batch = torch.stack([speech[0, :48000], speech[0, 48000:96000]])
    assert mel(batch).shape == (2, 128, 101)
    assert mel(batch.unsqueeze(1)).shape == (2, 128, 101)
    assert torch.allclose(mel(batch)[1], mel(batch[1:2])[0], atol=1e-5)
    assert mel(torch.zeros(1, 4800)).min() >= np.log(config.log_floor) - 1e-6


def test_audio_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="hop"):
        AudioConfig.from_dict({"hop": 480})


@pytest.mark.parametrize("cutoff", [4000, 8000, 16000])
def test_bandwidth_finds_a_lowpass_edge_in_real_speech(cutoff):
    speech = _speech_48k()
    # The source is 16 kHz, so add a faint full-band floor, then cut it.
    rng = np.random.default_rng(0)
    broadband = speech + 3e-3 * rng.standard_normal(speech.shape).astype(np.float32)
    sos = signal.butter(16, cutoff, fs=48000, output="sos")
    limited = signal.sosfiltfilt(sos, broadband).astype(np.float32)
    # A 16th-order zero-phase Butterworth reaches -60 dB within ~15% above its cutoff.
    assert cutoff < estimate_bandwidth(limited, 48000) < 1.15 * cutoff
    assert estimate_bandwidth(np.zeros((1, 48000), np.float32), 48000) == 0.0


def test_stream_blocks_cover_the_file(tmp_path):
    speech = _speech_48k()
    path = save_audio(tmp_path / "s.flac", speech, 48000, subtype="PCM_24")
    blocks = list(iter_audio_blocks(path, block_frames=48000, overlap_frames=4800))
    total = sum(b.shape[1] for b in blocks) - 4800 * (len(blocks) - 1)
    assert total == speech.shape[1]
    assert np.allclose(blocks[1][:, :4800], blocks[0][:, -4800:])


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(UnreadableAudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    with pytest.raises(UnreadableAudioError):
        load_audio(corrupt)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableAudioError):
        load_audio(empty)
    zero_frames = tmp_path / "zero.wav"
    sf.write(zero_frames, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(EmptyAudioError):
        load_audio(zero_frames)
    nan_wave = tmp_path / "nan.wav"
    data = np.zeros((1000, 1), np.float32)
    data[10] = np.nan
    sf.write(nan_wave, data, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="1 NaN"):
        load_audio(nan_wave)
    with pytest.raises(SilentAudioError):
        check_audio(np.zeros((1, 100), np.float32), allow_silent=False)


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_streaming_loudness_matches_pyloudnorm(channels):
    import pyloudnorm

    rng = np.random.default_rng(1)
    speech = _speech_48k()[0]
    wave = np.stack([np.roll(speech, 4800 * c) * (0.5 + 0.2 * c) for c in range(channels)])
    wave += 1e-3 * rng.standard_normal(wave.shape).astype(np.float32)
    reference = pyloudnorm.Meter(48000).integrated_loudness(wave.T.astype(np.float64))
    meter = LoudnessMeter(48000, channels)
    for start in range(0, wave.shape[1], 12345):  # odd block size: state must carry over
        meter.update(wave[:, start : start + 12345])
    assert abs(meter.integrated() - reference) < 0.05
    assert abs(measure_loudness(wave, 48000) - reference) < 0.05


# What libsndfile says for each of these ("File does not exist or is not a regular file
# (possibly a pipe?)", "System error.") must never reach the user; the path is named once.
LIBSNDFILE_WORDING = ("possibly a pipe", "System error", "Error opening")


def _reads(path: Path) -> list[str]:
    """The messages audio_info, load_audio and iter_audio_blocks raise for ``path``."""
    from hireslm.audio import audio_info

    messages = []
    for read in (audio_info, load_audio, lambda p: list(iter_audio_blocks(p, 16000))):
        with pytest.raises(UnreadableAudioError) as caught:
            read(path)
        messages.append(str(caught.value))
    return messages


@pytest.mark.parametrize("name,content,expected", [
    ("empty.mp3", b"", "empty file (0 bytes)"),
    ("empty.wav", b"", "empty file (0 bytes)"),
    ("random.mp3", np.random.default_rng(0).bytes(20000), "not readable audio"),
    ("notes.wav", b"a text file, not a recording\n" * 50, "not readable audio"),
    ("missing.flac", None, "no such file"),
    ("folder.wav", "dir", "a folder, not an audio file"),
])
def test_unreadable_files_say_why_in_the_users_terms(tmp_path, name, content, expected):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    for message in _reads(path):
        assert expected in message, message
        assert message.count(name) == 1, message
        assert not any(words in message for words in LIBSNDFILE_WORDING), message


def test_permission_denied_is_named(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="hireslm-perm-"))  # pytest's tmp is owner-only
    try:
        folder.chmod(0o755)
        path = folder / "locked.flac"
        shutil.copy(sorted(EXAMPLES.glob("*.flac"))[0], path)
        path.chmod(0)
        messages = _reads(path) if os.geteuid() != 0 else _as_unprivileged_user(_reads, path)
        assert len(messages) == 3
        for message in messages:
            assert "permission denied" in message and message.count("locked.flac") == 1
    finally:
        shutil.rmtree(folder)


def _as_unprivileged_user(read, path: Path) -> list[str]:
    """``read(path)`` in a forked child that gave up root (root reads anything)."""
    receive, send = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(send, "\n".join(read(path)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(send)
    with os.fdopen(receive) as pipe:
        output = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0, "the unprivileged reader failed"
    return output.splitlines()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root with mount rights, as on the CI machines; else skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_says_no_space_and_leaves_nothing(tiny_disk):
    from hireslm.audio.errors import AudioWriteError

    speech = _speech_48k()
    for suffix in ("wav", "flac"):
        target = tiny_disk / f"restored.{suffix}"
        with pytest.raises(AudioWriteError) as caught:
            save_audio(target, speech, 48000, subtype="PCM_24")
        message = str(caught.value)
        assert "no space left on device" in message and message.count(target.name) == 1
        assert not any(words in message for words in LIBSNDFILE_WORDING), message
        assert list(tiny_disk.iterdir()) == []  # neither the output nor its temp file


def test_read_only_folder_is_named(tiny_disk):
    from hireslm.audio.errors import AudioWriteError

    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    with pytest.raises(AudioWriteError, match="read-only file system"):
        save_audio(tiny_disk / "restored.wav", _speech_48k(), 48000)


def test_dev_full_reads_as_no_space():
    """/dev/full fails every write with ENOSPC: libsndfile's errno is read, not guessed."""
    from hireslm.audio.io import _write_error

    with pytest.raises(sf.LibsndfileError) as caught:
        sf.SoundFile("/dev/full", "w", samplerate=48000, channels=1, format="WAV")
    message = str(_write_error(Path("/dev/full"), caught.value))
    assert "no space left on device" in message, message

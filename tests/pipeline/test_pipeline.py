"""RestorationPipeline on real speech with a tiny random-weight release: lengths, peaks,
determinism, batching, chunk borders, streaming from files, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_factory import make_tiny_release

from hireslm.audio import load_audio, resample, save_audio
from hireslm.jobs.restore_one import restore_file
from hireslm.pipeline import RestorationPipeline, RestoreOptions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def pipeline(release) -> RestorationPipeline:
    return RestorationPipeline.from_pretrained(release)


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """Real speech at 16 kHz, (1, N)."""
    return load_audio(sorted(EXAMPLES.glob("*.flac"))[1])


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100, 96000])
def test_output_is_48k_exact_length_and_never_clips(pipeline, speech, sample_rate):
    wave = resample(speech[0], speech[1], sample_rate)[:, : int(1.3 * sample_rate)]
    wave = np.concatenate([wave, 0.5 * wave])  # stereo
    out = pipeline(wave * 3.0, sample_rate, RestoreOptions(chunk_seconds=1.0))
    assert out.shape == (2, round(wave.shape[1] * 48000 / sample_rate))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.max(np.abs(out)) < 1.0


def test_seeded_and_independent_of_batch_size(pipeline, speech):
    wave, sr = speech
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2, seed=3)
    first = pipeline(wave, sr, RestoreOptions(**{**options.__dict__, "batch_size": 1}))
    again = pipeline(wave, sr, RestoreOptions(**{**options.__dict__, "batch_size": 5}))
    np.testing.assert_allclose(first, again, atol=1e-5)
    other = pipeline(wave, sr, RestoreOptions(**{**options.__dict__, "seed": 4}))
    assert np.abs(other - first).max() > 1e-4


def test_no_discontinuity_at_chunk_borders(pipeline, speech):
    """The local roughness (RMS of the first difference over 5 ms) at each chunk border is
    within the range seen everywhere else in the restored signal."""
    wave, sr = speech
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2)
    out = pipeline(wave, sr, options)[0]
    step = 48000 * 0.8 - 0.2 * 48000  # chunk size is whole latent frames (0.8 s = 20 x 40 ms)
    window = 240
    diff = np.abs(np.diff(out))
    roughness = np.sqrt(np.convolve(diff**2, np.ones(window) / window, mode="valid"))
    borders = [int(k * step) for k in range(1, int(out.size // step))]
    at_borders = np.array([roughness[b - window // 2] for b in borders])
    assert at_borders.max() <= np.percentile(roughness, 99.5)


def test_zero_steps_resynthesises_without_the_dit(pipeline, speech):
    """``num_steps=0`` decodes the input's own latent: deterministic, seed-independent, and
    not what the DiT makes of it."""
    wave, sr = speech
    resynth = pipeline(wave, sr, RestoreOptions(num_steps=0, seed=1))
    np.testing.assert_array_equal(resynth, pipeline(wave, sr, RestoreOptions(num_steps=0, seed=2)))
    restored = pipeline(wave, sr, RestoreOptions(num_steps=2, seed=1))
    assert resynth.shape == restored.shape and np.abs(resynth - restored).max() > 1e-4
    with pytest.raises(ValueError, match="num_steps"):
        RestoreOptions(num_steps=-1)


def test_strength_moves_from_resynthesis_to_full_diffusion(pipeline, speech):
    """Strength near 0 keeps the input's own latent (resynthesis); 1 is the default."""
    wave, sr = speech
    resynth = pipeline(wave, sr, RestoreOptions(num_steps=0))
    near_zero = pipeline(wave, sr, RestoreOptions(num_steps=2, strength=1e-4))
    half = pipeline(wave, sr, RestoreOptions(num_steps=2, strength=0.5))
    full = pipeline(wave, sr, RestoreOptions(num_steps=2))
    np.testing.assert_allclose(near_zero, resynth, atol=1e-3)
    np.testing.assert_array_equal(full, pipeline(wave, sr, RestoreOptions(num_steps=2,
                                                                          strength=1.0)))
    assert np.abs(half - resynth).max() > 1e-3 and np.abs(half - full).max() > 1e-3
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match="strength"):
            RestoreOptions(strength=bad)
    with pytest.raises(ValueError, match="'euler' sampler"):  # refused before any audio
        pipeline.resolve(RestoreOptions(strength=0.5, scheduler="flow_match_euler"))
    with pytest.raises(ValueError, match="samplers"):
        pipeline.resolve(RestoreOptions(scheduler="ddim"))


def test_silence_in_silence_out(pipeline):
    out = pipeline(np.zeros((1, 16000), np.float32), 16000)
    assert out.shape == (1, 48000) and not out.any()


def test_files_and_arrays_take_one_path(pipeline, speech, tmp_path):
    """A file, its samples as float32, float64 (soundfile's default), int16 and a torch
    tensor, mono or (1, N): the same restoration and the same account."""
    import torch

    wave, sr = speech
    source = save_audio(tmp_path / "in.wav", wave, sr, subtype="FLOAT")
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2)
    from_file = pipeline.restore(source, options)
    assert from_file.audio.shape == (1, round(wave.shape[1] * 3)) and from_file.sample_rate == 48000
    account = from_file.account
    assert account.channels == 1 and account.input_sample_rate == sr and account.treatment
    for samples in (wave, wave[0].astype(np.float64), torch.from_numpy(wave[0])):
        in_memory = pipeline.restore(samples, options, sample_rate=sr)
        np.testing.assert_array_equal(in_memory.audio, from_file.audio)
        assert in_memory.account.treatment == account.treatment
        assert in_memory.account.analysis == account.analysis
    as_int16 = pipeline.restore((wave * 32767).astype(np.int16), options, sample_rate=sr)
    np.testing.assert_allclose(as_int16.audio, from_file.audio, atol=2e-3)
    with pytest.raises(ValueError, match="channels than samples"):
        pipeline.restore(wave.T, sample_rate=sr)  # (N, C), as soundfile gives multichannel
    with pytest.raises(ValueError, match="sample_rate"):
        pipeline.restore(wave)


def test_restore_file_streams_what_restore_returns(pipeline, speech, tmp_path):
    wave, sr = speech
    source = save_audio(tmp_path / "in.flac", wave, sr)
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2)
    result = restore_file(pipeline, source, tmp_path / "out.wav", options)
    restored, out_sr = load_audio(tmp_path / "out.wav")
    assert out_sr == 48000 and restored.shape == (1, round(wave.shape[1] * 3))
    assert result.channels == 1 and result.input_sample_rate == sr
    # 24-bit output: equal to the whole restoration up to quantisation.
    np.testing.assert_allclose(restored, pipeline.restore(source, options).audio, atol=2e-4)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_restore_file_refuses_to_overwrite_its_input(pipeline, speech, tmp_path):
    source = save_audio(tmp_path / "in.wav", *speech)
    with pytest.raises(ValueError, match="overwrite"):
        restore_file(pipeline, source, source)


def test_save_pretrained_round_trip(pipeline, speech, tmp_path):
    wave, sr = speech
    reloaded = RestorationPipeline.from_pretrained(pipeline.save_pretrained(tmp_path / "copy"))
    options = RestoreOptions(chunk_seconds=1.0)
    np.testing.assert_array_equal(pipeline(wave, sr, options), reloaded(wave, sr, options))

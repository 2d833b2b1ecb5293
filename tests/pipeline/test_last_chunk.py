"""The last chunk of a file is only as long as what is left of it (whole model frames), not
padded to a full chunk; chunks still reassemble exactly and the pipeline's output keeps
its length, its seams and its seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_factory import make_tiny_release

from hireslm.audio import load_audio
from hireslm.pipeline import RestorationPipeline, RestoreOptions
from hireslm.pipeline.chunking import ChunkPlan, OverlapAdd, iter_chunks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "librivox"


@pytest.mark.parametrize("total", [1, 999, 1000, 1001, 1799, 1801, 2500, 10_007])
def test_trimmed_last_chunk_reassembles_exactly(total):
    rng = np.random.default_rng(total)
    wave = rng.standard_normal((2, total)).astype(np.float32)
    plan = ChunkPlan(total=total, size=1000, overlap=200, quantum=100)
    blocks = (wave[:, i : i + 300] for i in range(0, total, 300))
    overlap_add = OverlapAdd(plan, channels=2)
    chunks = list(iter_chunks(blocks, plan))
    assert len(chunks) == plan.num_chunks
    assert all(c.shape == (2, 1000) for c in chunks[:-1])
    left = total - plan.start(plan.num_chunks - 1)
    assert chunks[-1].shape == (2, min(1000, -(-left // 100) * 100))
    out = np.concatenate([overlap_add.add(c) for c in chunks], axis=1)
    np.testing.assert_allclose(out, wave, atol=1e-6)


def test_quantum_must_divide_the_chunk():
    with pytest.raises(ValueError, match="quantum"):
        ChunkPlan(total=10, size=10, overlap=0, quantum=3)


def test_pipeline_runs_the_models_on_what_is_left_only(tmp_path, monkeypatch):
    pipeline = RestorationPipeline.from_pretrained(make_tiny_release(tmp_path / "release"))
    wave, sr = load_audio(sorted(EXAMPLES.glob("*.flac"))[1])
    wave = wave[:, : int(1.3 * sr)]  # 1.3 s in 0.8 s chunks: the second has 0.7 s left
    seen: list[tuple[int, int]] = []
    restore_chunks = pipeline.generator.restore_chunks

    def spy(chunks, seeds, options):
        seen.append(tuple(chunks.shape))
        return restore_chunks(chunks, seeds, options)

    monkeypatch.setattr(pipeline.generator, "restore_chunks", spy)
    options = RestoreOptions(chunk_seconds=0.8, overlap_seconds=0.2, seed=1, batch_size=4)
    out = pipeline(wave, sr, options)
    assert out.shape == (1, round(wave.shape[1] * 48000 / sr))
    assert np.isfinite(out).all() and np.abs(out).max() < 1.0
    # 0.7 s left, rounded up to whole latent frames, in a batch of its own.
    frame = pipeline.audio.hop_length * pipeline.generator.vae.downsample
    assert seen == [(1, 38400), (1, -(-33600 // frame) * frame)]
    assert seen[1][1] < 38400
    seen.clear()
    one_by_one = pipeline(wave, sr, RestoreOptions(**{**options.__dict__, "batch_size": 1}))
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)

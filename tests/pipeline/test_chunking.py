"""Chunk planning, streaming chunking and crossfaded overlap-add."""

from __future__ import annotations

import numpy as np
import pytest

from hireslm.audio.limiter import soft_limit
from hireslm.pipeline.chunking import ChunkPlan, OverlapAdd, iter_chunks


@pytest.mark.parametrize("total", [1, 999, 1000, 1001, 2500, 10_007])
@pytest.mark.parametrize("block", [7, 400, 5000])
def test_identity_chunks_reassemble_exactly(total, block):
    rng = np.random.default_rng(total)
    wave = rng.standard_normal((2, total)).astype(np.float32)
    plan = ChunkPlan(total=total, size=1000, overlap=200)
    blocks = (wave[:, i : i + block] for i in range(0, total, block))
    overlap_add = OverlapAdd(plan, channels=2)
    pieces = []
    count = 0
    for chunk in iter_chunks(blocks, plan):
        assert chunk.shape == (2, 1000)
        pieces.append(overlap_add.add(chunk))
        count += 1
    assert count == plan.num_chunks
    out = np.concatenate(pieces, axis=1)
    assert out.shape == wave.shape
    np.testing.assert_allclose(out, wave, atol=1e-6)


def test_crossfade_blends_neighbours_smoothly():
    """Chunks of two different constants: the seam ramps monotonically, with no step."""
    plan = ChunkPlan(total=1800, size=1000, overlap=200)
    overlap_add = OverlapAdd(plan, channels=1)
    first = overlap_add.add(np.full((1, 1000), 1.0, np.float32))
    second = overlap_add.add(np.full((1, 1000), 0.0, np.float32))
    out = np.concatenate([first, second], axis=1)[0]
    seam = out[800:1000]
    assert np.all(np.diff(seam) <= 0) and seam[0] > 0.99 and seam[-1] < 0.01
    assert np.max(np.abs(np.diff(out))) < 0.02  # largest step anywhere


def test_more_chunks_than_planned_is_an_error():
    plan = ChunkPlan(total=10, size=10, overlap=0)
    overlap_add = OverlapAdd(plan, channels=1)
    overlap_add.add(np.zeros((1, 10), np.float32))
    with pytest.raises(ValueError, match="more chunks"):
        overlap_add.add(np.zeros((1, 10), np.float32))


def test_plan_rejects_bad_overlap():
    with pytest.raises(ValueError):
        ChunkPlan(total=10, size=10, overlap=10)


def test_soft_limit_never_clips_and_keeps_quiet_samples():
    wave = np.linspace(-3, 3, 10_001, dtype=np.float32)[None]
    limited = soft_limit(wave)
    assert np.max(np.abs(limited)) < 1.0
    quiet = np.abs(wave) <= 0.9
    np.testing.assert_array_equal(limited[quiet], wave[quiet])
    assert np.all(np.diff(limited[0]) >= 0)  # monotonic: no fold-over

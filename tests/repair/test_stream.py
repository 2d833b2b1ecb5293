"""``LocalRepairer``: a stream in blocks of any size gets the whole-array result, with
bounded buffers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from hireslm.audio import load_audio
from hireslm.data.degradations import clipping
from hireslm.repair import (
    DeclipSettings,
    DropoutRepairSettings,
    LocalRepairer,
    RepairSettings,
    Runs,
    estimate_clip_levels,
    repair,
)

SR = 16000


def test_stream_matches_the_whole_array(librivox_files):
    """Two channels of real speech, clipped and with dropouts, small regions so the stream
    crosses many region borders; blocks of random sizes."""
    first, _ = load_audio(librivox_files[1])
    second, _ = load_audio(librivox_files[2])
    n = min(first.shape[1], second.shape[1], 2 * SR)
    wave = np.concatenate([first[:, :n], 0.5 * second[:, :n]])
    damaged = clipping(wave, SR, np.random.default_rng(0), threshold=0.3)
    for start in range(800, n, 4800):
        damaged[:, start:start + 160] = 0.0
    settings = RepairSettings(
        declip=DeclipSettings(block_frames=8),
        dropouts=DropoutRepairSettings(region_seconds=0.4),
    )
    whole = repair(damaged, SR, settings=settings)
    assert len(whole.clipped) > 50 and len(whole.dropouts) >= 6

    levels = estimate_clip_levels(damaged)
    assert levels == whole.clip_levels
    stream = LocalRepairer(2, SR, clip_levels=levels, declip=settings.declip,
                           dropouts=settings.dropouts)
    rng = np.random.default_rng(1)
    parts, start, largest = [], 0, 0
    while start < n:
        size = int(rng.integers(1, 3000))
        parts.append(stream.push(damaged[:, start:start + size]))
        start += size
        largest = max(largest, *(s._buffer.shape[1] for _, s in stream.stages))
    parts.append(stream.finish())
    out = np.concatenate(parts, axis=1)
    assert out.dtype == np.float32 and out.shape == damaged.shape
    assert np.array_equal(out, whole.wave)
    for name in ("clipped", "dropouts"):
        ours, theirs = getattr(stream, name), getattr(whole, name)
        assert all(np.array_equal(getattr(ours, f), getattr(theirs, f))
                   for f in ("channel", "start", "stop"))
    bound = max(s.region + 2 * s.radius for _, s in stream.stages) + 3000
    assert largest <= bound < n


def test_stream_without_clip_levels_only_fills(librivox_files):
    wave, _ = load_audio(librivox_files[0])
    wave = wave[:, :SR]
    stream = LocalRepairer(1, SR, clip_levels=None)
    out = np.concatenate([stream.push(wave), stream.finish()], axis=1)
    assert np.array_equal(out, wave) and len(stream.clipped) == 0


def test_repair_imports_numpy_only():
    code = ("import sys, hireslm.repair; "
            "print(sorted(m for m in ('torch', 'scipy', 'soundfile') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"


def test_runs_cut_by_region_borders_are_joined():
    parts = [Runs(np.array([0, 1]), np.array([10, 5]), np.array([20, 8])),
             Runs(np.array([0, 0]), np.array([20, 40]), np.array([25, 50])),
             Runs(np.array([0]), np.array([40]), np.array([50]))]
    runs = Runs.concat(parts)
    assert runs.channel.tolist() == [0, 0, 1]
    assert runs.start.tolist() == [10, 40, 5] and runs.stop.tolist() == [25, 50, 8]
    assert runs.samples == 28
    assert runs.summary(1000)["longest_ms"] == 15.0

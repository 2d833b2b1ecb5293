"""Files that hold less, or other, audio than their headers say: cut copies, lying frame
counts, a rate change mid-stream. Made here from real speech (LibriVox)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hireslm.audio import iter_audio_blocks, load_audio

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

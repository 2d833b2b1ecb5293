"""Full-band real speech for the tests, from a Debian package (never committed: GPL).

The committed LibriVox clips are 16 kHz recordings, band-limited to 8 kHz; a test that needs
real speech whose band is intact up to 16-22 kHz takes KLettres' recorded syllables
(``klettres-data``: one speaker per language), fetched once with ``apt-get download`` into
``$HIRESLM_TEST_DATA`` (default ``~/.cache/hireslm-tests``) and unpacked with ``dpkg -x``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hireslm.audio import load_audio, resample

PACKAGE = "klettres-data"


def cache_dir() -> Path:
    return Path(os.environ.get("HIRESLM_TEST_DATA", Path.home() / ".cache" / "hireslm-tests"))


def klettres_root() -> Path:
    """The unpacked package's ``usr/share/klettres``; raises ``RuntimeError`` when it cannot
    be fetched (no apt, no network)."""
    root = cache_dir() / PACKAGE / "usr" / "share" / "klettres"
    if root.is_dir():
        return root
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True,
                           capture_output=True, timeout=300)
            (deb,) = Path(work).glob(f"{PACKAGE}_*.deb")
            unpacked = Path(work) / "unpacked"
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True,
                           capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise RuntimeError(f"cannot fetch {PACKAGE} with apt-get: {exc}") from exc
        os.replace(unpacked, cache_dir() / PACKAGE)
    return root


def syllables_48k(language: str, count: int = 8, gap_s: float = 0.0) -> np.ndarray:
    """``count`` of one speaker's recorded syllables in a row at 48 kHz, ``(1, N)``
    float32, each trimmed to where it sounds, ``gap_s`` of silence between them."""
    files = sorted((klettres_root() / language / "syllab").glob("*.ogg"))[:count]
    parts = []
    for path in files:
        wave, rate = load_audio(path)
        wave = resample(wave[:1], rate, 48000)
        loud = np.flatnonzero(np.abs(wave[0]) > 0.05 * np.abs(wave[0]).max())
        parts += [wave[:, loud[0]:loud[-1] + 1], np.zeros((1, round(gap_s * 48000)))]
    return np.concatenate(parts, axis=1).astype(np.float32)

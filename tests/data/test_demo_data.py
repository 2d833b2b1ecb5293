"""Demo-data fetcher: the no-apt error, resuming, and manifests from a package-like layout.

Nothing is downloaded here: the layout of the Debian packages is rebuilt in a temp folder
from real speech (the committed LibriVox clips).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from hireslm.audio import load_audio, resample, save_audio
from hireslm.cli import data as data_cli
from hireslm.data.demo import (
    COMPLETE_MARKER,
    DemoDataError,
    build_demo_manifests,
    collect_demo_files,
    fetch_demo,
    fetch_package,
)
from hireslm.data.manifest import read_manifest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "librivox").glob("*.flac"))
TUX = "tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
KLETTRES = "klettres-data/usr/share/klettres"
SONIC = "sonic-pi-samples/usr/share/sonic-pi/samples"
PACKAGES = ("tuxpaint-stamps-default", "klettres-data", "sonic-pi-samples")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small copy of the three packages' layouts holding real audio at 44.1 kHz."""
    raw = tmp_path_factory.mktemp("demo") / "raw"
    speech, sr = load_audio(EXAMPLES[1])  # 2.99 s at 16 kHz: band-limited to 8 kHz
    narrow = resample(speech, sr, 44100)
    rng = np.random.default_rng(0)
    wide = (narrow + 2e-3 * rng.standard_normal(narrow.shape)).astype(np.float32)
    files = {
        f"{TUX}/animals/cat_desc_fr.ogg": wide,
        f"{TUX}/animals/cat_desc_da.ogg": wide,
        f"{TUX}/animals/dog_desc_da.ogg": narrow,
        f"{TUX}/animals/cat_desc.ogg": narrow,  # English: no language suffix
        f"{TUX}/animals/cat.ogg": wide,  # the stamp's sound effect
        f"{TUX}/symbols/math/7.ogg": narrow,  # spoken digit: neither speech nor noise here
        f"{TUX}/symbols/math/7_fr.ogg": narrow,
        f"{KLETTRES}/fr/alpha/a.ogg": wide,
        f"{SONIC}/ambi_drone.flac": wide,
        f"{SONIC}/bd_boom.flac": narrow,  # a drum: not used as noise
    }
    for rel, wave in files.items():
        save_audio(raw / rel, wave, 44100)
    (raw / TUX / "animals" / "broken_desc_ru.ogg").write_bytes(b"OggS" + bytes(100))
    for package in PACKAGES:
        (raw / package / COMPLETE_MARKER).write_text("test layout\n")
    return raw


def test_missing_apt_get_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DemoDataError, match="'apt-get' not found on PATH"):
        fetch_package("klettres-data", tmp_path / "raw")
    assert not (tmp_path / "raw" / "klettres-data").exists()
    parser = argparse.ArgumentParser()
    data_cli.add_arguments(parser)
    assert data_cli.run(parser.parse_args(["fetch-demo", str(tmp_path / "out")])) == 1


def test_unpacked_packages_are_skipped(raw, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # would fail if it tried to download
    assert fetch_package("klettres-data", raw) == raw / "klettres-data"


def test_collect_demo_files_follows_package_rules(raw):
    speech, noise = collect_demo_files(raw, PACKAGES)
    names = {Path(p).name: s for p, s in speech.items()}
    assert names == {"cat_desc_fr.ogg": "tuxpaint:fr", "cat_desc_da.ogg": "tuxpaint:da",
                     "dog_desc_da.ogg": "tuxpaint:da", "cat_desc.ogg": "tuxpaint:en",
                     "broken_desc_ru.ogg": "tuxpaint:ru", "a.ogg": "klettres:fr"}
    assert sorted(Path(p).name for p in noise) == ["ambi_drone.flac", "cat.ogg"]
    with pytest.raises(DemoDataError, match="expected folder missing"):
        collect_demo_files(raw, ("ktuberling-data",))


def test_build_demo_manifests(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    summary = fetch_demo(raw.parent, workers=1, heldout_languages=("da",))
    out = raw.parent
    speech_all = read_manifest(out / "speech_all.jsonl")
    assert len(speech_all) == 5  # the broken file is reported, not indexed
    assert [Path(f["path"]).name for f in summary["failures"]] == ["broken_desc_ru.ogg"]
    splits = {Path(r["path"]).name + r["speaker"]: r["split"] for r in speech_all}
    assert splits["cat_desc_da.oggtuxpaint:da"] == "heldout"
    assert splits["dog_desc_da.oggtuxpaint:da"] == "heldout"
    assert all(s in {"train", "valid"} for k, s in splits.items() if ":da" not in k)

    fullband = read_manifest(out / "speech_fullband.jsonl")
    assert sorted(r["speaker"] for r in fullband) == ["klettres:fr", "tuxpaint:fr"]
    assert all(r["bandwidth_hz"] >= 16000 for r in fullband)
    heldout = read_manifest(out / "speech_heldout.jsonl")
    assert [Path(r["path"]).name for r in heldout] == ["cat_desc_da.ogg"]
    noise = read_manifest(out / "noise.jsonl")
    assert {r["source"] for r in noise} == {"sonic-pi", "tuxpaint-effect"}

    saved = json.loads((out / "summary.json").read_text())
    assert saved["manifests"]["speech_fullband"]["files"] == 2
    assert saved["speakers"]["tuxpaint:en"]["median_bandwidth_khz"] < 9
    assert saved["heldout_languages"] == ["da"]
    # Deterministic: rebuilding gives identical manifests.
    again = tmp_path / "again"
    build_demo_manifests(raw, again, packages=PACKAGES, workers=2)
    assert read_manifest(again / "speech_all.jsonl") == speech_all

"""Build the DEVELOPMENT set for the restore decision: real speech from several Debian
packages, degraded into the kinds of recording an archive holds, split BY SOURCE.

    python benchmarks/make_devset.py [--out data/devset] [--per-kind 1] [--force]

Sources (each a speaker or a group of speakers from one package, one microphone chain):

========== ===================================== ========= =====================
source     what                                  split     band (measured)
========== ===================================== ========= =====================
tux_fr     tuxpaint-stamps-default, French        tune      full (>= 14 kHz)
tux_el     tuxpaint-stamps-default, Greek         tune      10-14 kHz
klettres   klettres-data, letters and syllables,  tune      full
           10 languages, several speakers
hedgewars  hedgewars-data voices (acted, British, tune      full
           Pirate, Mobster, ...)
tux_bg     tuxpaint-stamps-default, Bulgarian     heldout   full
tux_ca     tuxpaint-stamps-default, Catalan       heldout   10-14 kHz
ktuberling ktuberling-data, single words de/el/   heldout   full
           gl/sl/ru
librivox   pocketsphinx-testdata LibriVox reading heldout   8 kHz (16 kHz file)
========== ===================================== ========= =====================

A clip serves as a clean reference only when its floor is deep: its loudest 10 % of 20 ms
frames at least 40 dB above its quietest 10 % (``min_depth_db``). Most Tux Paint recordings
fail this (a room or hiss floor 20-30 dB down: themselves noisy at ~15-20 dB SNR, where
removing the floor is right but scores as damage against them); Russian and Romanian fail
it almost always, so those speakers are not in the set. LibriVox (one reading) is exempt.

Noises and music beds (sonic-pi-samples, 44.1 kHz FLAC) are split the same way: a held-out
file is degraded only with held-out noises, and its babble is made of held-out talkers.

Kinds (each source gets every kind; ``--per-kind`` repeats the noisy ones): ``clean``,
``short_dense`` (0.5-1 s cut from running speech, no pause), ``lowpass_4k``,
``lowpass_5k5``, ``lowpass_8k`` (clean band-limited, old equipment), ``white`` and ``pink``
(0-20 dB SNR; one pink file per source at exactly 15 dB), ``hum`` (50/60 Hz mains and its
harmonics at 10 and 20 dB), ``ambience`` (real recorded hiss/drone/machine noise, 0-20 dB),
``babble`` (4-6 talkers, 5-20 dB), ``music`` (a music bed, 10-20 dB), ``room``
(pyroomacoustics shoebox, RT60 0.3-1.2 s), ``lp8k_noise_mp3`` (low-pass 8 kHz, then noise at
10-20 dB, then MP3 112-128 kb/s: a band limit hidden under later noise), ``mp3``
(32-64 kb/s), ``opus`` (12-24 kb/s), ``clipping`` (hard, 25-50 % of peak). Lengths run from
0.5 s (``short_dense``) through single phrases (~1-4 s) to 4-10 s and 12-30 s (phrases of one
source joined end to end, each with its own pauses).

Layout::

    OUT/cache/<package>_<version>_all.deb     downloaded once (apt-get download), kept
    OUT/<split>/<source>/<id>.wav             the degraded input, 48 kHz mono PCM_24
    OUT/<split>/<source>/<id>.ref.wav         its clean reference, sample-aligned
    OUT/devset.json                           settings, the split, sources, noises, and
                                              per file: kind, parameters, duration, seed

The reference is the clean full-band speech before any degradation (for the low-pass kinds
too: PESQ-WB sees 0-8 kHz, so a low-pass at 8 kHz reads as intact). Everything is seeded: a
re-run with the same settings writes the same files; with the same settings and every file
present it does nothing. The packages are GPL/CC/GFDL licensed: never commit the audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ for make_realset

from make_realset import deb_version, fetch_deb, unpack_deb  # noqa: E402

from hireslm.audio import estimate_bandwidth, load_audio, save_audio  # noqa: E402
from hireslm.audio.resample import resample  # noqa: E402
from hireslm.fileio import write_json_atomic  # noqa: E402

RATE = 48000
CACHE = "cache"
SPLITS = ("tune", "heldout")
logger = logging.getLogger("make_devset")


@dataclass(frozen=True)
class SpeechSource:
    name: str
    package: str
    patterns: tuple[str, ...]  # globs inside the unpacked package
    split: str
    licence: str
    what: str
    min_band_hz: float = 14000.0  # full-band sources: clips measured narrower are skipped
    # A clean reference: its loudest 10 % of 20 ms frames at least this far above its
    # quietest 10 % (most Tux Paint recordings have a room/hiss floor only 20-30 dB down,
    # i.e. they are themselves noisy at ~15-20 dB SNR and cannot serve as a reference).
    min_depth_db: float = 40.0
    exclude: tuple[str, ...] = ()  # path parts that mark non-speech or processed voices


_TUX = "usr/share/tuxpaint/stamps"
_HW = "usr/share/games/hedgewars/Data/Sounds/voices"
_KT = "usr/share/ktuberling/sounds"
_KL = "usr/share/klettres"
SOURCES: tuple[SpeechSource, ...] = (
    SpeechSource("tux_fr", "tuxpaint-stamps-default", (f"{_TUX}/**/*_desc_fr.ogg",), "tune",
                 "GPL-2+ / CC", "Tux Paint stamp descriptions, French, one speaker"),
    SpeechSource("tux_el", "tuxpaint-stamps-default", (f"{_TUX}/**/*_desc_el.ogg",), "tune",
                 "GPL-2+ / CC", "Tux Paint stamp descriptions, Greek, one speaker "
                 "(recorded with a 10-14 kHz band)", min_band_hz=8000.0),
    SpeechSource("klettres", "klettres-data",
                 tuple(f"{_KL}/{lang}/*/*.ogg" for lang in
                       ("fr", "de", "es", "it", "cs", "da", "nl", "pt_BR", "hu", "uk")),
                 "tune", "GPL-2+", "KLettres letters and syllables, 10 languages"),
    SpeechSource("hedgewars", "hedgewars-data",
                 tuple(f"{_HW}/{v}/*.ogg" for v in
                       ("Default", "Default_uk", "British", "Pirate", "Mobster", "Surfer",
                        "Classic", "Russian")),
                 "tune", "GFDL-1.2", "Hedgewars acted voices, 8 voice packs"),
    SpeechSource("tux_bg", "tuxpaint-stamps-default", (f"{_TUX}/**/*_desc_bg.ogg",), "heldout",
                 "GPL-2+ / CC", "Tux Paint stamp descriptions, Bulgarian, one speaker"),
    SpeechSource("tux_ca", "tuxpaint-stamps-default", (f"{_TUX}/**/*_desc_ca.ogg",), "heldout",
                 "GPL-2+ / CC", "Tux Paint stamp descriptions, Catalan, one speaker "
                 "(recorded with a 10-14 kHz band)", min_band_hz=8000.0),
    SpeechSource("ktuberling", "ktuberling-data",
                 tuple(f"{_KT}/{lang}/*.ogg" for lang in ("de", "el", "gl", "sl", "ru")),
                 "heldout", "GPL-2+", "KTuberling single words, 5 languages"),
    SpeechSource("librivox", "pocketsphinx-testdata",
                 ("usr/share/pocketsphinx/test/data/librivox/*.wav",), "heldout",
                 "public domain (LibriVox); package BSD-2",
                 "LibriVox reading of Sense and Sensibility (16 kHz, 64 kb/s MP3 origin)",
                 min_band_hz=0.0, min_depth_db=0.0),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)

_SP = "usr/share/sonic-pi/samples"
NOISE_PACKAGE = "sonic-pi-samples"
# name -> (split, role); ambience: stationary or slowly varying real noise, music: a bed
NOISES: dict[str, tuple[str, str]] = {
    "loop_3d_printer": ("tune", "ambience"),
    "ambi_drone": ("tune", "ambience"),
    "ambi_dark_woosh": ("tune", "ambience"),
    "vinyl_hiss": ("heldout", "ambience"),
    "ambi_haunted_hum": ("heldout", "ambience"),
    "ambi_glass_hum": ("heldout", "ambience"),
    "loop_garzul": ("tune", "music"),
    "guit_em9": ("tune", "music"),
    "ambi_piano": ("heldout", "music"),
    "loop_safari": ("heldout", "music"),
}

# kind -> list of parameter sets (one file each); lengths: "dense" 0.5-1 s, "single" one
# phrase, "medium" 4-10 s, "long" 12-30 s.
KINDS: dict[str, list[dict[str, Any]]] = {
    "clean": [{"length": "single"}, {"length": "long"}],
    "short_dense": [{"length": "dense"}, {"length": "dense"}],
    "lowpass_4k": [{"length": "medium", "cutoff_hz": 4000}],
    "lowpass_5k5": [{"length": "single", "cutoff_hz": 5500}],
    "lowpass_8k": [{"length": "long", "cutoff_hz": 8000}],
    "white": [{"length": "medium", "snr_db": None}],
    "pink": [{"length": "single", "snr_db": 15.0}, {"length": "long", "snr_db": None}],
    "hum": [{"length": "medium", "snr_db": 20.0}, {"length": "single", "snr_db": 10.0}],
    "ambience": [{"length": "medium", "snr_db": None}, {"length": "long", "snr_db": None}],
    "babble": [{"length": "medium", "snr_db": None}],
    "music": [{"length": "medium", "snr_db": None}],
    "room": [{"length": "single", "rt60_s": None}, {"length": "medium", "rt60_s": None}],
    "lp8k_noise_mp3": [{"length": "medium", "snr_db": None}],
    "mp3": [{"length": "single", "bitrate_kbps": None}],
    "opus": [{"length": "medium", "bitrate_kbps": None}],
    "clipping": [{"length": "medium", "threshold": None}],
}
NOISY_KINDS = ("white", "pink", "hum", "ambience", "babble", "music", "lp8k_noise_mp3")
POOL_SIZE = 40  # clean clips kept per source (joined for the long files, babble talkers)
MAX_CLIP_S = 12.0
REF_LEVEL = 10 ** (-26 / 20)  # the reference's RMS before degradation (~ -26 dBFS)
PEAK = 0.98


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8],
                          "little")


def _ordered(paths: list[Path], key: str) -> list[Path]:
    return sorted(paths, key=lambda p: hashlib.sha256(f"{key}/{p}".encode()).hexdigest())


def frame_db(x: np.ndarray, frame: int = 960) -> np.ndarray:
    n = x.shape[-1] // frame
    blocks = x[: n * frame].astype(np.float64).reshape(n, frame)
    return 10 * np.log10(np.mean(blocks**2, axis=1) + 1e-12)


def floor_depth_db(x: np.ndarray, rate: int) -> float:
    """The loudest 10 % of 20 ms frames over the quietest 10 % (digital silence left out)."""
    frame = round(0.02 * rate)
    p = 10 ** (frame_db(x - x.mean(), frame) / 10)
    p = np.sort(p[p > 1e-10])
    if p.size < 10:
        return 0.0
    k = max(1, p.size // 10)
    return float(10 * np.log10(p[-k:].mean() / p[:k].mean()))


def trim_silence(x: np.ndarray, floor_db: float = 40.0, margin_s: float = 0.15) -> np.ndarray:
    """Cut leading/trailing frames more than ``floor_db`` below the loudest (keeps a margin
    of the clip's own pause/room tone at each end)."""
    db = frame_db(x)
    if not db.size:
        return x
    active = np.flatnonzero(db > db.max() - floor_db)
    margin = round(margin_s * RATE)
    start = max(0, active[0] * 960 - margin)
    end = min(x.shape[-1], (active[-1] + 1) * 960 + margin)
    return x[start:end]


def load_pool(source: SpeechSource, root: Path) -> list[np.ndarray]:
    """Up to POOL_SIZE clean mono 48 kHz clips of ``source`` (1-D float32), in a fixed hashed
    order; clipped, silent, too short/long and (for full-band sources) narrow clips skipped."""
    found = sorted({p for pattern in source.patterns for p in root.glob(pattern)
                    if p.is_file() and not set(p.parts) & set(source.exclude)})
    if source.name == "librivox":  # consecutive cuts of one reading: one 36 s recording
        waves = [load_audio(p) for p in found]
        rate = waves[0][1]
        whole = np.concatenate([w.mean(axis=0) for w, _ in waves]).astype(np.float32)
        x = resample(whole[None], rate, RATE)[0]
        return [x - x.mean()]
    pool: list[np.ndarray] = []
    seen: set[str] = set()
    for path in _ordered(found, source.name):
        if len(pool) >= POOL_SIZE:
            break
        try:
            wave, rate = load_audio(path)
        except Exception as exc:  # noqa: BLE001 - a broken package file is skipped
            logger.debug("%s: %s", path, exc)
            continue
        mono = wave.mean(axis=0)
        peak = float(np.max(np.abs(mono))) if mono.size else 0.0
        if peak < 1e-3 or np.mean(np.abs(mono) > 0.99 * peak) > 1e-3 or peak >= 0.999:
            continue  # silent or clipped
        digest = hashlib.sha256(mono.tobytes()).hexdigest()
        if digest in seen:
            continue
        if not 0.4 <= mono.size / rate <= MAX_CLIP_S:
            continue
        if source.min_depth_db and floor_depth_db(mono, rate) < source.min_depth_db:
            continue
        if source.min_band_hz and estimate_bandwidth(mono, rate) < source.min_band_hz:
            continue
        seen.add(digest)
        x = resample(mono[None].astype(np.float32), rate, RATE)[0]
        pool.append(trim_silence(x - x.mean()))
    return pool


def join(clips: list[np.ndarray], target_s: float, rng: np.random.Generator) -> np.ndarray:
    """Phrases of one source end to end (5 ms crossfade) until ``target_s``; cut there."""
    order = rng.permutation(len(clips))
    out = np.zeros(0, np.float32)
    fade = round(0.005 * RATE)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    i = 0
    while out.size < target_s * RATE:
        clip = clips[order[i % len(clips)]].copy()
        i += 1
        if out.size >= fade and clip.size >= fade:
            clip[:fade] = clip[:fade] * ramp + out[-fade:] * (1 - ramp)
            out = np.concatenate([out[:-fade], clip])
        else:
            out = np.concatenate([out, clip])
    return out[: round(target_s * RATE)]


def densest(x: np.ndarray, length: int) -> np.ndarray:
    """The ``length``-sample window of ``x`` whose quietest 20 ms frames are loudest: running
    speech with no pause in it."""
    if x.size <= length:
        return x
    db = frame_db(x)
    win = max(1, length // 960)
    best, start = -np.inf, 0
    for s in range(0, max(1, db.size - win + 1)):
        score = np.percentile(db[s: s + win], 10)
        if score > best:
            best, start = score, s
    return x[start * 960: start * 960 + length]


def speech_for(source: SpeechSource, pool: list[np.ndarray], length: str,
               rng: np.random.Generator) -> np.ndarray:
    if source.name == "librivox":  # one 36 s reading: a crop of running speech
        rec = pool[int(rng.integers(len(pool)))]
        seconds = {"dense": rng.uniform(0.5, 1.0), "single": rng.uniform(1.5, 3.5),
                   "medium": rng.uniform(4, 10), "long": rng.uniform(12, 30)}[length]
        n = min(rec.size, round(seconds * RATE))
        if length == "dense":
            return densest(rec, n)
        start = int(rng.integers(0, rec.size - n + 1))
        return trim_silence(rec[start: start + n])
    if length == "dense":
        n = round(rng.uniform(0.5, 1.0) * RATE)
        longest = sorted(pool, key=len)[-8:]
        return densest(longest[int(rng.integers(len(longest)))], n)
    if length == "single":
        return pool[int(rng.integers(len(pool)))]
    seconds = rng.uniform(4, 10) if length == "medium" else rng.uniform(12, 30)
    return join(pool, seconds, rng)


def _hum(n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    f0 = float(rng.choice([50.0, 60.0], p=[0.75, 0.25]))
    t = np.arange(n) / RATE
    hum = np.zeros(n)
    for k in range(1, 11):  # mains and harmonics, odd ones stronger (rectifier/transformer)
        amp = (1.0 if k % 2 else 0.5) / k ** rng.uniform(0.6, 1.2)
        hum += amp * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
    return hum[None].astype(np.float32), f0


def degrade(kind: str, params: dict[str, Any], ref: np.ndarray, rng: np.random.Generator,
            noises: dict[str, tuple[np.ndarray, int]], talkers: list[np.ndarray]
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """``ref`` (1, n) -> (degraded (1, n), the parameters actually drawn)."""
    from hireslm.data.degradations.codecs import mp3, opus
    from hireslm.data.degradations.dynamics import clipping
    from hireslm.data.degradations.filters import lowpass
    from hireslm.data.degradations.noise import babble, mix_at_snr
    from hireslm.data.degradations.noise import noise as add_noise
    from hireslm.data.degradations.reverb import convolve_aligned, simulate_rir

    drawn = {k: v for k, v in params.items() if k != "length"}
    snr = params.get("snr_db")
    if "snr_db" in params and snr is None:
        snr = float(rng.uniform(*{"babble": (5, 20), "music": (10, 20),
                                  "lp8k_noise_mp3": (10, 20)}.get(kind, (0, 20))))
    if snr is not None:
        drawn["snr_db"] = round(float(snr), 2)
    if kind in ("clean", "short_dense"):
        return ref.copy(), drawn
    if kind.startswith("lowpass"):
        return lowpass(ref, RATE, rng, cutoff_hz=params["cutoff_hz"]), drawn
    if kind in ("white", "pink"):
        return add_noise(ref, RATE, rng, snr_db=snr, color=kind), drawn
    if kind == "hum":
        hum, f0 = _hum(ref.shape[1], rng)
        drawn["f0_hz"] = f0
        return mix_at_snr(ref, hum, snr), drawn
    if kind in ("ambience", "music"):
        names = sorted(noises)
        name = names[int(rng.integers(len(names)))]
        wave, rate = noises[name]
        drawn["noise"] = name
        return add_noise(ref, RATE, rng, snr_db=snr, noise=wave, noise_sample_rate=rate), drawn
    if kind == "babble":
        count = int(rng.integers(4, 7))
        picks = [talkers[i] for i in rng.choice(len(talkers), count, replace=False)]
        drawn["talkers"] = count
        return babble(ref, RATE, rng, snr_db=snr, talkers=picks), drawn
    if kind == "room":
        rt60 = float(rng.uniform(0.3, 1.2))
        room = simulate_rir(RATE, rng, rt60_s=rt60)
        drawn.update(rt60_s=round(rt60, 3), rt60_measured_s=round(room.rt60_measured_s, 3),
                     room_dims_m=[round(d, 2) for d in room.room_dims_m])
        return convolve_aligned(ref, room.rir), drawn
    if kind == "lp8k_noise_mp3":
        color = str(rng.choice(["white", "pink"]))
        kbps = int(rng.choice([112, 128]))
        drawn.update(color=color, bitrate_kbps=kbps, cutoff_hz=8000)
        x = lowpass(ref, RATE, rng, cutoff_hz=8000)
        x = add_noise(x, RATE, rng, snr_db=snr, color=color)
        return mp3(x, RATE, rng, bitrate_kbps=kbps), drawn
    if kind == "mp3":
        kbps = int(rng.choice([32, 48, 64]))
        drawn["bitrate_kbps"] = kbps
        return mp3(ref, RATE, rng, bitrate_kbps=kbps), drawn
    if kind == "opus":
        kbps = float(rng.choice([12, 16, 24]))
        drawn["bitrate_kbps"] = kbps
        return opus(ref, RATE, rng, bitrate_kbps=kbps), drawn
    if kind == "clipping":
        threshold = float(rng.uniform(0.25, 0.5))
        drawn["threshold"] = round(threshold, 3)
        return clipping(ref, RATE, rng, threshold=threshold), drawn
    raise ValueError(f"unknown kind {kind!r}")


def plan(per_kind: int) -> list[tuple[str, int, dict[str, Any]]]:
    """(kind, index, parameters) for every file of one source."""
    items = []
    for kind, variants in KINDS.items():
        repeats = per_kind if kind in NOISY_KINDS else 1
        for r in range(repeats):
            for i, params in enumerate(variants):
                items.append((kind, r * len(variants) + i, dict(params)))
    return items


def _up_to_date(out: Path, settings: dict[str, Any]) -> bool:
    index = out / "devset.json"
    if not index.is_file():
        return False
    description = json.loads(index.read_text(encoding="utf-8"))
    return description.get("settings") == settings and all(
        (out / f["path"]).is_file() and (out / f["reference"]).is_file()
        for f in description.get("files", []))


def build(out: Path, names: list[str], per_kind: int, force: bool = False) -> dict[str, Any]:
    chosen = [s for s in SOURCES if s.name in names]
    settings = {"sources": [s.name for s in chosen], "per_kind": per_kind, "version": 3}
    if not force and _up_to_date(out, settings):
        logger.info("%s is up to date (same settings, every file there); --force rebuilds", out)
        return json.loads((out / "devset.json").read_text(encoding="utf-8"))
    cache = out / CACHE
    packages = sorted({s.package for s in chosen} | {NOISE_PACKAGE})
    debs = {p: fetch_deb(p, cache) for p in packages}
    for stale in (*SPLITS, "wet"):  # "wet": benchmarks/devset_wet.py's cache of this set
        if (out / stale).is_dir():
            shutil.rmtree(out / stale)
    files: list[dict[str, Any]] = []
    sources: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=".unpacked.", dir=cache) as tmp:
        unpacked = {p: unpack_deb(d, Path(tmp) / p) for p, d in debs.items()}
        noises: dict[str, dict[str, tuple[np.ndarray, int]]] = {
            (split, role): {} for split in SPLITS for role in ("ambience", "music")}
        for name, (split, role) in NOISES.items():
            wave, rate = load_audio(unpacked[NOISE_PACKAGE] / _SP / f"{name}.flac")
            noises[(split, role)][name] = (wave.mean(axis=0, keepdims=True), rate)
        pools = {}
        for source in chosen:
            pools[source.name] = load_pool(source, unpacked[source.package])
            logger.info("%s: %d clean clips", source.name, len(pools[source.name]))
            if not pools[source.name]:
                raise RuntimeError(f"{source.name}: too few usable clips")
        for source in chosen:
            pool = pools[source.name]
            others = [c for s in chosen if s.split == source.split and s.name != source.name
                      for c in pools[s.name][:8]]
            talkers = [join(others, 6.0, np.random.default_rng(_seed(source.name, "talk", i)))
                       for i in range(8)] if others else [join(pool, 6.0,
                                                               np.random.default_rng(1))]
            entries = []
            for kind, index, params in plan(per_kind):
                seed = _seed(source.name, kind, index)
                rng = np.random.default_rng(seed)
                speech = speech_for(source, pool, params["length"], rng)
                rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
                ref = (speech * (REF_LEVEL / max(rms, 1e-9)))[None].astype(np.float32)
                role = "music" if kind == "music" else "ambience"
                deg, drawn = degrade(kind, params, ref, rng, noises[(source.split, role)],
                                     talkers)
                peak = max(float(np.max(np.abs(deg))), float(np.max(np.abs(ref))))
                if peak > PEAK and kind != "clipping":
                    ref, deg = ref * (PEAK / peak), deg * (PEAK / peak)
                ident = f"{source.name}-{kind}-{index}"
                folder = Path(source.split) / source.name
                save_audio(out / folder / f"{ident}.wav", deg, RATE, subtype="PCM_24")
                save_audio(out / folder / f"{ident}.ref.wav", ref, RATE, subtype="PCM_24")
                entries.append({
                    "id": ident, "path": str(folder / f"{ident}.wav"),
                    "reference": str(folder / f"{ident}.ref.wav"), "source": source.name,
                    "split": source.split, "kind": kind, "length": params["length"],
                    "params": drawn, "duration": round(ref.shape[1] / RATE, 3), "seed": seed,
                    "reference_band_hz": round(estimate_bandwidth(ref, RATE), 1),
                })
            files += entries
            version = deb_version(debs[source.package])
            sources[source.name] = {
                "package": source.package, "version": version, "split": source.split,
                "licence": source.licence, "what": source.what, "files": len(entries),
                "minutes": round(sum(e["duration"] for e in entries) / 60, 2)}
            logger.info("%s (%s): %d files, %.1f min", source.name, source.split,
                        len(entries), sources[source.name]["minutes"])
    description = {
        "settings": settings,
        "split": {split: [s.name for s in chosen if s.split == split] for split in SPLITS},
        "sources": sources,
        "noises": {name: {"package": NOISE_PACKAGE, "split": split, "role": role,
                          "version": deb_version(debs[NOISE_PACKAGE])}
                   for name, (split, role) in NOISES.items()},
        "kinds": list(KINDS),
        "files": files,
    }
    write_json_atomic(out / "devset.json", description)
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/devset"))
    parser.add_argument("--sources", default=",".join(SOURCE_NAMES))
    parser.add_argument("--per-kind", type=int, default=1,
                        help="repeats of each noisy kind's variants per source")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    names = [n.strip() for n in args.sources.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SOURCE_NAMES))
    if unknown:
        logger.error("unknown sources %s; known: %s", unknown, ", ".join(SOURCE_NAMES))
        return 2
    try:
        description = build(args.out, names, args.per_kind, args.force)
    except (OSError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 1
    files = description["files"]
    logger.info("dev set: %d files, %.1f min, split %s, in %s", len(files),
                sum(f["duration"] for f in files) / 60, description["split"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

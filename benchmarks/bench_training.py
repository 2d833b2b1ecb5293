"""Training throughput per stage through the real loop: steps/s, samples/s, audio s/s.

Models use the real (base.yaml) sizes; data are the committed LibriVox clips through the
real paired dataset and degradation chain. Writes a markdown table under
"## Training throughput" in docs/benchmarks.md (other sections are kept).

    python benchmarks/bench_training.py                 # CPU or the visible GPU
    python benchmarks/bench_training.py --batch-size 16 --steps 20 --precision bf16
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hireslm.config import freeze, load_config
from hireslm.fileio import write_text_atomic
from hireslm.models import build_model
from hireslm.release import save_stage
from hireslm.training.loop import fit
from hireslm.training.stages import STAGE_CLASSES
from hireslm.training.tracking import read_metrics

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Training throughput"

# (row label, stage, config overrides)
CASES = [
    ("vae", "vae", []),
    ("recovery", "recovery", []),
    ("dit (VAE encode on the fly)", "dit", []),
    ("vocoder vocos", "vocoder", ["model.name=vocos"]),
    ("vocoder hifigan", "vocoder", ["model.name=hifigan"]),
]


def bench_config(stage: str, run_dir: Path, batch: int, steps: int, warmup: int,
                 precision: str, workers: int, extra: list[str]):
    """Debug data sources and loop settings with the base config's model sizes and crops."""
    base = load_config(REPO / "configs" / stage / "base.yaml", extra)
    cfg = load_config(REPO / "configs" / stage / "debug.yaml", [
        f"run_dir={run_dir}", f"train.batch_size={batch}", f"train.max_steps={warmup + steps}",
        f"train.log_every={warmup}", "train.val_every=0", f"train.ckpt_every={10 ** 9}",
        f"train.mixed_precision={precision}", f"data.length={batch * (warmup + steps)}",
        f"data.segment_seconds={base.data.segment_seconds}", f"data.num_workers={workers}",
        *extra,
    ])
    merged = OmegaConf.merge(OmegaConf.to_container(cfg), {"model": OmegaConf.to_container(
        base.model)}, OmegaConf.from_dotlist(extra))
    for key in ("discriminators",):
        if key in base:
            merged[key] = base[key]
    return freeze(merged)


def random_vae_release(out: Path) -> Path:
    """A VAE release with base sizes and random weights (throughput does not need training)."""
    base = load_config(REPO / "configs" / "vae" / "base.yaml")
    model = build_model(str(base.model.name), base.model.kwargs)
    save_stage(out, "vae", model, extra={"latent_scale": 1.0})
    return out


def measure(label: str, stage: str, args: argparse.Namespace, tmp: Path,
            vae_release: Path) -> dict:
    run_dir = tmp / label.replace(" ", "_").replace("(", "").replace(")", "")
    extra = list(dict(CASES_BY_LABEL)[label])
    if stage == "dit":
        extra.append(f"dit.vae_release={vae_release}")
    cfg = bench_config(stage, run_dir, args.batch_size, args.steps, args.warmup, args.precision,
                       args.workers, extra)
    start = time.perf_counter()
    fit(STAGE_CLASSES[stage](), cfg)
    wall = time.perf_counter() - start
    rows = [r for r in read_metrics(run_dir) if "perf/steps_per_s" in r][1:]  # skip warm-up
    timed_steps = rows[-1]["step"] - args.warmup
    seconds = sum((r["step"] - p["step"]) / r["perf/steps_per_s"]
                  for p, r in zip([{"step": args.warmup}] + rows[:-1], rows, strict=True))
    steps_per_s = timed_steps / seconds
    segment = float(cfg.data.segment_seconds)
    params = _parameters(stage, cfg)
    return {
        "label": label, "params_m": params / 1e6, "batch": args.batch_size, "segment": segment,
        "steps_per_s": steps_per_s, "samples_per_s": steps_per_s * args.batch_size,
        "audio_s_per_s": steps_per_s * args.batch_size * segment, "wall": wall,
    }


def _parameters(stage: str, cfg) -> int:
    if stage == "vocoder":
        model = build_model(str(cfg.model.name), cfg.model[str(cfg.model.name)])
    else:
        model = build_model(str(cfg.model.name), cfg.model.kwargs)
    return sum(p.numel() for p in model.parameters())


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} threads, {platform.processor() or platform.machine()})"


def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        HEADING, "",
        f"Measured by `benchmarks/bench_training.py` on {device_name()}, torch "
        f"{torch.__version__}, precision `{args.precision}`, one process, batch "
        f"{args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up step(s). "
        "Models and crop lengths as in `configs/<stage>/base.yaml`; data: the LibriVox example "
        "clips through the real paired dataset with degradations made on the fly by "
        f"{args.workers or 'no'} data-loader worker(s), so the time includes data preparation "
        "that workers did not hide (simulated rooms cost 0.05-0.5 s each on a CPU).",
        "",
        "| stage | params (M) | batch | segment (s) | steps/s | samples/s | audio s/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['label']} | {r['params_m']:.1f} | {r['batch']} | {r['segment']:.2f} "
                     f"| {r['steps_per_s']:.3f} | {r['samples_per_s']:.2f} "
                     f"| {r['audio_s_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section in ``path`` (created if absent), keep the others."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if HEADING in text:
        head, rest = text.split(HEADING, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text_atomic(path, text)


CASES_BY_LABEL = [(label, overrides) for label, _, overrides in CASES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    parser.add_argument("--stages", nargs="*", default=[c[0] for c in CASES],
                        help="row labels to run (default: all)")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        vae_release = random_vae_release(tmp / "vae_release")
        for label, stage, _ in CASES:
            if label not in args.stages:
                continue
            result = measure(label, stage, args, tmp, vae_release)
            results.append(result)
            print(f"{label}: {result['steps_per_s']:.3f} steps/s, "
                  f"{result['samples_per_s']:.2f} samples/s ({result['wall']:.0f} s)")
    section = table(results, args)
    write_section(Path(args.out), section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

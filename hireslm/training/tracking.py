"""Experiment tracking through accelerate's trackers, plus a plain ``metrics.jsonl`` per run.

wandb runs offline unless an API key is present or the config names a mode, so a training
run never needs the network. Media (audio, spectrogram images) go to the trackers that
support them; scalars also go to ``run_dir/metrics.jsonl``, one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import numpy as np
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hireslm.fileio import write_text_atomic

logger = logging.getLogger(__name__)

TRACKERS = ("wandb", "tensorboard")
METRICS_FILE = "metrics.jsonl"


def tracker_names(log_with: str | list[str] | None) -> list[str]:
    """Normalise ``train.log_with`` (``none``, a name, or a list) to a list of tracker names."""
    if log_with is None:
        return []
    names = [log_with] if isinstance(log_with, str) else list(log_with)
    names = [name for name in names if name not in ("none", "")]
    unknown = set(names) - set(TRACKERS)
    if unknown:
        raise ValueError(f"unknown trackers {sorted(unknown)}; expected some of {TRACKERS}")
    return names


def init_trackers(accelerator: Accelerator, cfg: DictConfig, run_dir: Path,
                  log_with: Sequence[str], wandb_mode: str | None = None) -> None:
    """Start the trackers ``log_with`` (main process only, as accelerate does), logging the
    whole ``cfg``; wandb in ``wandb_mode``, by default online only with an API key."""
    if not log_with:
        return
    init_kwargs: dict[str, dict[str, Any]] = {}
    if "wandb" in log_with:
        mode = wandb_mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        init_kwargs["wandb"] = {"mode": mode, "dir": str(run_dir), "name": run_dir.name}
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    accelerator.init_trackers(str(cfg.get("project", "hireslm")), config=flat,
                              init_kwargs=init_kwargs)


def log_scalars(accelerator: Accelerator, run_dir: Path, values: Mapping[str, float],
                step: int) -> None:
    """Scalars to every tracker and to ``metrics.jsonl`` (main process writes)."""
    if not values:
        return
    accelerator.log(dict(values), step=step)
    if accelerator.is_main_process:
        with open(run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps({"step": step, **{k: float(v) for k, v in values.items()}})
                         + "\n")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl`` (empty when the run logged nothing)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> int:
    """Drop the rows of ``metrics.jsonl`` logged after ``step``, atomically.

    A resumed run continues from its checkpoint's ``step`` and logs the later steps again, so
    what an interrupted run logged after its last checkpoint (and a line cut short by a kill)
    goes. Returns the number of rows dropped.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))
        logger.info("metrics.jsonl: dropped %d rows logged after step %d", len(lines) - len(kept),
                    step)
    return len(lines) - len(kept)


def _step_of(line: str) -> int | None:
    """The ``step`` of one ``metrics.jsonl`` line, None when it is not a complete row."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return int(row["step"]) if isinstance(row, dict) and "step" in row else None


def log_media(accelerator: Accelerator, audio: Mapping[str, np.ndarray],
              images: Mapping[str, np.ndarray], step: int, sample_rate: int) -> None:
    """Audio clips ``(N,)`` and grey images ``(H, W)`` uint8 to trackers that take media."""
    if not accelerator.is_main_process or not (audio or images):
        return
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            import wandb

            payload: dict[str, Any] = {
                key: wandb.Audio(clip, sample_rate=sample_rate) for key, clip in audio.items()
            }
            payload.update({key: wandb.Image(image) for key, image in images.items()})
            tracker.tracker.log(payload, step=step)
        elif tracker.name == "tensorboard":
            writer = tracker.tracker
            for key, clip in audio.items():
                writer.add_audio(key, clip[None, :], step, sample_rate=sample_rate)
            for key, image in images.items():
                writer.add_image(key, image, step, dataformats="HW")


def mel_image(mel: np.ndarray) -> np.ndarray:
    """Log-mel ``(n_mels, T)`` -> uint8 ``(n_mels, T)`` image, low frequencies at the bottom."""
    lo, hi = float(np.percentile(mel, 1)), float(mel.max())
    scaled = (np.clip(mel, lo, hi) - lo) / max(hi - lo, 1e-6)
    return np.ascontiguousarray((scaled[::-1] * 255).astype(np.uint8))


def wants_bar(setting: Any, stream: IO[str]) -> bool:
    """``train.progress``: ``auto`` (a bar when ``stream`` is a terminal), true or false."""
    if setting in (None, "auto"):
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"train.progress must be auto, true or false, got {setting!r}")


class ConsoleProgress:
    """Training progress on the console, main process only (the others' would repeat it).

    With a bar (``wants_bar``): a tqdm bar of optimizer steps with its ETA and the running
    loss, log lines printed above it. Without (a log file, a batch job's output): one log line
    each time the loop logs its scalars, with the losses, learning rates, speed and ETA.
    Use as a context manager: the bar closes and logging is restored however the run ends.
    """

    SMOOTHING = 0.1  # weight of the newest micro-batch in the running loss

    def __init__(self, setting: Any, *, main: bool, total: int, initial: int = 0,
                 stream: IO[str] | None = None) -> None:
        self.main, self.total, self.initial = main, total, initial
        self.running: dict[str, float] = {}
        self.started = time.perf_counter()
        self.stack = ExitStack()
        self.bar: tqdm | None = None
        stream = stream if stream is not None else sys.stderr
        if main and wants_bar(setting, stream):
            self.bar = tqdm(total=total, initial=initial, unit="step", desc="training",
                            file=stream, dynamic_ncols=True)
            self.stack.enter_context(logging_redirect_tqdm())
            self.stack.callback(self.bar.close)

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def observe(self, values: Mapping[str, float]) -> None:
        """One micro-batch's training values: fold them into the running averages."""
        for key, value in values.items():
            old = self.running.get(key)
            value = float(value)
            self.running[key] = value if old is None else old + self.SMOOTHING * (value - old)

    def advance(self, step: int) -> None:
        """The optimizer has made ``step`` updates in all."""
        if self.bar is None:
            return
        shown = [k for k in self.running if "loss" in k] or list(self.running)
        self.bar.set_postfix_str(", ".join(f"{k}={self.running[k]:.4g}" for k in shown[:3]),
                                 refresh=False)
        self.bar.update(step - self.bar.n)

    def logged(self, step: int, scalars: Mapping[str, float]) -> None:
        """The loop logged ``scalars`` (``train/…``, ``lr/…``) at ``step``: without a bar,
        say so in one line."""
        if not self.main or self.bar is not None:
            return
        values = [f"{k.split('/', 1)[1]} {v:.4g}" for k, v in scalars.items()
                  if k.startswith("train/")]
        lrs = {k: v for k, v in scalars.items() if k.startswith("lr/")}
        rates = [f"{'lr' if len(lrs) == 1 else k} {v:.3g}" for k, v in lrs.items()]
        elapsed = time.perf_counter() - self.started
        speed = (step - self.initial) / max(elapsed, 1e-9)
        eta = tqdm.format_interval((self.total - step) / speed) if speed > 0 else "?"
        logger.info("step %d/%d (%.0f%%): %s | %s | %.3g steps/s, ETA %s", step, self.total,
                    100 * step / max(self.total, 1), ", ".join(values) or "-",
                    ", ".join(rates) or "-", speed, eta)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a.b": value}`` with lists as strings (trackers want scalars)."""
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    key = prefix.rstrip(".")
    if isinstance(tree, (int, float, str, bool)) or tree is None:
        return {key: tree}
    return {key: str(tree)}

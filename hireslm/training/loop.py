"""The one training loop: ``fit(stage, cfg)`` over ``accelerate.Accelerator``.

Every stage (VAE, DiT, vocoder) trains through here; the stage supplies models, optimizers,
data and its own ``train_step`` (see ``hireslm.training.stage``). The loop owns precision,
gradient accumulation, LR schedules, EMA, validation, logging, checkpoints, resume, the
divergence guard and the final export of the EMA weights into a release folder.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf

from hireslm.fileio import write_json_atomic, write_text_atomic
from hireslm.training.checkpointing import latest_checkpoint, remove_partial, save_checkpoint
from hireslm.training.early_stopping import EarlyStopping
from hireslm.training.ema import EMA
from hireslm.training.finetune import inherit_from_release
from hireslm.training.resume_state import (
    CheckpointError,
    load_loop_state,
    load_rng_state,
    refuse_pickled_state,
    save_loop_state,
    save_rng_state,
)
from hireslm.training.schedules import build_lr_schedule, rebase_lr_schedule
from hireslm.training.small_data import plan_max_steps
from hireslm.training.stage import NonFiniteLossError, NonFiniteWeightsError, Stage, TrainingParts
from hireslm.training.tracking import (
    ConsoleProgress,
    init_trackers,
    log_media,
    log_scalars,
    tracker_names,
    truncate_metrics,
)

logger = logging.getLogger(__name__)

RELEASE_DIR = "release"
EARLY_STOPPING_FILE = "early_stopping.json"


class TrainState:
    """The step counter and this rank's generator for the stages, checkpointed with the rest.

    Stage randomness (posterior samples, diffusion noise and timesteps) draws from
    ``generator`` rather than the global RNG, whose position also depends on when data-loader
    iterators start; so a resumed run continues exactly where the interrupted one stopped.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.step = 0
        self.generator = generator


def fit(stage: Stage, cfg: DictConfig) -> Path:
    """Train ``stage`` per ``cfg`` (resuming from the run's latest checkpoint) and export.

    With ``init_from``, the model's name and sizes come from that release
    (``hireslm.training.finetune.inherit_from_release``).
    Returns the release folder holding the exported EMA weights: those of the last step, or
    with ``train.early_stopping`` those of the best validation (the run stops once the metric
    has not improved for ``patience`` validations).
    Raises ``NonFiniteLossError`` if the loss diverges, after saving the state as a checkpoint
    when it is still finite (``NonFiniteWeightsError``, nothing saved, when it is not).
    Raises ``CheckpointError`` when the run's latest checkpoint cannot be resumed safely.
    """
    cfg = inherit_from_release(cfg)
    train = cfg.train
    run_dir = Path(cfg.run_dir).resolve()
    accelerator = Accelerator(
        mixed_precision=_precision(train.get("mixed_precision", "no")),
        gradient_accumulation_steps=int(train.get("grad_accum", 1)),
        log_with=tracker_names(train.get("log_with")) or None,
        project_dir=str(run_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=bool(train.get("find_unused_parameters", False)))],
    )
    set_seed(int(cfg.get("seed", 0)), device_specific=False)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial(run_dir)
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    accelerator.wait_for_everyone()

    parts = stage.build(cfg, accelerator)
    stage.parts = parts  # the stage reads the prepared objects through this same instance
    max_steps = plan_max_steps(parts.train_loader.dataset, train, accelerator.num_processes)
    stopper = EarlyStopping.from_config(train.get("early_stopping"))
    if stopper is not None and (parts.val_loader is None or not int(train.get("val_every", 0))):
        raise ValueError("train.early_stopping needs validation: set data.val_items > 0 and "
                         "train.val_every > 0")
    emas = _prepare(accelerator, parts, train, max_steps)
    # One stream per rank: ranks draw different noise for their different data shards.
    generator = torch.Generator(device=accelerator.device)
    generator.manual_seed(int(cfg.get("seed", 0)) * 1000 + accelerator.process_index)
    stage.generator = generator
    state = TrainState(generator)

    latest = latest_checkpoint(run_dir)
    if latest is not None:
        _resume(accelerator, latest[1], state, parts, emas, stopper)
        logger.info("resumed from %s at step %d", latest[1], state.step)
    if accelerator.is_main_process:
        truncate_metrics(run_dir, state.step)
    init_trackers(accelerator, cfg, run_dir)

    release_dir = Path(train.get("export_dir") or run_dir / RELEASE_DIR)
    try:
        _train(accelerator, stage, parts, emas, state, cfg, run_dir, max_steps,
               stopper, release_dir)
    except NonFiniteLossError as error:
        # keep_last=0: a state saved while diverging never prunes the checkpoints before it.
        saved = None if isinstance(error, NonFiniteWeightsError) else _checkpoint(
            accelerator, run_dir, state, parts, emas, stopper, keep_last=0)
        _report_divergence(run_dir, state.step, saved)
        accelerator.end_training()
        raise

    if stopper is None or stopper.best_step is None:
        _export(accelerator, stage, parts, emas, release_dir, state.step)
    else:
        logger.info("release %s holds the best EMA weights: step %d, %s=%.4g", release_dir,
                    stopper.best_step, f"val/{stopper.metric}", stopper.best)
    if train.get("write_weights_hash", False):
        _write_weights_hash(accelerator, parts, run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return release_dir


def _prepare(accelerator: Accelerator, parts: TrainingParts, train: DictConfig,
             max_steps: int) -> dict[str, EMA]:
    """Prepare models/optimizers/loaders in place; build schedulers and EMAs."""
    # One prepare call: FSDP must see models and optimizers together to remap parameters.
    model_names, optim_names = list(parts.models), list(parts.optimizers)
    loaders = [parts.train_loader] + ([parts.val_loader] if parts.val_loader is not None else [])
    prepared = accelerator.prepare(
        *(parts.models[n] for n in model_names), *(parts.optimizers[n] for n in optim_names),
        *loaders,
    )
    prepared = list(prepared) if isinstance(prepared, tuple) else [prepared]
    for name in model_names:
        parts.models[name] = prepared.pop(0)
    for name in optim_names:
        parts.optimizers[name] = prepared.pop(0)
    parts.train_loader = prepared.pop(0)
    if parts.val_loader is not None:
        parts.val_loader = prepared.pop(0)
    if len(parts.train_loader) == 0:
        raise ValueError("the training data loader yields no batch: add data or lower batch_size")
    for module in parts.frozen.values():
        module.to(accelerator.device).eval().requires_grad_(False)
    # The loop steps schedulers itself (once per update, not once per process as accelerate's
    # wrapper would), so they are registered rather than prepared.
    for name, optimizer in parts.optimizers.items():
        scheduler = build_lr_schedule(
            optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
            warmup_steps=int(train.get("warmup_steps", 0)),
            total_steps=int(train.get("schedule_steps") or max_steps),
            decay=str(train.get("lr_decay", "cosine")),
            min_ratio=float(train.get("min_lr_ratio", 0.0)),
        )
        parts.schedulers[name] = scheduler
    return {name: EMA(accelerator.unwrap_model(parts.models[name]),
                      decay=float(train.get("ema_decay", 0.999)),
                      warmup_steps=int(train.get("ema_warmup", 0)))
            for name in parts.ema_models}


def _resume(accelerator: Accelerator, folder: Path, state: TrainState, parts: TrainingParts,
            emas: dict[str, EMA], stopper: EarlyStopping | None) -> None:
    """Load checkpoint ``folder`` into the prepared parts and the loop's state.

    Nothing that can run code is unpickled: accelerate loads the models from safetensors and
    the optimizers with ``weights_only=True``; the loop's state comes from JSON/safetensors.
    The base LRs then follow the config again, so a run resumed with another ``optim.lr``
    trains with it from here on (the schedule keeps its position).
    """
    refuse_pickled_state(folder)
    configured = {name: list(scheduler.base_lrs) for name, scheduler in parts.schedulers.items()}
    try:
        accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {folder}: a state file is not plain tensor data and was not loaded "
            f"(unpickling it could run code): {error}") from error
    _apply_loop_state(load_loop_state(folder), folder, state, parts, emas, stopper)
    load_rng_state(folder, accelerator.process_index, state.generator)
    for name, scheduler in parts.schedulers.items():
        for old, new in rebase_lr_schedule(scheduler, configured[name]):
            logger.warning("optimizer '%s': base LR %.4g from the checkpoint -> %.4g from the "
                           "config, from step %d on", name, old, new, state.step)


def _apply_loop_state(loaded: dict[str, Any], folder: Path, state: TrainState,
                      parts: TrainingParts, emas: dict[str, EMA],
                      stopper: EarlyStopping | None) -> None:
    """Restore the step, schedulers, EMAs and early stopping from ``_loop_state``'s output."""
    try:
        state.step = int(loaded["step"])
        for name, scheduler in parts.schedulers.items():
            expected = scheduler.state_dict()
            saved = dict(loaded["schedulers"][name])
            if set(saved) != set(expected):
                raise KeyError(f"scheduler '{name}' state keys {sorted(saved)}")
            saved["lr_lambdas"] = expected["lr_lambdas"]  # the lambdas come from the config
            scheduler.load_state_dict(saved)
        for name, ema in emas.items():
            ema.load_state_dict(loaded["emas"][name])
        if stopper is not None and loaded.get("early_stopping") is not None:
            stopper.load_state_dict(loaded["early_stopping"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {folder}: its loop state does not match this run "
                              f"({error})") from error


def _loop_state(state: TrainState, parts: TrainingParts, emas: dict[str, EMA],
                stopper: EarlyStopping | None) -> dict[str, Any]:
    """Everything but models, optimizers and RNGs that a resumed run needs (same on all ranks)."""
    return {
        "step": state.step,
        "schedulers": {name: s.state_dict() for name, s in parts.schedulers.items()},
        "emas": {name: ema.state_dict() for name, ema in emas.items()},
        "early_stopping": None if stopper is None else stopper.state_dict(),
    }


def _state_writer(accelerator: Accelerator, state: TrainState, parts: TrainingParts,
                  emas: dict[str, EMA], stopper: EarlyStopping | None) -> Callable[[Path], None]:
    """What ``save_checkpoint`` calls on every rank to add the loop's own state."""
    def write(folder: Path) -> None:
        save_rng_state(folder, accelerator.process_index, state.generator)
        if accelerator.is_main_process:
            save_loop_state(folder, _loop_state(state, parts, emas, stopper))
    return write


def _checkpoint(accelerator: Accelerator, run_dir: Path, state: TrainState,
                parts: TrainingParts, emas: dict[str, EMA], stopper: EarlyStopping | None,
                keep_last: int) -> Path | None:
    """Save a checkpoint at the current step, unless any weight, EMA or optimizer state is
    NaN/inf: then nothing is written (nor pruned) and None is returned."""
    bad = _non_finite(accelerator, parts, emas)
    if bad:
        logger.error("step %d: %s hold NaN/inf values; not saving them as a checkpoint",
                     state.step, ", ".join(bad))
        return None
    return save_checkpoint(accelerator, run_dir, state.step, keep_last,
                           _state_writer(accelerator, state, parts, emas, stopper))


def _non_finite(accelerator: Accelerator, parts: TrainingParts,
                emas: dict[str, EMA]) -> list[str]:
    """The models, EMAs and optimizers holding NaN/inf on any rank (same list on every rank)."""
    groups: dict[str, Iterable[torch.Tensor]] = {}
    for name, model in parts.models.items():
        groups[f"model '{name}'"] = itertools.chain(model.parameters(), model.buffers())
    for name, ema in emas.items():
        groups[f"EMA of '{name}'"] = ema.shadow.values()
    for name, optimizer in parts.optimizers.items():
        groups[f"optimizer '{name}'"] = (value for entry in optimizer.state.values()
                                         for value in entry.values() if torch.is_tensor(value))
    flags = torch.tensor([0.0 if _all_finite(tensors) else 1.0 for tensors in groups.values()],
                         device=accelerator.device)
    if accelerator.num_processes > 1:
        flags = accelerator.reduce(flags, reduction="sum")
    return [name for name, flag in zip(groups, flags.tolist(), strict=True) if flag > 0]


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors
               if t.is_floating_point() or t.is_complex())


def _report_divergence(run_dir: Path, step: int, saved: Path | None) -> None:
    """Say what was kept after a divergence and how to go on from it."""
    advice = ("resume with a lower optim.lr (a changed optim.lr takes effect on resume) or "
              "with train.grad_clip")
    if saved is not None:
        logger.error("training diverged at step %d; its state was still finite and is saved as "
                     "%s: %s", step, saved, advice)
        return
    latest = latest_checkpoint(run_dir)
    if latest is None:
        logger.error("training diverged at step %d with non-finite weights and no earlier "
                     "checkpoint: start again with a lower optim.lr", step)
    else:
        logger.error("training diverged at step %d with non-finite weights, which were not "
                     "saved; the last finite checkpoint is %s (step %d): %s", step, latest[1],
                     latest[0], advice)


def _batches(accelerator: Accelerator, loader: Any, first_epoch: int,
             skip: int) -> Iterator[tuple[int, Any]]:
    """Endless ``(epoch, batch)`` stream, starting ``skip`` micro-batches into ``first_epoch``."""
    epoch = first_epoch
    while True:
        loader.set_epoch(epoch)
        # accelerate forwards the epoch to the sampler only; paired datasets draw crops per
        # (seed, epoch, index), so they need it too.
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        source = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in source:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


def _train(accelerator: Accelerator, stage: Stage, parts: TrainingParts, emas: dict[str, EMA],
           state: TrainState, cfg: DictConfig, run_dir: Path, max_steps: int,
           stopper: EarlyStopping | None, release_dir: Path) -> None:
    train = cfg.train
    accum = int(train.get("grad_accum", 1))
    log_every = int(train.get("log_every", 50))
    val_every = int(train.get("val_every", 0))
    ckpt_every = int(train.get("ckpt_every", 0))
    keep_last = int(train.get("keep_last", 3))
    if state.step >= max_steps:
        logger.info("already at step %d >= max_steps %d; nothing to train", state.step, max_steps)
        return
    if stopper is not None and stopper.stopped:
        logger.info("early stopping already ended this run at step %d", state.step)
        return
    per_epoch = len(parts.train_loader)
    done = state.step * accum
    stream = _batches(accelerator, parts.train_loader, done // per_epoch, done % per_epoch)
    sums: dict[str, float] = defaultdict(float)
    counted, samples, tic = 0, 0, time.perf_counter()
    models = list(parts.models.values())
    for module in models:
        module.train()
    # The console: a bar with ETA and running loss on a terminal, else a line per log_every.
    progress = ConsoleProgress(train.get("progress", "auto"), main=accelerator.is_main_process,
                               total=max_steps, initial=state.step)
    with progress:
        for _, batch in stream:
            with accelerator.accumulate(*models):
                values = stage.train_step(batch, state.step)
            samples += _batch_size(batch) * accelerator.num_processes
            for key, value in values.items():
                sums[key] += float(value)
            progress.observe(values)
            counted += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            progress.advance(state.step)
            for name, ema in emas.items():
                ema.update(accelerator.unwrap_model(parts.models[name]))
            if state.step % log_every == 0 or state.step == max_steps:
                elapsed = time.perf_counter() - tic
                scalars = _reduce_mean(accelerator, {k: v / counted for k, v in sums.items()})
                scalars.update({f"lr/{n}": s.get_last_lr()[0] for n, s in parts.schedulers.items()})
                scalars["perf/steps_per_s"] = counted / accum / max(elapsed, 1e-9)
                scalars["perf/samples_per_s"] = samples / max(elapsed, 1e-9)
                scalars = {f"train/{k}" if "/" not in k else k: v for k, v in scalars.items()}
                log_scalars(accelerator, run_dir, scalars, state.step)
                progress.logged(state.step, scalars)
                sums.clear()
                counted, samples, tic = 0, 0, time.perf_counter()
            stop = False
            if val_every and (state.step % val_every == 0 or state.step == max_steps):
                metrics = _validate(accelerator, stage, parts, emas, cfg, run_dir, state.step)
                if stopper is not None:
                    stop = _early_stopping(accelerator, stage, parts, emas, stopper, metrics,
                                           run_dir, release_dir, state.step)
                for module in models:
                    module.train()
            at_ckpt = bool(ckpt_every) and (state.step % ckpt_every == 0 or state.step == max_steps)
            if (at_ckpt or stop) and _checkpoint(accelerator, run_dir, state, parts, emas, stopper,
                                                 keep_last) is None:
                raise NonFiniteWeightsError(
                    f"the weights are not finite after step {state.step} (the loss still was); "
                    "lower the learning rate or enable grad_clip")
            if state.step >= max_steps or stop:
                break


def _early_stopping(accelerator: Accelerator, stage: Stage, parts: TrainingParts,
                    emas: dict[str, EMA], stopper: EarlyStopping, metrics: dict[str, float],
                    run_dir: Path, release_dir: Path, step: int) -> bool:
    """Feed one validation to ``stopper``; export on improvement. True when the run must stop."""
    if stopper.update(metrics, step):
        _export(accelerator, stage, parts, emas, release_dir, step)
    scalars = {"early_stopping/bad_validations": float(stopper.bad_validations)}
    if stopper.best is not None:
        scalars["early_stopping/best"] = stopper.best
    log_scalars(accelerator, run_dir, scalars, step)
    if accelerator.is_main_process:
        write_json_atomic(run_dir / EARLY_STOPPING_FILE, {**stopper.summary(), "step": step})
    if stopper.stopped:
        logger.info("early stopping at step %d: val/%s has not improved by more than %g for "
                    "%d validations (best %.4g at step %d)", step, stopper.metric,
                    stopper.min_delta, stopper.patience, stopper.best, stopper.best_step)
    return stopper.stopped


def _export(accelerator: Accelerator, stage: Stage, parts: TrainingParts, emas: dict[str, EMA],
            release_dir: Path, step: int) -> None:
    """The main process exports the EMA weights of ``step`` to ``release_dir``."""
    stage.steps_done = step
    if accelerator.is_main_process:
        with _ema_weights(accelerator, parts, emas):
            stage.export(release_dir)
        logger.info("exported EMA weights after %d steps to %s", step, release_dir)
    accelerator.wait_for_everyone()


@torch.no_grad()
def _validate(accelerator: Accelerator, stage: Stage, parts: TrainingParts,
              emas: dict[str, EMA], cfg: DictConfig, run_dir: Path,
              step: int) -> dict[str, float]:
    """Average ``stage.validate`` over a few batches (EMA weights), log it with media and
    return the scalars (same on every rank; keys without ``val/``)."""
    if parts.val_loader is None:
        return {}
    num = int(cfg.train.get("val_batches", 2))
    sums: dict[str, float] = defaultdict(float)
    audio: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    count = 0
    for module in parts.models.values():
        module.eval()
    with _ema_weights(accelerator, parts, emas):
        for index, batch in enumerate(parts.val_loader):
            if index >= num:
                break
            for key, value in stage.validate(batch).items():
                if key.startswith("audio/") and index == 0:
                    audio[f"val/{key[6:]}"] = np.asarray(value, dtype=np.float32)
                elif key.startswith("image/") and index == 0:
                    images[f"val/{key[6:]}"] = np.asarray(value)
                elif not key.startswith(("audio/", "image/")):
                    sums[key] += float(value)
            count += 1
    metrics = _reduce_mean(accelerator, {k: v / max(count, 1) for k, v in sums.items()})
    log_scalars(accelerator, run_dir, {f"val/{k}": v for k, v in metrics.items()}, step)
    sample_rate = int(cfg.get("audio", {}).get("sample_rate", 48000))
    log_media(accelerator, audio, images, step, sample_rate)
    logger.info("step %d validation: %s", step,
                ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics


def _ema_weights(accelerator: Accelerator, parts: TrainingParts, emas: dict[str, EMA]) -> ExitStack:
    """A context holding every EMA'd model's averaged weights (live weights restored on exit)."""
    stack = ExitStack()
    for name, ema in emas.items():
        stack.enter_context(ema.swapped_in(accelerator.unwrap_model(parts.models[name])))
    return stack


def _reduce_mean(accelerator: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Average scalars over ranks (every rank must call this with the same keys)."""
    if accelerator.num_processes == 1 or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], device=accelerator.device,
                          dtype=torch.float64)
    tensor = accelerator.reduce(tensor, reduction="mean")
    return dict(zip(keys, tensor.tolist(), strict=True))


def _precision(value: Any) -> str:
    """``train.mixed_precision``; a bare ``no`` on the command line parses as YAML false."""
    return "no" if value in (False, None) else str(value)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    return int(batch.shape[0]) if hasattr(batch, "shape") else 1


def _write_weights_hash(accelerator: Accelerator, parts: TrainingParts, run_dir: Path) -> None:
    """Each rank records a hash of its live weights (lets tests check DDP kept ranks equal)."""
    digest = hashlib.sha256()
    for name in sorted(parts.models):
        model = accelerator.unwrap_model(parts.models[name])
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().float().numpy().tobytes())
    write_json_atomic(run_dir / f"weights_rank{accelerator.process_index}.json",
                      {"sha256": digest.hexdigest(), "rank": accelerator.process_index})

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
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
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
from hireslm.training.settings import (
    Settings,
    TrainSettings,
    check_data_keys,
    check_model_section,
)
from hireslm.training.small_data import plan_max_steps
from hireslm.training.stage import NonFiniteLossError, NonFiniteWeightsError, Stage, TrainingParts
from hireslm.training.tracking import (
    ConsoleProgress,
    init_trackers,
    log_media,
    log_scalars,
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


@dataclass
class RunState:
    """What the loop's helpers share during one ``fit`` (as DAC's ``State``).

    ``parts`` are the prepared objects, ``emas`` the averaged copies of ``parts.ema_models``,
    ``state`` the checkpointed step and generator, ``stopper`` the early stopping (or None),
    ``max_steps`` the planned optimizer steps and ``release_dir`` where exports go.
    """

    accelerator: Accelerator
    stage: Stage
    parts: TrainingParts
    emas: dict[str, EMA]
    state: TrainState
    settings: Settings
    cfg: DictConfig
    run_dir: Path
    release_dir: Path
    max_steps: int
    stopper: EarlyStopping | None


def fit(stage: Stage, cfg: DictConfig) -> Path:
    """Train ``stage`` per ``cfg`` (resuming from the run's latest checkpoint) and export.

    ``cfg.train`` and ``cfg.optim`` are parsed strictly (``hireslm.training.settings``): an
    unknown key or a wrong type raises ``SettingsError`` before anything is written; so do
    ``data`` keys the stage does not read and a ``model`` section other than ``{name, kwargs}``.
    With ``init_from``, the model's name and sizes come from that release
    (``hireslm.training.finetune.inherit_from_release``).
    Returns the release folder holding the exported EMA weights: those of the last step, or
    with ``train.early_stopping`` those of the best validation (the run stops once the metric
    has not improved for ``patience`` validations).
    Raises ``NonFiniteLossError`` if the loss diverges, after saving the state as a checkpoint
    when it is still finite (``NonFiniteWeightsError``, nothing saved, when it is not).
    Raises ``CheckpointError`` when the run's latest checkpoint cannot be resumed safely.
    """
    settings = Settings.from_config(cfg)
    check_model_section(cfg.get("model"))
    check_data_keys(cfg.get("data"), stage.name)
    cfg = inherit_from_release(cfg)
    train = settings.train
    run_dir = Path(cfg.run_dir).resolve()
    accelerator = Accelerator(
        mixed_precision=train.mixed_precision,
        gradient_accumulation_steps=train.grad_accum,
        log_with=list(train.log_with) or None,
        project_dir=str(run_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=train.find_unused_parameters)],
    )
    set_seed(int(cfg.get("seed", 0)), device_specific=False)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial(run_dir)
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    accelerator.wait_for_everyone()

    parts = stage.build(cfg, settings, accelerator)
    stage.parts = parts  # the stage reads the prepared objects through this same instance
    max_steps = plan_max_steps(parts.train_loader.dataset, train, accelerator.num_processes)
    stopper = EarlyStopping.from_config(train.early_stopping)
    if stopper is not None and (parts.val_loader is None or not train.val_every):
        raise ValueError("train.early_stopping needs validation: set data.val_items > 0 and "
                         "train.val_every > 0")
    emas = _prepare(accelerator, parts, train, max_steps)
    # One stream per rank: ranks draw different noise for their different data shards.
    generator = torch.Generator(device=accelerator.device)
    generator.manual_seed(int(cfg.get("seed", 0)) * 1000 + accelerator.process_index)
    stage.generator = generator
    run = RunState(accelerator, stage, parts, emas, TrainState(generator), settings, cfg,
                   run_dir, Path(train.export_dir or run_dir / RELEASE_DIR), max_steps, stopper)

    latest = latest_checkpoint(run_dir)
    if latest is not None:
        _resume(run, latest[1])
        logger.info("resumed from %s at step %d", latest[1], run.state.step)
    if accelerator.is_main_process:
        truncate_metrics(run_dir, run.state.step)
    init_trackers(accelerator, cfg, run_dir, train.log_with, train.wandb_mode)

    try:
        _train(run)
    except NonFiniteLossError as error:
        # keep_last=0: a state saved while diverging never prunes the checkpoints before it.
        saved = None if isinstance(error, NonFiniteWeightsError) else _checkpoint(
            run, keep_last=0)
        _report_divergence(run_dir, run.state.step, saved)
        accelerator.end_training()
        raise

    if stopper is None or stopper.best_step is None:
        _export(run, run.state.step)
    else:
        logger.info("release %s holds the best EMA weights: step %d, %s=%.4g", run.release_dir,
                    stopper.best_step, f"val/{stopper.metric}", stopper.best)
    if train.write_weights_hash:
        _write_weights_hash(accelerator, parts, run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run.release_dir


def _prepare(accelerator: Accelerator, parts: TrainingParts, train: TrainSettings,
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
            warmup_steps=train.warmup_steps,
            total_steps=train.schedule_steps or max_steps,
            decay=train.lr_decay,
            min_ratio=train.min_lr_ratio,
        )
        parts.schedulers[name] = scheduler
    return {name: EMA(accelerator.unwrap_model(parts.models[name]), decay=train.ema_decay,
                      warmup_steps=train.ema_warmup)
            for name in parts.ema_models}


def _resume(run: RunState, folder: Path) -> None:
    """Load checkpoint ``folder`` into the prepared parts and the loop's state.

    Nothing that can run code is unpickled: accelerate loads the models from safetensors and
    the optimizers with ``weights_only=True``; the loop's state comes from JSON/safetensors.
    The base LRs then follow the config again, so a run resumed with another ``optim.lr``
    trains with it from here on (the schedule keeps its position).
    """
    refuse_pickled_state(folder)
    schedulers = run.parts.schedulers
    configured = {name: list(scheduler.base_lrs) for name, scheduler in schedulers.items()}
    try:
        run.accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {folder}: a state file is not plain tensor data and was not loaded "
            f"(unpickling it could run code): {error}") from error
    _apply_loop_state(run, load_loop_state(folder), folder)
    load_rng_state(folder, run.accelerator.process_index, run.state.generator)
    for name, scheduler in schedulers.items():
        for old, new in rebase_lr_schedule(scheduler, configured[name]):
            logger.warning("optimizer '%s': base LR %.4g from the checkpoint -> %.4g from the "
                           "config, from step %d on", name, old, new, run.state.step)


def _apply_loop_state(run: RunState, loaded: dict[str, Any], folder: Path) -> None:
    """Restore the step, schedulers, EMAs and early stopping from ``_loop_state``'s output."""
    try:
        run.state.step = int(loaded["step"])
        for name, scheduler in run.parts.schedulers.items():
            expected = scheduler.state_dict()
            saved = dict(loaded["schedulers"][name])
            if set(saved) != set(expected):
                raise KeyError(f"scheduler '{name}' state keys {sorted(saved)}")
            saved["lr_lambdas"] = expected["lr_lambdas"]  # the lambdas come from the config
            scheduler.load_state_dict(saved)
        for name, ema in run.emas.items():
            ema.load_state_dict(loaded["emas"][name])
        if run.stopper is not None and loaded.get("early_stopping") is not None:
            run.stopper.load_state_dict(loaded["early_stopping"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {folder}: its loop state does not match this run "
                              f"({error})") from error


def _loop_state(run: RunState) -> dict[str, Any]:
    """Everything but models, optimizers and RNGs that a resumed run needs (same on all ranks)."""
    return {
        "step": run.state.step,
        "schedulers": {name: s.state_dict() for name, s in run.parts.schedulers.items()},
        "emas": {name: ema.state_dict() for name, ema in run.emas.items()},
        "early_stopping": None if run.stopper is None else run.stopper.state_dict(),
    }


def _checkpoint(run: RunState, keep_last: int) -> Path | None:
    """Save a checkpoint at the current step, unless any weight, EMA or optimizer state is
    NaN/inf: then nothing is written (nor pruned) and None is returned."""
    bad = _non_finite(run)
    if bad:
        logger.error("step %d: %s hold NaN/inf values; not saving them as a checkpoint",
                     run.state.step, ", ".join(bad))
        return None

    def write_loop_state(folder: Path) -> None:
        """What ``save_checkpoint`` calls on every rank to add the loop's own state."""
        save_rng_state(folder, run.accelerator.process_index, run.state.generator)
        if run.accelerator.is_main_process:
            save_loop_state(folder, _loop_state(run))

    return save_checkpoint(run.accelerator, run.run_dir, run.state.step, keep_last,
                           write_loop_state)


def _non_finite(run: RunState) -> list[str]:
    """The models, EMAs and optimizers holding NaN/inf on any rank (same list on every rank)."""
    groups: dict[str, Iterable[torch.Tensor]] = {}
    for name, model in run.parts.models.items():
        groups[f"model '{name}'"] = itertools.chain(model.parameters(), model.buffers())
    for name, ema in run.emas.items():
        groups[f"EMA of '{name}'"] = ema.shadow.values()
    for name, optimizer in run.parts.optimizers.items():
        groups[f"optimizer '{name}'"] = (value for entry in optimizer.state.values()
                                         for value in entry.values() if torch.is_tensor(value))
    flags = torch.tensor([0.0 if _all_finite(tensors) else 1.0 for tensors in groups.values()],
                         device=run.accelerator.device)
    if run.accelerator.num_processes > 1:
        flags = run.accelerator.reduce(flags, reduction="sum")
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


def _train(run: RunState) -> None:
    train, state, parts, accelerator = run.settings.train, run.state, run.parts, run.accelerator
    if state.step >= run.max_steps:
        logger.info("already at step %d >= max_steps %d; nothing to train", state.step,
                    run.max_steps)
        return
    if run.stopper is not None and run.stopper.stopped:
        logger.info("early stopping already ended this run at step %d", state.step)
        return
    per_epoch = len(parts.train_loader)
    done = state.step * train.grad_accum
    stream = _batches(accelerator, parts.train_loader, done // per_epoch, done % per_epoch)
    sums: dict[str, float] = defaultdict(float)
    counted, samples, tic = 0, 0, time.perf_counter()
    models = list(parts.models.values())
    for module in models:
        module.train()
    # The console: a bar with ETA and running loss on a terminal, else a line per log_every.
    progress = ConsoleProgress(train.progress, main=accelerator.is_main_process,
                               total=run.max_steps, initial=state.step)
    with progress:
        for _, batch in stream:
            with accelerator.accumulate(*models):
                values = run.stage.train_step(batch, state.step)
            samples += _batch_size(batch) * accelerator.num_processes
            for key, value in values.items():
                sums[key] += float(value)
            progress.observe(values)
            counted += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            progress.advance(state.step)
            for name, ema in run.emas.items():
                ema.update(accelerator.unwrap_model(parts.models[name]))
            last = state.step == run.max_steps
            if state.step % train.log_every == 0 or last:
                elapsed = time.perf_counter() - tic
                scalars = _reduce_mean(accelerator, {k: v / counted for k, v in sums.items()})
                scalars.update({f"lr/{n}": s.get_last_lr()[0] for n, s in parts.schedulers.items()})
                scalars["perf/steps_per_s"] = counted / train.grad_accum / max(elapsed, 1e-9)
                scalars["perf/samples_per_s"] = samples / max(elapsed, 1e-9)
                scalars = {f"train/{k}" if "/" not in k else k: v for k, v in scalars.items()}
                log_scalars(accelerator, run.run_dir, scalars, state.step)
                progress.logged(state.step, scalars)
                sums.clear()
                counted, samples, tic = 0, 0, time.perf_counter()
            stop = False
            if train.val_every and (state.step % train.val_every == 0 or last):
                metrics = _validate(run)
                if run.stopper is not None:
                    stop = _early_stopping(run, metrics)
                for module in models:
                    module.train()
            at_ckpt = bool(train.ckpt_every) and (state.step % train.ckpt_every == 0 or last)
            if (at_ckpt or stop) and _checkpoint(run, train.keep_last) is None:
                raise NonFiniteWeightsError(
                    f"the weights are not finite after step {state.step} (the loss still was); "
                    "lower the learning rate or enable grad_clip")
            if state.step >= run.max_steps or stop:
                break


def _early_stopping(run: RunState, metrics: dict[str, float]) -> bool:
    """Feed one validation to ``run.stopper``; export on improvement. True when the run must
    stop."""
    stopper, step = run.stopper, run.state.step
    if stopper.update(metrics, step):
        _export(run, step)
    scalars = {"early_stopping/bad_validations": float(stopper.bad_validations)}
    if stopper.best is not None:
        scalars["early_stopping/best"] = stopper.best
    log_scalars(run.accelerator, run.run_dir, scalars, step)
    if run.accelerator.is_main_process:
        write_json_atomic(run.run_dir / EARLY_STOPPING_FILE, {**stopper.summary(), "step": step})
    if stopper.stopped:
        logger.info("early stopping at step %d: val/%s has not improved by more than %g for "
                    "%d validations (best %.4g at step %d)", step, stopper.metric,
                    stopper.min_delta, stopper.patience, stopper.best, stopper.best_step)
    return stopper.stopped


def _export(run: RunState, step: int) -> None:
    """The main process exports the EMA weights of ``step`` to ``run.release_dir``."""
    run.stage.steps_done = step
    if run.accelerator.is_main_process:
        with _ema_weights(run):
            run.stage.export(run.release_dir)
        logger.info("exported EMA weights after %d steps to %s", step, run.release_dir)
    run.accelerator.wait_for_everyone()


@torch.no_grad()
def _validate(run: RunState) -> dict[str, float]:
    """Average ``stage.validate`` over ``train.val_batches`` batches (EMA weights), log it with
    media and return the scalars (same on every rank; keys without ``val/``)."""
    parts, step = run.parts, run.state.step
    if parts.val_loader is None:
        return {}
    sums: dict[str, float] = defaultdict(float)
    audio: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    count = 0
    for module in parts.models.values():
        module.eval()
    with _ema_weights(run):
        for index, batch in enumerate(parts.val_loader):
            if index >= run.settings.train.val_batches:
                break
            for key, value in run.stage.validate(batch).items():
                if key.startswith("audio/") and index == 0:
                    audio[f"val/{key[6:]}"] = np.asarray(value, dtype=np.float32)
                elif key.startswith("image/") and index == 0:
                    images[f"val/{key[6:]}"] = np.asarray(value)
                elif not key.startswith(("audio/", "image/")):
                    sums[key] += float(value)
            count += 1
    metrics = _reduce_mean(run.accelerator, {k: v / max(count, 1) for k, v in sums.items()})
    log_scalars(run.accelerator, run.run_dir, {f"val/{k}": v for k, v in metrics.items()}, step)
    sample_rate = int(run.cfg.get("audio", {}).get("sample_rate", 48000))
    log_media(run.accelerator, audio, images, step, sample_rate)
    logger.info("step %d validation: %s", step,
                ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    return metrics


def _ema_weights(run: RunState) -> ExitStack:
    """A context holding every EMA'd model's averaged weights (live weights restored on exit)."""
    stack = ExitStack()
    for name, ema in run.emas.items():
        stack.enter_context(ema.swapped_in(run.accelerator.unwrap_model(run.parts.models[name])))
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

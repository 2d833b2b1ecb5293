"""``RestorationPipeline``: degraded audio of any rate and length in, restored 48 kHz out.

The steps, numbered as in the code:

1. resample to 48 kHz (streaming soxr)
2. loudness-normalise to ``target_lufs``, keeping the gain (measured in a first pass)
3. analyse each channel (bandwidth, noise, room, clipping, codec, silence) in that same
   first pass, and decide the file's ``Treatment``: what to recover, keep and generate
4. waveform recovery (DeepFilterNet3) over the whole stream, kept per segment where it
   removed noise or a room (``hireslm.pipeline.gate``)
5. where nothing is missing: the (recovered) input is the output; skip to step 13
6. split into overlapping chunks of ``chunk_seconds`` (channels become batch rows)
7. log-mel, then the optional mel recovery model
8. encode the recovered mel with the VAE: ``z_cond``
9. sample the DiT for ``num_steps``, chunks batched: ``z_0``
10. decode ``z_0`` to a mel with the VAE, and render the waveform with the vocoder
11. keep what is trusted: the recovered input below each channel's cutoff, the generated
    band above it (``hireslm.pipeline.fusion``); ``--keep none`` keeps only the generated
12. overlap-add the chunks with crossfades, cut to the input's exact duration
13. undo the loudness gain
14. peak-safe: a soft limiter, so the output never clips

Every step streams, so a file of hours is restored in memory bounded by one batch of chunks.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hireslm.analysis import ChannelAnalysis, SignalAnalyzer
from hireslm.audio import AudioConfig, LogMelSpectrogram, apply_gain, loudness_gain_db
from hireslm.audio.io import is_silent
from hireslm.audio.limiter import soft_limit
from hireslm.audio.loudness import measure_loudness
from hireslm.config import plain
from hireslm.diffusion.objectives import build_objective
from hireslm.diffusion.sampling import build_scheduler, sample
from hireslm.models.dit import DiT
from hireslm.models.recovery import PRETRAINED_RECOVERY, RecoveryNet, WaveRecovery
from hireslm.models.vae import MelVAE
from hireslm.models.vocoder import Vocoder
from hireslm.pipeline.chunking import ChunkPlan, OverlapAdd, iter_chunks
from hireslm.pipeline.fusion import fuse_bands
from hireslm.pipeline.gate import GateStats, gated_recovery
from hireslm.pipeline.options import DEFAULT_OPTIONS, RestoreOptions
from hireslm.pipeline.source import output_length, stream_resampled
from hireslm.pipeline.treatment import Treatment, decide_treatment
from hireslm.release import (
    config_errors,
    load_audio_config,
    load_release_config,
    load_stage,
    save_pretrained_entry,
    save_stage,
    stage_entry,
)

logger = logging.getLogger(__name__)

REQUIRED_STAGES = ("vae", "dit", "vocoder")
OPTIONAL_STAGES = ("recovery",)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class RestorationPipeline:
    """The three stages (and optional recovery) of a release, ready to restore audio.

    Args:
        vae, dit, vocoder: the generative stages.
        specs: stage name -> its release entry (``model``, ``kwargs`` and stage extras such as
            the VAE's ``latent_scale`` and the DiT's ``objective`` and ``sampling``).
        audio: the audio front end the stages were trained with.
        mel_recovery: a trained mel recovery model (the release's ``recovery`` stage), or
        wave_recovery: a pretrained waveform recovery (``PRETRAINED_RECOVERY``), named by the
            release's ``recovery`` entry in place of a trained mel one.
    """

    def __init__(
        self, *, vae: MelVAE, dit: DiT, vocoder: Vocoder,
        specs: Mapping[str, Mapping[str, Any]], audio: AudioConfig,
        mel_recovery: RecoveryNet | None = None, wave_recovery: WaveRecovery | None = None,
    ) -> None:
        if wave_recovery is not None and mel_recovery is not None:
            raise ValueError("a release has one recovery stage: a mel model or a waveform one")
        self.vae, self.dit, self.vocoder = vae.eval(), dit.eval(), vocoder.eval()
        self.mel_recovery = None if mel_recovery is None else mel_recovery.eval()
        self.specs = {name: dict(spec) for name, spec in specs.items()}
        self.wave_recovery = wave_recovery
        self.audio = audio
        self.mel = LogMelSpectrogram(audio)
        self.latent_scale = float(self.specs["vae"].get("latent_scale", 1.0))
        self.objective = build_objective(self.specs["dit"]["objective"])
        sampling = self.specs["dit"].get("sampling", {}) or {}
        self.default_steps = int(sampling.get("num_steps", 8))
        self.default_scheduler = sampling.get("scheduler")
        self.device = torch.device("cpu")
        self.stage_seconds: dict[str, float] = defaultdict(float)

    # -- loading and saving -------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, release_dir: str | Path, device: str | torch.device = "cpu"
    ) -> RestorationPipeline:
        """Load a release folder strictly; any problem raises ``ReleaseError`` (one line,
        naming the file).

        ``config.yaml`` is checked whole before any weights are read: every stage's entry
        and the audio front end. Then ``load_stage`` checks each weights file against the
        sha256 ``meta.json`` records (``hireslm.release.verify_weights``: a release without
        hashes loads with a warning) and loads it strictly into its model.
        """
        optional = [s for s in OPTIONAL_STAGES if s in load_release_config(release_dir)]
        stages = [*REQUIRED_STAGES, *optional]
        specs = {stage: plain(stage_entry(release_dir, stage)) for stage in stages}
        audio = load_audio_config(release_dir)
        wave_recovery = None
        if "recovery" in specs and specs["recovery"]["model"] in PRETRAINED_RECOVERY:
            entry = specs["recovery"]
            with config_errors(release_dir, f"stage 'recovery' ({entry['model']})"):
                wave_recovery = PRETRAINED_RECOVERY[entry["model"]](**entry.get("kwargs", {}))
            stages.remove("recovery")
        models = {stage: load_stage(release_dir, stage, device) for stage in stages}
        with config_errors(release_dir, "pipeline settings"):
            pipeline = cls(vae=models["vae"], dit=models["dit"], vocoder=models["vocoder"],
                           specs=specs, audio=audio, mel_recovery=models.get("recovery"),
                           wave_recovery=wave_recovery)
        return pipeline.to(device)

    def save_pretrained(self, release_dir: str | Path) -> Path:
        """Write a release folder that ``from_pretrained`` loads back identically."""
        trained = self.trained_stages()
        for stage, spec in self.specs.items():
            extra = {k: v for k, v in spec.items() if k not in ("model", "kwargs")}
            if stage in trained:
                save_stage(release_dir, stage, trained[stage], extra=extra, audio=self.audio)
            else:
                save_pretrained_entry(release_dir, stage, spec["model"],
                                      spec.get("kwargs", {}), extra=extra)
        return Path(release_dir)

    def trained_stages(self) -> dict[str, nn.Module]:
        """The release's own models by stage name (the pretrained waveform recovery aside)."""
        stages = {"vae": self.vae, "dit": self.dit, "vocoder": self.vocoder}
        if self.mel_recovery is not None:
            stages["recovery"] = self.mel_recovery
        return stages

    @property
    def recovery_name(self) -> str | None:
        """The release's recovery model, as its ``recovery`` entry names it."""
        return self.specs["recovery"]["model"] if "recovery" in self.specs else None

    def to(self, device: str | torch.device) -> RestorationPipeline:
        self.device = torch.device(device)
        for model in self.trained_stages().values():
            model.to(self.device)
        self.mel.to(self.device)
        return self

    # -- restoring ----------------------------------------------------------------------

    def check_options(self, options: RestoreOptions) -> None:
        """Raise ``ValueError`` for options this release cannot honour, before any audio."""
        scheduler = build_scheduler(self.objective, options.scheduler or self.default_scheduler)
        if options.strength < 1.0 and scheduler is not None:
            raise ValueError(f"--strength below 1 needs a flow-matching release and its "
                             f"'euler' sampler; this one samples with {type(scheduler).__name__}")

    def decide(self, channels: list[ChannelAnalysis], options: RestoreOptions,
               frames: int | None = None) -> Treatment:
        """Step 3's decision for a file of ``frames`` 48 kHz samples whose channels were
        analysed as ``channels``."""
        return decide_treatment(channels, options.keep, frames=frames,
                                can_recover=self.wave_recovery is not None)

    def __call__(
        self, wave: np.ndarray, sample_rate: int, options: RestoreOptions = DEFAULT_OPTIONS
    ) -> np.ndarray:
        """Restore an in-memory ``(C, N)`` or ``(N,)`` wave; returns ``(C, M)`` float32 at
        48 kHz with ``M = round(N * 48000 / sample_rate)`` and every sample inside (-1, 1)."""
        return self.restore_with_treatment(wave, sample_rate, options)[0]

    def restore_with_treatment(
        self, wave: np.ndarray, sample_rate: int, options: RestoreOptions = DEFAULT_OPTIONS
    ) -> tuple[np.ndarray, Treatment | None]:
        """``__call__``, also returning the file's ``Treatment`` (None for digital silence)."""
        wave = wave[None] if wave.ndim == 1 else wave
        channels, frames = wave.shape
        total = output_length(frames, sample_rate, self.audio.sample_rate)
        if is_silent(wave):
            logger.warning("input is digital silence; returning silence")
            return np.zeros((channels, total), dtype=np.float32), None
        resampled = np.concatenate(
            list(stream_resampled(iter([wave]), sample_rate, self.audio.sample_rate,
                                  channels, total)), axis=1)
        gain_db = loudness_gain_db(measure_loudness(resampled, self.audio.sample_rate),
                                   options.target_lufs)
        # Clipping and silence are read off the samples as given (``SignalAnalyzer``).
        analyzer = SignalAnalyzer(self.audio.sample_rate, channels,
                                  native_sample_rate=sample_rate, native_samples=True)
        analyzer.update_native(wave)
        analyzer.update(resampled)
        treatment = self.decide(analyzer.result(), options, frames=total)
        blocks = self.restore_stream([resampled], total, channels, gain_db, options, treatment)
        return np.concatenate(list(blocks), axis=1), treatment

    def restore_stream(
        self,
        blocks_48k: Iterable[np.ndarray],
        total: int,
        channels: int,
        gain_db: float,
        options: RestoreOptions,
        treatment: Treatment,
        on_chunk: Callable[[int], None] | None = None,
        gate_stats: GateStats | None = None,
    ) -> Iterator[np.ndarray]:
        """Restore a stream of 48 kHz ``(C, n)`` blocks adding up to ``total`` samples.

        Yields finished ``(C, n)`` blocks adding up to exactly ``total``. ``gain_db`` is the
        loudness gain (step 2) applied before the models and undone after them;
        ``treatment`` is step 3's decision. ``on_chunk(samples)`` reports progress in 48 kHz
        input samples; ``gate_stats`` receives what the recovery gate kept.
        """
        self.check_options(options)
        normalised = (apply_gain(block, gain_db) for block in blocks_48k)  # 2.
        if treatment.recover:  # 4.
            if self.wave_recovery is None:
                raise ValueError("the treatment asks for recovery; this release has none")
            # Timed with the reading and resampling it pulls through.
            normalised = self._timed_blocks("recovery", gated_recovery(
                self.wave_recovery, normalised, channels, treatment.recovery_threshold_db,
                gate_stats, self.audio.sample_rate))
        if not treatment.generate:  # 5.
            for block in normalised:
                yield soft_limit(apply_gain(block, -gain_db))  # 13., 14.
                if on_chunk is not None:
                    on_chunk(block.shape[1])
            return
        yield from self._generate_stream(normalised, total, channels, gain_db, options,
                                         treatment, on_chunk)

    def _generate_stream(
        self, normalised: Iterable[np.ndarray], total: int, channels: int, gain_db: float,
        options: RestoreOptions, treatment: Treatment,
        on_chunk: Callable[[int], None] | None,
    ) -> Iterator[np.ndarray]:
        """Steps 6-14 over a stream of normalised (and recovered) ``(C, n)`` blocks."""
        sr = self.audio.sample_rate
        # Chunks are whole latent frames long, so chunk borders fall on frame borders.
        frame = self.audio.hop_length * int(self.vae.downsample)
        size = max(1, round(options.chunk_seconds * sr / frame)) * frame
        # A file shorter than one chunk is one chunk of its own length: padding a 1 s clip
        # to 8 s made short clips cost 8x.
        size = min(size, max(1, math.ceil(total / frame)) * frame)
        overlap = min(round(options.overlap_seconds * sr), size - 1)
        # The last chunk only as long as what is left (whole frames), not padded to a full
        # chunk: a 9 s file costs 9.5 s of model time, not 16.
        plan = ChunkPlan(total=total, size=size, overlap=overlap, quantum=frame)
        overlap_add = OverlapAdd(plan, channels)
        chunks = iter_chunks(normalised, plan, pad_mode="reflect")  # 6.
        chunks_per_batch = max(1, options.batch_size // channels)
        cutoffs = None if treatment.keep_below_hz is None \
            else torch.tensor(treatment.keep_below_hz, dtype=torch.float32)
        index = 0
        while index < plan.num_chunks:
            count = min(chunks_per_batch, plan.num_chunks - index)
            if count > 1 and plan.chunk_size(index + count - 1) != size:
                count -= 1  # a shorter last chunk is a batch of its own
            batch = [next(chunks) for _ in range(count)]
            rows = torch.from_numpy(np.concatenate(batch, axis=0))  # (len(batch) * C, size)
            seeds = [_row_seed(options.seed, index + i, c)
                     for i in range(len(batch)) for c in range(channels)]
            restored = torch.from_numpy(self.restore_chunks(rows, seeds, options))
            if cutoffs is not None:  # 11.
                with self._timed("fusion"):
                    restored = fuse_bands(rows, restored, cutoffs.repeat(len(batch)), sr)
            restored = restored.numpy().reshape(len(batch), channels, batch[0].shape[1])
            for chunk in restored:
                finished = overlap_add.add(chunk)  # 12.
                yield soft_limit(apply_gain(finished, -gain_db))  # 13., 14.
            if on_chunk is not None:  # the last batch also credits the file's final overlap
                last = index + len(batch) >= plan.num_chunks
                end = total if last else min(plan.start(index + len(batch)), total)
                on_chunk(end - plan.start(index))
            index += len(batch)

    @torch.inference_mode()
    def restore_chunks(
        self, chunks: torch.Tensor, seeds: list[int], options: RestoreOptions
    ) -> np.ndarray:
        """Steps 7-10 on a batch: loudness-normalised 48 kHz chunks ``(B, S)`` -> ``(B, S)``.

        ``seeds[b]`` seeds row ``b``'s diffusion noise, so a row's result does not depend on
        what else is in the batch.
        """
        device, (rows, samples) = self.device, chunks.shape
        autocast = (
            torch.autocast(device.type, dtype=_DTYPES[options.precision])
            if options.precision != "fp32" else nullcontext()
        )
        with autocast:
            with self._timed("mel"):
                mel = self.mel(chunks.to(device))  # 7. (B, n_mels, T)
                if self.mel_recovery is not None:
                    mel = self.mel_recovery(mel)
            with self._timed("encode"):
                z_cond = self.vae.encode(mel).mode() * self.latent_scale  # 8.
            num_steps = self.default_steps if options.num_steps is None else options.num_steps
            with self._timed("diffusion"):
                z_0 = z_cond if num_steps == 0 else sample(  # 9.
                    self.dit, self.objective, z_cond, num_steps,
                    scheduler=options.scheduler or self.default_scheduler,
                    latent_channels=z_cond.shape[1], noise=_row_noise(z_cond, seeds),
                    init=z_cond, strength=options.strength,
                )
            with self._timed("decode"):
                mel_hat = self.vae.decode(z_0 / self.latent_scale)  # 10.
                mel_hat = mel_hat[..., : mel.shape[-1]]
            with self._timed("vocoder"):
                wave = self.vocoder(mel_hat.float())[..., :samples]
        return wave.float().cpu().numpy().reshape(rows, samples)

    def _timed(self, stage: str):
        return _StageTimer(self.stage_seconds, stage, self.device)

    def _timed_blocks(self, stage: str, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` through, adding the time spent producing them to ``stage``."""
        while True:
            with self._timed(stage):
                block = next(blocks, None)
            if block is None:
                return
            yield block


class _StageTimer:
    """Adds a block's wall time to ``totals[stage]`` (synchronising CUDA so it is honest)."""

    def __init__(self, totals: dict[str, float], stage: str, device: torch.device) -> None:
        self.totals, self.stage, self.device = totals, stage, device

    def __enter__(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.totals[self.stage] += time.perf_counter() - self.start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _row_noise(z_cond: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Initial noise like ``z_cond`` ``(B, C, L)``, row ``b`` drawn from ``seeds[b]`` alone."""
    return torch.stack([
        torch.randn(z_cond.shape[1:], generator=torch.Generator().manual_seed(seed))
        for seed in seeds
    ]).to(z_cond.device)


def _row_seed(seed: int, chunk_index: int, channel: int) -> int:
    """A distinct, stable seed per (run seed, chunk, channel)."""
    return (seed * 1_000_003 + chunk_index * 1_009 + channel) % (2**63 - 1)

"""The generative stages: the band a recording lacks, made by VAE -> DiT -> vocoder.

``BandGenerator.generate`` takes a stream of loudness-normalised (and recovered) 48 kHz
blocks and the file's ``Treatment``, and yields the restored blocks (still normalised):

1. split into overlapping chunks (``ChunkPlan.for_stream``; channels become batch rows)
2. log-mel, then the optional mel recovery model
3. encode the mel with the VAE: ``z_cond``
4. sample the DiT for ``num_steps``, chunks batched: ``z_0``
5. decode ``z_0`` to a mel with the VAE, and render the waveform with the vocoder
6. keep what is trusted: the input below each channel's cutoff, the generated band above it
   (``hireslm.pipeline.fusion``); ``keep_below_hz=None`` keeps only the generated signal
7. overlap-add the chunks with crossfades, cut to the stream's exact length
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hireslm.audio import AudioConfig, LogMelSpectrogram
from hireslm.diffusion.objectives import build_objective
from hireslm.diffusion.sampling import build_scheduler, sample
from hireslm.models.dit import DiT
from hireslm.models.recovery import RecoveryNet
from hireslm.models.vae import MelVAE
from hireslm.models.vocoder import Vocoder
from hireslm.options import RestoreOptions
from hireslm.pipeline.chunking import ChunkPlan, OverlapAdd, iter_chunks
from hireslm.pipeline.fusion import fuse_bands
from hireslm.pipeline.timing import StageTimes
from hireslm.pipeline.treatment import Treatment
from hireslm.release import config_errors, generative_stages, load_stage

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class BandGenerator:
    """The VAE, DiT and vocoder of a release (and its optional mel recovery model).

    Args:
        vae, dit, vocoder: the generative stages.
        specs: stage name -> its release entry (the VAE's ``latent_scale``, the DiT's
            ``objective`` and ``sampling``).
        audio: the audio front end the stages were trained with.
        mel_recovery: a trained mel recovery model run on each chunk's mel, or None.
        times: where stage timings are added up.
    """

    def __init__(self, *, vae: MelVAE, dit: DiT, vocoder: Vocoder,
                 specs: Mapping[str, Mapping[str, Any]], audio: AudioConfig,
                 mel_recovery: RecoveryNet | None = None,
                 times: StageTimes | None = None) -> None:
        self.vae, self.dit, self.vocoder = vae.eval(), dit.eval(), vocoder.eval()
        self.mel_recovery = None if mel_recovery is None else mel_recovery.eval()
        self.audio = audio
        self.mel = LogMelSpectrogram(audio)
        self.latent_scale = float(specs["vae"].get("latent_scale", 1.0))
        self.objective = build_objective(specs["dit"]["objective"])
        sampling = specs["dit"].get("sampling", {}) or {}
        self.default_steps = int(sampling.get("num_steps", 8))
        self.default_scheduler = sampling.get("scheduler")
        self.times = times if times is not None else StageTimes()
        self.device = torch.device("cpu")
        self.times.device = self.device

    def models(self) -> dict[str, nn.Module]:
        """The trained models by stage name."""
        stages = {"vae": self.vae, "dit": self.dit, "vocoder": self.vocoder}
        if self.mel_recovery is not None:
            stages["recovery"] = self.mel_recovery
        return stages

    def to(self, device: str | torch.device) -> BandGenerator:
        self.device = torch.device(device)
        self.times.device = self.device
        for model in self.models().values():
            model.to(self.device)
        self.mel.to(self.device)
        return self

    def check_sampling(self, options: RestoreOptions) -> None:
        """Raise ``ValueError`` for a sampler setting this release cannot honour."""
        scheduler = build_scheduler(self.objective, options.scheduler)
        if options.strength < 1.0 and scheduler is not None:
            raise ValueError(f"--strength below 1 needs a flow-matching release and its "
                             f"'euler' sampler; this one samples with {type(scheduler).__name__}")

    def generate(
        self, normalised: Iterable[np.ndarray], total: int, channels: int,
        options: RestoreOptions, treatment: Treatment,
        on_done: Callable[[int], None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Steps 1-7 over normalised ``(C, n)`` blocks adding up to ``total``; yields the
        restored ``(C, m)`` blocks adding up to exactly ``total``. ``options`` are resolved
        (``RestorationPipeline.resolve``); ``on_done(samples)`` credits input samples done."""
        sr = self.audio.sample_rate
        plan = ChunkPlan.for_stream(
            total, chunk_seconds=options.chunk_seconds, overlap_seconds=options.overlap_seconds,
            frame=self.audio.hop_length * int(self.vae.downsample), sample_rate=sr)
        overlap_add = OverlapAdd(plan, channels)
        chunks = iter_chunks(normalised, plan, pad_mode="reflect")  # 1.
        chunks_per_batch = max(1, options.batch_size // channels)
        cutoffs = None if treatment.keep_below_hz is None \
            else torch.tensor(treatment.keep_below_hz, dtype=torch.float32)
        index = 0
        while index < plan.num_chunks:
            count = min(chunks_per_batch, plan.num_chunks - index)
            if count > 1 and plan.chunk_size(index + count - 1) != plan.size:
                count -= 1  # a shorter last chunk is a batch of its own
            batch = [next(chunks) for _ in range(count)]
            rows = torch.from_numpy(np.concatenate(batch, axis=0))  # (len(batch) * C, size)
            seeds = [_row_seed(options.seed, index + i, c)
                     for i in range(len(batch)) for c in range(channels)]
            restored = torch.from_numpy(self.restore_chunks(rows, seeds, options))
            if cutoffs is not None:  # 6.
                with self.times.timed("fusion"):
                    restored = fuse_bands(rows, restored, cutoffs.repeat(len(batch)), sr)
            restored = restored.numpy().reshape(len(batch), channels, batch[0].shape[1])
            for chunk in restored:
                yield overlap_add.add(chunk)  # 7.
            if on_done is not None:  # the last batch also credits the file's final overlap
                last = index + len(batch) >= plan.num_chunks
                end = total if last else min(plan.start(index + len(batch)), total)
                on_done(end - plan.start(index))
            index += len(batch)

    @torch.inference_mode()
    def restore_chunks(
        self, chunks: torch.Tensor, seeds: list[int], options: RestoreOptions
    ) -> np.ndarray:
        """Steps 2-5 on a batch: loudness-normalised 48 kHz chunks ``(B, S)`` -> ``(B, S)``.

        ``seeds[b]`` seeds row ``b``'s diffusion noise, so a row's result does not depend on
        what else is in the batch. ``options.num_steps`` of None takes the release's.
        """
        device, (rows, samples) = self.device, chunks.shape
        autocast = (
            torch.autocast(device.type, dtype=_DTYPES[options.precision])
            if options.precision != "fp32" else nullcontext()
        )
        timed = self.times.timed
        with autocast:
            with timed("mel"):
                mel = self.mel(chunks.to(device))  # 2. (B, n_mels, T)
                if self.mel_recovery is not None:
                    mel = self.mel_recovery(mel)
            with timed("encode"):
                z_cond = self.vae.encode(mel).mode() * self.latent_scale  # 3.
            num_steps = self.default_steps if options.num_steps is None else options.num_steps
            with timed("diffusion"):
                z_0 = z_cond if num_steps == 0 else sample(  # 4.
                    self.dit, self.objective, z_cond, num_steps,
                    scheduler=options.scheduler or self.default_scheduler,
                    latent_channels=z_cond.shape[1], noise=_row_noise(z_cond, seeds),
                    init=z_cond, strength=options.strength,
                )
            with timed("decode"):
                mel_hat = self.vae.decode(z_0 / self.latent_scale)  # 5.
                mel_hat = mel_hat[..., : mel.shape[-1]]
            with timed("vocoder"):
                wave = self.vocoder(mel_hat.float())[..., :samples]
        return wave.float().cpu().numpy().reshape(rows, samples)


def _row_noise(z_cond: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Initial noise like ``z_cond`` ``(B, C, L)``, row ``b`` drawn from ``seeds[b]`` alone."""
    return torch.stack([
        torch.randn(z_cond.shape[1:], generator=torch.Generator().manual_seed(seed))
        for seed in seeds
    ]).to(z_cond.device)


def _row_seed(seed: int, chunk_index: int, channel: int) -> int:
    """A distinct, stable seed per (run seed, chunk, channel)."""
    return (seed * 1_000_003 + chunk_index * 1_009 + channel) % (2**63 - 1)


def load_generator(release_dir: str | Path, specs: Mapping[str, Mapping[str, Any]],
                   audio: AudioConfig, device: Any = None,
                   times: StageTimes | None = None, *, verified: bool = False) -> BandGenerator:
    """Build the release's generative stages, load their weights strictly (``load_stage``;
    ``verified``: their hashes were checked already) and place them on ``device`` (None:
    this process's GPU, ``LOCAL_RANK`` under a launcher, if there is one; else the CPU)."""
    if device is None:
        device = (torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                  if torch.cuda.is_available() else torch.device("cpu"))
    models = {stage: load_stage(release_dir, stage, device, verify=not verified)
              for stage in generative_stages(specs)}
    with config_errors(release_dir, "pipeline settings"):
        generator = BandGenerator(vae=models["vae"], dit=models["dit"],
                                  vocoder=models["vocoder"], specs=specs, audio=audio,
                                  mel_recovery=models.get("recovery"), times=times)
    return generator.to(device)

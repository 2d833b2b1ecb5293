"""``RestorationPipeline``: degraded audio of any rate and length in, restored 48 kHz out.

``restore(source, options)`` (or ``stream`` for bounded memory) is the one call, for files
and arrays alike. The steps, numbered as in the code:

1. the first pass (``hireslm.analysis.first_pass``): decode, check (finite, sane peak) and
   measure the input: length at 48 kHz, loudness, each channel's analysis
2. decide the file's ``Treatment`` (``hireslm.pipeline.treatment``): what to recover, keep
   and generate; options were resolved (release defaults filled in) before
3. second pass: resample to 48 kHz (streaming soxr) and loudness-normalise to
   ``target_lufs`` with the gain the first pass measured
4. waveform recovery (DeepFilterNet3) over the whole stream, kept per segment where it
   removed noise or a room (``hireslm.pipeline.gate``)
5. where a band is missing: the generative stages make it (``hireslm.pipeline.generator``)
6. undo the loudness gain; peak-safe: a soft limiter, so the output never clips
7. the output check (``hireslm.pipeline.output_check``): finite, at a sane level

Every step streams, so a file of hours is restored in memory bounded by one batch of chunks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hireslm.analysis import SignalAnalyzer
from hireslm.analysis.first_pass import InputAnalysis, analyse_source
from hireslm.audio import AudioConfig, apply_gain, loudness_gain_db
from hireslm.audio.limiter import soft_limit
from hireslm.audio.source import AudioSource, as_source, blocks_at
from hireslm.audio.stream import BLOCK_SECONDS
from hireslm.config import plain
from hireslm.options import DEFAULT_OPTIONS, RestoreOptions
from hireslm.pipeline.account import Restoration, RestorationAccount, RestoredAudio
from hireslm.pipeline.evidence import verdicts
from hireslm.pipeline.gate import GateStats, Judge, always_recovered, gated_recovery
from hireslm.pipeline.output_check import OutputCheck
from hireslm.pipeline.spool import BlockSpool
from hireslm.pipeline.timing import StageTimes
from hireslm.pipeline.treatment import Treatment, decide_treatment
from hireslm.recovery import PRETRAINED_RECOVERY, WaveRecovery
from hireslm.release import (
    REQUIRED_STAGES,
    ReleaseError,
    config_errors,
    generative_stages,
    load_audio_config,
    load_release_config,
    save_pretrained_entry,
    save_stage,
    stage_entry,
    verify_weights,
    weights_path,
)
from hireslm.repair.source import RepairedSource
from hireslm.resources import default_release, missing_release_message

if TYPE_CHECKING:  # torch: loaded with the generative stages, on first need
    from hireslm.pipeline.generator import BandGenerator

logger = logging.getLogger(__name__)

OPTIONAL_STAGES = ("recovery",)
# A float input peaking above full scale is scaled down as a whole to peak here (it is float:
# nothing is lost), rather than flattened by the limiter.
PEAK_CEILING = 0.95
# An output whose loudest speech frames lost more than this against the input's is flagged.
SPEECH_LOSS_WARNING_DB = 3.0


class RestorationPipeline:
    """A release's stages, ready to restore audio.

    The generative stages (``BandGenerator``: VAE, DiT, vocoder, and torch with them) load
    on the first input that needs a band generated, once: a run whose files need only
    recovery, or nothing, never imports torch.

    Args:
        specs: stage name -> its release entry (``model``, ``kwargs`` and stage extras).
        audio: the audio front end the stages were trained with.
        wave_recovery: a pretrained waveform recovery (``PRETRAINED_RECOVERY``), named by the
            release's ``recovery`` entry, or None.
        generator: the generative stages, already loaded; or
        release_dir: the release to load them from when first needed.
        device: where they run (None: this process's GPU if there is one, else the CPU).
    """

    def __init__(self, *, specs: dict[str, dict[str, Any]], audio: AudioConfig,
                 wave_recovery: WaveRecovery | None = None,
                 generator: BandGenerator | None = None, release_dir: Path | None = None,
                 device: Any = None) -> None:
        if generator is None and release_dir is None:
            raise ValueError("give the generative stages, or the release to load them from")
        self.specs = {name: dict(spec) for name, spec in specs.items()}
        if wave_recovery is not None and self.specs.get("recovery", {}).get("model") \
                not in PRETRAINED_RECOVERY:
            raise ValueError("a release has one recovery stage: a mel model or a waveform one")
        self.audio = audio
        self.wave_recovery = wave_recovery
        self.release_dir = release_dir
        self.device = device
        self.times = generator.times if generator is not None else StageTimes()
        self._generator = generator
        self._resolved: dict[RestoreOptions, RestoreOptions] = {}
        self._limited: dict[float, WaveRecovery] = {}  # recovery per attenuation limit

    # -- loading and saving -------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, release_dir: str | Path | None = None, device: Any = "cpu", *,
                        lazy: bool = False) -> RestorationPipeline:
        """Load a release folder strictly (None: the shipped release, ``hireslm.resources``);
        any problem raises ``ReleaseError`` (one line, naming the file).

        ``config.yaml`` is checked whole before any weights are read: every stage's entry
        and the audio front end; each weights file is checked against the sha256
        ``meta.json`` records (``hireslm.release.verify_weights``: a release without hashes
        loads with a warning). With ``lazy`` the generative stages are built and loaded into
        ``device`` (None: a GPU if any) when first needed; else now.
        """
        if release_dir is None:
            release_dir = default_release()
            if not release_dir.is_dir():
                raise FileNotFoundError(missing_release_message())
        release_dir = Path(release_dir)
        optional = [s for s in OPTIONAL_STAGES if s in load_release_config(release_dir)]
        stages = [*REQUIRED_STAGES, *optional]
        specs = {stage: plain(stage_entry(release_dir, stage)) for stage in stages}
        audio = load_audio_config(release_dir)
        wave_recovery = None
        if "recovery" in specs and specs["recovery"]["model"] in PRETRAINED_RECOVERY:
            entry = specs["recovery"]
            with config_errors(release_dir, f"stage 'recovery' ({entry['model']})"):
                wave_recovery = PRETRAINED_RECOVERY[entry["model"]](**entry.get("kwargs", {}))
        for stage in generative_stages(specs):
            if not weights_path(release_dir, stage).is_file():
                raise ReleaseError(f"stage '{stage}': weights file "
                                   f"{weights_path(release_dir, stage)} is missing")
            verify_weights(release_dir, stage)
        pipeline = cls(specs=specs, audio=audio, wave_recovery=wave_recovery,
                       release_dir=release_dir, device=device)
        if not lazy:
            pipeline.generator  # noqa: B018 - loads the generative stages now
        return pipeline

    @property
    def generator(self) -> BandGenerator:
        """The generative stages, loaded (with torch) on first use."""
        if self._generator is None:
            from hireslm.pipeline.generator import load_generator

            self._generator = load_generator(self.release_dir, self.specs, self.audio,
                                             self.device, self.times, verified=True)
            self.device = self._generator.device
        return self._generator

    @property
    def generator_loaded(self) -> bool:
        return self._generator is not None

    def save_pretrained(self, release_dir: str | Path) -> Path:
        """Write a release folder that ``from_pretrained`` loads back identically."""
        trained = self.generator.models()
        for stage, spec in self.specs.items():
            extra = {k: v for k, v in spec.items() if k not in ("model", "kwargs")}
            if stage in trained:
                save_stage(release_dir, stage, trained[stage], extra=extra, audio=self.audio)
            else:
                save_pretrained_entry(release_dir, stage, spec["model"],
                                      spec.get("kwargs", {}), extra=extra)
        return Path(release_dir)

    @property
    def recovery_name(self) -> str | None:
        """The release's recovery model, as its ``recovery`` entry names it."""
        return self.specs["recovery"]["model"] if "recovery" in self.specs else None

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds spent per stage since the pipeline was made."""
        return self.times.seconds

    def to(self, device: Any) -> RestorationPipeline:
        self.device = device
        if self._generator is not None:
            self._generator.to(device)
        return self

    # -- restoring ----------------------------------------------------------------------

    def resolve(self, options: RestoreOptions = DEFAULT_OPTIONS) -> RestoreOptions:
        """``options`` with the release's defaults filled in (``num_steps``, ``scheduler``),
        checked against what this release can honour; ``ValueError`` otherwise. Sampler
        settings that differ from the release's (a scheduler, ``strength`` below 1) are
        checked against the DiT's objective, which loads the generative stages."""
        if options not in self._resolved:
            sampling = self.specs["dit"].get("sampling") or {}
            resolved = replace(
                options,
                num_steps=int(sampling.get("num_steps", 8)) if options.num_steps is None
                else options.num_steps,
                scheduler=options.scheduler or sampling.get("scheduler"))
            if options.scheduler is not None or options.strength < 1.0:
                self.generator.check_sampling(resolved)
            self._resolved[options] = self._resolved[resolved] = resolved
        return self._resolved[options]

    def __call__(self, wave: Any, sample_rate: int,
                 options: RestoreOptions = DEFAULT_OPTIONS) -> np.ndarray:
        """``restore(wave, options, sample_rate=sample_rate).audio``."""
        return self.restore(wave, options, sample_rate=sample_rate).audio

    def restore(self, source: Any, options: RestoreOptions = DEFAULT_OPTIONS, *,
                sample_rate: int | None = None) -> RestoredAudio:
        """Restore a file path, or in-memory samples at ``sample_rate`` (NumPy or torch;
        ``(N,)`` or ``(C, N)``), whole: ``(C, M)`` float32 at 48 kHz with
        ``M = round(N * 48000 / sample_rate)``, and the account. For long files, ``stream``.

        Raises:
            AudioError: the input cannot be read, is empty, not finite, or out of range.
            BadOutputError: the models' output is not finite or not at a sane level.
            ValueError: options this release cannot honour.
        """
        restoration = self.stream(source, options, sample_rate=sample_rate)
        audio = np.concatenate(list(restoration), axis=1)
        return RestoredAudio(audio, self.audio.sample_rate, restoration.account)

    def stream(self, source: Any, options: RestoreOptions = DEFAULT_OPTIONS, *,
               sample_rate: int | None = None,
               on_progress: Callable[[float], None] | None = None) -> Restoration:
        """``restore``, streaming: runs the first pass (steps 1-2) now, and returns the
        ``Restoration`` whose blocks run steps 3-7 as they are read, in bounded memory.
        ``on_progress(seconds)`` credits input seconds done as blocks are produced."""
        start = time.perf_counter()
        options = self.resolve(options)
        source = as_source(source, sample_rate)
        sr = self.audio.sample_rate
        analysis = analyse_source(source, sr)  # 1.
        gain_db = loudness_gain_db(analysis.loudness_lufs, options.target_lufs)
        account = RestorationAccount(
            input_sample_rate=analysis.sample_rate, channels=analysis.channels,
            duration_s=analysis.duration_s, output_frames=analysis.frames_48k,
            gain_db=gain_db, silent=analysis.is_silent, warnings=list(analysis.warnings),
            analysis=[channel.to_dict() for channel in analysis.channel_analysis])
        credit = None if on_progress is None else (lambda n: on_progress(n / sr))
        headroom_db = 0.0
        if analysis.peak > 1.0:
            headroom_db = 20.0 * math.log10(analysis.peak / PEAK_CEILING)
            account.warnings.append(
                f"the input peaks {20 * math.log10(analysis.peak):+.1f} dB over full scale "
                f"(float samples): the output is scaled down {headroom_db:.1f} dB as a whole, "
                "so nothing clips")
        if not analysis.is_silent and options.repair:
            source = _with_local_repairs(source, analysis)
        if analysis.is_silent:
            account.warnings.append("input is digital silence; wrote silence")
            blocks = _silence(analysis, int(BLOCK_SECONDS * sr), credit)
        else:
            treatment = decide_treatment(  # 2.
                list(analysis.channel_analysis), options.keep, frames=analysis.frames_48k,
                can_recover=self.wave_recovery is not None, denoise=options.denoise,
                min_generated_hz=options.min_generated_hz,
                complete_band_hz=options.complete_band_hz,
                declip=isinstance(source, RepairedSource) and source.clip_levels is not None)
            blocks = self._restored_blocks(source, analysis, gain_db, headroom_db, options,
                                           treatment, account, credit)
        return Restoration(_finished(blocks, account, start), account, sr)

    def _restored_blocks(
        self, source: AudioSource, analysis: InputAnalysis, gain_db: float,
        headroom_db: float, options: RestoreOptions, treatment: Treatment,
        account: RestorationAccount, credit: Callable[[int], None] | None,
    ) -> Iterator[np.ndarray]:
        """Steps 3-7; fills in the account's treatment and level changes once done."""
        sr, channels, total = self.audio.sample_rate, analysis.channels, analysis.frames_48k
        check = OutputCheck(sr)
        gate = GateStats()
        normalised = (apply_gain(block, gain_db)  # 3.
                      for block in check.watch_input(blocks_at(source, sr)))
        if treatment.recover:  # 4.
            normalised, treatment = self._recover(normalised, analysis, options, treatment,
                                                  gate)
        if treatment.generate:  # 5.
            restored = self.generator.generate(normalised, total, channels, options,
                                               treatment, on_done=credit)
        else:
            restored = _credited(normalised, credit)
        undo = -gain_db - headroom_db
        finished = (soft_limit(apply_gain(block, undo)) for block in restored)  # 6.
        yield from check.watch_output(finished, sr)  # 7.
        check.finish()
        if isinstance(source, RepairedSource):
            treatment = replace(treatment, reasons=(*treatment.reasons, *source.reasons()))
        account.decision = treatment
        account.treatment = treatment.to_dict(
            self.recovery_name, sr / 2, gate.recovered_share() if treatment.recover else None)
        account.level_change_db = check.level_db()
        account.speech_change_db = check.speech_change_db()
        if account.speech_change_db is not None \
                and account.speech_change_db < -SPEECH_LOSS_WARNING_DB - headroom_db:
            account.warnings.append(
                f"the output's loudest speech frames are {-account.speech_change_db:.1f} dB "
                "below the input's: check it (--denoise never keeps the input's speech)")

    def _recover(self, normalised: Iterator[np.ndarray], analysis: InputAnalysis,
                 options: RestoreOptions, treatment: Treatment,
                 gate: GateStats) -> tuple[Iterator[np.ndarray], Treatment]:
        """Step 4 over the whole stream: recovery, judged per segment, kept in a spool while
        the band of what comes out is measured again; returns the recovered stream and the
        treatment decided after it (``Treatment.after_recovery``)."""
        sr, channels = self.audio.sample_rate, analysis.channels
        judge = always_recovered if treatment.denoise == "always" else self._judge(analysis)
        mixed = self.times.timed_blocks("recovery", gated_recovery(
            self._recovery_for(options), normalised, channels, judge, gate, sr))
        spool = BlockSpool(channels)
        band = SignalAnalyzer(sr, channels)
        for block in mixed:
            spool.write(block)
            with self.times.timed("band again"):
                band.update(block)
        segments = [_segment_record(start, length, verdicts, sr)
                    for start, length, verdicts in gate.segments]
        treatment = treatment.after_recovery(analysis.channel_analysis, band.result(),
                                             gate.recovered_share(), segments)
        return spool.blocks(int(BLOCK_SECONDS * sr)), treatment

    def _recovery_for(self, options: RestoreOptions) -> WaveRecovery:
        """The release's waveform recovery, with ``options.atten_limit_db`` if set."""
        if self.wave_recovery is None:
            raise ValueError("the treatment asks for recovery; this release has none")
        if options.atten_limit_db is None:
            return self.wave_recovery
        if options.atten_limit_db not in self._limited:
            entry = self.specs["recovery"]
            kwargs = {**entry.get("kwargs", {}), "atten_lim_db": options.atten_limit_db}
            self._limited[options.atten_limit_db] = PRETRAINED_RECOVERY[entry["model"]](**kwargs)
        return self._limited[options.atten_limit_db]

    def _judge(self, analysis: InputAnalysis) -> Judge:
        """The per-segment judge of ``--denoise auto`` for this input."""
        sample_rate, timed = self.audio.sample_rate, self.times.timed

        def judge(dry: np.ndarray, wet: np.ndarray) -> list:
            with timed("evidence"):
                return verdicts(dry, wet, sample_rate)
        return judge


def _with_local_repairs(source: AudioSource, analysis: InputAnalysis) -> AudioSource:
    """``source`` read through the declipper where the first pass found clipped channels,
    and the dropout fill where it found short gaps; else ``source`` itself."""
    clipped = any(c.flags.clipped for c in analysis.channel_analysis)
    levels = analysis.clip_levels if clipped and analysis.clip_levels is not None \
        and analysis.clip_levels.any else None
    if levels is None and analysis.dropouts == 0:
        return source
    return RepairedSource(source, levels, dropouts=analysis.dropouts > 0)


def _segment_record(start: int, length: int, verdicts, sample_rate: int) -> dict[str, Any]:
    """A segment's line in the account: where it lies and each channel's verdict."""
    return {"start_s": round(start / sample_rate, 3),
            "end_s": round((start + length) / sample_rate, 3),
            "channels": [{"used": "recovered" if v.use_recovered else "input", **v.to_dict()}
                         for v in verdicts]}


def _credited(blocks: Iterator[np.ndarray],
              credit: Callable[[int], None] | None) -> Iterator[np.ndarray]:
    """``blocks``, crediting each one's samples once it has been handed on."""
    for block in blocks:
        yield block
        if credit is not None:
            credit(block.shape[1])


def _silence(analysis: InputAnalysis, block: int,
             credit: Callable[[int], None] | None) -> Iterator[np.ndarray]:
    """Digital silence in, digital silence out: ``(C, n)`` zero blocks of the exact length."""
    for start in range(0, analysis.frames_48k, block):
        n = min(block, analysis.frames_48k - start)
        yield np.zeros((analysis.channels, n), dtype=np.float32)
        if credit is not None:
            credit(n)


def _finished(blocks: Iterator[np.ndarray], account: RestorationAccount,
              start: float) -> Iterator[np.ndarray]:
    """``blocks``, then the wall time of the whole restoration into ``account.seconds``."""
    yield from blocks
    account.seconds = time.perf_counter() - start

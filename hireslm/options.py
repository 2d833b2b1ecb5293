"""The options of a restoration: what the signal level (``hireslm.pipeline``) and the job
level (``hireslm.jobs``) both read. Plain data, so planning a run imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "bf16", "fp16")
KEEP_MODES = ("auto", "input", "none")
DENOISE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class RestoreOptions:
    """Choices of a restoration run; none changes the model.

    ``num_steps``/``scheduler`` of None take the release's defaults; ``num_steps=0`` skips the
    diffusion model and decodes the input's own latent (VAE + vocoder resynthesis: on clean
    input, the ceiling the latent space allows; for evaluation). ``chunk_seconds`` is the
    length the models see at once; ``overlap_seconds`` is crossfaded between chunks.
    ``strength`` below 1 starts the diffusion from the input's own latent, part-noised, instead
    of from pure noise (``hireslm.diffusion.sample``): the result keeps more of the input's
    content and timing, and also more of its defects. ``keep`` chooses what of the input the
    output keeps (``hireslm.pipeline.treatment``): ``auto`` the recovered input below its
    cutoff, ``input`` the input itself below its cutoff, ``none`` nothing (fully generative).
    ``denoise`` chooses when the release's waveform recovery is used: ``auto`` runs it and
    keeps its output per segment where the evidence says it removed noise, not speech
    (``hireslm.pipeline.evidence``); ``always`` keeps its output everywhere; ``never`` does not
    run it. ``atten_limit_db`` caps how far recovery may attenuate any time-frequency bin
    (None: the release's setting, by default no limit); 6-20 dB leaves some noise in and
    never over-suppresses. ``min_generated_hz``: the generated band starts no lower than
    this (between a lower cutoff and it the output keeps what the input has): the band below
    8 kHz carries the speech itself, where a generated band that is not faithful lowers its
    quality (docs/results.md); 0 generates from the cutoff. ``complete_band_hz``: a channel
    whose band reaches this high counts as complete and nothing is generated for it (above
    an MP3 cutoff at 12-16 kHz the demo release's generated band lowered ViSQOL from 4.13 to
    3.85; 24000 generates above any cutoff). ``repair``: clipped runs are declipped and
    short dropouts filled where the first pass finds them (``hireslm.repair``).
    """

    num_steps: int | None = None
    scheduler: str | None = None
    chunk_seconds: float = 8.0
    overlap_seconds: float = 0.5
    batch_size: int = 4
    precision: str = "fp32"
    seed: int = 0
    target_lufs: float = -20.0
    strength: float = 1.0
    keep: str = "auto"
    denoise: str = "auto"
    atten_limit_db: float | None = None
    min_generated_hz: float = 8000.0
    complete_band_hz: float = 12000.0
    repair: bool = True

    def __post_init__(self) -> None:
        if self.keep not in KEEP_MODES:
            raise ValueError(f"keep must be one of {KEEP_MODES}, got {self.keep!r}")
        if self.denoise not in DENOISE_MODES:
            raise ValueError(f"denoise must be one of {DENOISE_MODES}, got {self.denoise!r}")
        if self.atten_limit_db is not None and not self.atten_limit_db >= 0.1:
            raise ValueError(f"atten_limit_db must be at least 0.1 dB, got {self.atten_limit_db}")
        if not 0.0 <= self.min_generated_hz <= 24000.0:
            raise ValueError(f"min_generated_hz must be in 0-24000, got {self.min_generated_hz}")
        if not 0.0 < self.complete_band_hz <= 24000.0:
            raise ValueError(f"complete_band_hz must be in (0, 24000], got "
                             f"{self.complete_band_hz}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_steps is not None and self.num_steps < 0:
            raise ValueError("num_steps must be >= 0 (0: resynthesis without diffusion)")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.chunk_seconds <= 0 or not 0 <= self.overlap_seconds < self.chunk_seconds:
            raise ValueError("need chunk_seconds > 0 and 0 <= overlap_seconds < chunk_seconds")


DEFAULT_OPTIONS = RestoreOptions()

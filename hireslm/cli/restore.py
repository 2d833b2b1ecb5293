"""``hireslm restore INPUT... -o OUTDIR``: restore files and folder trees to 48 kHz.

argparse -> options -> ``hireslm.jobs.run`` -> summary. Runs in one process, or in several
under ``accelerate launch -m hireslm restore ...`` (or torchrun), which split the files
between them and merge one report at the end. Every default and choice is
``RestoreOptions``' or ``RunSettings``' own.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hireslm import jobs
from hireslm.jobs.run import OUTPUT_FORMATS, SUBTYPES
from hireslm.options import DENOISE_MODES, KEEP_MODES, PRECISIONS, RestoreOptions

logger = logging.getLogger(__name__)

OPTIONS = RestoreOptions()
SETTINGS = jobs.RunSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders")
    parser.add_argument("-o", "--output-dir", type=Path, required=True,
                        help="where restored files go (mirrors the input tree)")
    parser.add_argument("--checkpoint", type=Path, default=SETTINGS.release,
                        help="release folder (default: the shipped demo release)")
    parser.add_argument("--steps", type=int, default=OPTIONS.num_steps,
                        help="diffusion steps (default: the release's); 0 resynthesises "
                        "the input through VAE and vocoder only, for evaluation")
    parser.add_argument("--scheduler", default=OPTIONS.scheduler,
                        help="sampler (default: the release's)")
    parser.add_argument("--strength", type=float, default=OPTIONS.strength,
                        help="in (0, 1]: below 1 the diffusion starts from the input's own "
                        "latent, part-noised; keeps more of its content and timing, and of "
                        "its defects (flow-matching releases, euler sampler) "
                        "(default: %(default)s)")
    parser.add_argument("--keep", choices=KEEP_MODES, default=OPTIONS.keep,
                        help="what of the input to keep: 'auto' recovers noisy or reverberant "
                        "input and keeps it below its cutoff, generating only the missing band; "
                        "'input' keeps the input itself below its cutoff; 'none' regenerates "
                        "everything, as in the paper (default: %(default)s)")
    parser.add_argument("--denoise", choices=DENOISE_MODES, default=OPTIONS.denoise,
                        help="when the denoiser's output is used: 'auto' runs it and keeps its "
                        "output per 8 s segment where what it removed is noise, not speech "
                        "(the evidence is in the report); 'always' everywhere; 'never' not at "
                        "all (default: %(default)s)")
    parser.add_argument("--atten-limit-db", type=float, default=OPTIONS.atten_limit_db,
                        help="the most the denoiser may attenuate any part of the spectrum, in "
                        "dB (e.g. 12: some noise stays, speech is never over-suppressed; "
                        "default: no limit)")
    parser.add_argument("--min-generated-hz", type=float, default=OPTIONS.min_generated_hz,
                        help="the generated band starts no lower than this; below it, down to "
                        "the input's cutoff, the input is kept as it is (the demo release's "
                        "band lowers speech quality below 8 kHz); 0: from the cutoff "
                        "(default: %(default)s)")
    parser.add_argument("--complete-band-hz", type=float, default=OPTIONS.complete_band_hz,
                        help="a band reaching this high counts as complete: nothing is "
                        "generated above it (24000: above any cutoff) (default: %(default)s)")
    parser.add_argument("--no-repair", dest="repair", action="store_false",
                        help="leave clipped runs and short dropouts as they are (by default "
                        "they are declipped and filled where found; docs/repair.md)")
    parser.add_argument("--device", default=SETTINGS.device,
                        help="cpu, cuda, cuda:N (default: this process's GPU if any, else cpu)")
    parser.add_argument("--precision", default=OPTIONS.precision, choices=PRECISIONS,
                        help="the models' arithmetic: bf16/fp16 autocast are faster on GPUs "
                        "(fp16: GPUs only) (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the models (default: torch's, one per physical "
                        "core, or OMP_NUM_THREADS); see docs/benchmarks.md")
    parser.add_argument("--batch-size", type=int, default=OPTIONS.batch_size,
                        help="chunks per model call (more: faster on a GPU, more memory) "
                        "(default: %(default)s)")
    parser.add_argument("--chunk-seconds", type=float, default=OPTIONS.chunk_seconds,
                        help="length of audio the models see at once (default: %(default)s)")
    parser.add_argument("--overlap-seconds", type=float, default=OPTIONS.overlap_seconds,
                        help="crossfade between neighbouring chunks (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=OPTIONS.seed,
                        help="random seed of the diffusion noise (same seed, same output) "
                        "(default: %(default)s)")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS),
                        default=SETTINGS.output_format, help="output file format "
                        "(default: %(default)s)")
    parser.add_argument("--bit-depth", choices=sorted(SUBTYPES), default=SETTINGS.bit_depth,
                        help="output sample format (float: 32-bit float) (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="redo files whose output already exists, also those made by "
                        "another release or other settings")
    parser.add_argument("--overrides", type=Path, default=SETTINGS.overrides,
                        help="YAML mapping file patterns to options for those files, e.g. "
                        "'tapes/a.wav: {denoise: never}' (docs/restoring.md)")
    parser.add_argument("--stream", type=int, default=SETTINGS.stream,
                        help="the audio stream to restore of files that have several (0 is "
                        "the first; default: the file's default stream, else the first with "
                        "sound; the report names the one read)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be done")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-html", action="store_true",
                        help="do not write OUTDIR/restore_report.html (spectrograms and "
                        "players per file)")


def run(args: argparse.Namespace) -> int:
    """Restore; 0 when every file is done, 1 when any failed, 2 for a usage error."""
    try:
        options = RestoreOptions(
            num_steps=args.steps, scheduler=args.scheduler, chunk_seconds=args.chunk_seconds,
            overlap_seconds=args.overlap_seconds, batch_size=args.batch_size,
            precision=args.precision, seed=args.seed, strength=args.strength, keep=args.keep,
            denoise=args.denoise, atten_limit_db=args.atten_limit_db,
            min_generated_hz=args.min_generated_hz, complete_band_hz=args.complete_band_hz,
            repair=args.repair)
        settings = jobs.RunSettings(
            release=args.checkpoint, device=args.device, output_format=args.format,
            bit_depth=args.bit_depth, force=args.force, progress=not args.no_progress,
            html=not args.no_html, overrides=args.overrides, stream=args.stream)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    try:
        if args.dry_run:
            print("\n".join(jobs.dry_run(args.inputs, args.output_dir, settings)))
            return 0
        summary = jobs.run(args.inputs, args.output_dir, options, settings)
    except jobs.RunError as exc:
        logger.error("%s", exc)
        return exc.exit_code
    logger.info("%s; report %s", summary.describe(), summary.report)
    return summary.exit_code

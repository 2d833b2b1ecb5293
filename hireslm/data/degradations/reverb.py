"""Reverberation: convolution with a measured or a simulated (pyroomacoustics) room response.

The output stays sample-aligned with the input: the convolution is shifted by the RIR's
direct-path delay (its largest peak), so the dry sound lands where it was and only the
reflections trail behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyroomacoustics as pra
from scipy import signal

from hireslm.audio.resample import resample
from hireslm.data.degradations._common import as_2d, check_wave, power

# Source and microphone keep this distance (m) from every wall.
WALL_MARGIN_M = 0.5


@dataclass(frozen=True)
class SimulatedRoom:
    """A simulated shoebox room response and the geometry it came from."""

    rir: np.ndarray  # (M,) float32 at the simulation rate
    room_dims_m: tuple[float, float, float]
    source_m: tuple[float, float, float]
    mic_m: tuple[float, float, float]
    rt60_target_s: float
    rt60_measured_s: float
    max_order: int


def random_room_dims(rng: np.random.Generator) -> tuple[float, float, float]:
    """Length, width, height (m) of a random room from a booth to a small hall."""
    return (
        float(rng.uniform(3.0, 12.0)),
        float(rng.uniform(2.5, 9.0)),
        float(rng.uniform(2.4, 4.5)),
    )


def simulate_rir(
    sample_rate: int,
    rng: np.random.Generator,
    *,
    rt60_s: float,
    room_dims_m: Sequence[float] | None = None,
    max_order: int | None = None,
) -> SimulatedRoom:
    """Simulate a shoebox RIR with the image-source method.

    Wall absorption comes from ``pyroomacoustics.inverse_sabine(rt60_s, dims)``, which
    overshoots: the measured RT60 is often 1.3-1.5x the target for RT60 >= 0.6 s (see
    docs/degradations.md); ``rt60_measured_s`` reports what the response really has.
    ``max_order`` caps the reflection order below inverse_sabine's choice, which makes long
    rooms ~10x faster and shortens their tails.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    if room_dims_m is None:
        dims = _fit_room(np.asarray(random_room_dims(rng)), rt60_s)
    else:
        dims = np.asarray(room_dims_m, dtype=float)
    if dims.shape != (3,) or np.any(dims <= 2 * WALL_MARGIN_M):
        raise ValueError(f"room_dims_m must be 3 lengths > {2 * WALL_MARGIN_M} m, got {dims}")
    try:
        absorption, order = pra.inverse_sabine(rt60_s, dims)
    except ValueError as exc:
        raise ValueError(f"a {dims} m room cannot be as dry as RT60 {rt60_s} s") from exc
    if max_order is not None:
        order = min(order, int(max_order))
    source = rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M)
    mic = rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M)
    room = pra.ShoeBox(
        dims, fs=int(sample_rate), materials=pra.Material(float(min(absorption, 1.0))),
        max_order=int(order),
    )
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    measured = float(pra.experimental.measure_rt60(rir, fs=int(sample_rate), decay_db=30))
    return SimulatedRoom(
        rir=rir,
        room_dims_m=tuple(float(d) for d in dims),
        source_m=tuple(float(v) for v in source),
        mic_m=tuple(float(v) for v in mic),
        rt60_target_s=float(rt60_s),
        rt60_measured_s=measured,
        max_order=int(order),
    )


def _fit_room(dims: np.ndarray, rt60_s: float) -> np.ndarray:
    """Shrink ``dims`` (uniformly) until Sabine's absorption for ``rt60_s`` is below 1.

    Sabine: alpha = 24 ln(10) V / (c S RT60), so V/S must stay under c RT60 / (24 ln 10); V/S
    scales linearly with the room's size. A small margin keeps inverse_sabine's own check happy.
    """
    volume_over_surface = np.prod(dims) / (2 * (dims[0] * dims[1] + dims[1] * dims[2]
                                                + dims[0] * dims[2]))
    allowed = 0.9 * pra.constants.get("c") * rt60_s / (24 * np.log(10))
    if volume_over_surface > allowed:
        dims = dims * (allowed / volume_over_surface)
    return dims


def direct_path_index(rir: np.ndarray) -> int:
    """Index of the direct sound in a ``(M,)`` RIR: its largest-magnitude sample."""
    return int(np.argmax(np.abs(rir)))


def convolve_aligned(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``(C, N)`` with a ``(M,)`` RIR, shifted by its direct-path delay, cut to N.

    The result is scaled to the input's power, so reverberation changes the sound, not its
    level (long rooms would otherwise add up to ~10 dB).
    """
    delay = direct_path_index(rir)
    length = wave.shape[-1]
    wet = signal.oaconvolve(wave.astype(np.float64), rir[None, :].astype(np.float64), axes=-1)
    wet = wet[:, delay : delay + length]
    if wet.shape[-1] < length:
        wet = np.pad(wet, ((0, 0), (0, length - wet.shape[-1])))
    dry_power, wet_power = power(wave), power(wet)
    if wet_power > 0.0:
        wet *= np.sqrt(dry_power / wet_power)
    return wet.astype(np.float32)


def reverb(
    wave: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    rir: np.ndarray | None = None,
    rir_sample_rate: int | None = None,
    rt60_s: float = 0.5,
    room_dims_m: Sequence[float] | None = None,
    max_order: int | None = None,
) -> np.ndarray:
    """Reverberate ``(C, N)`` float32 -> ``(C, N)``, direct path aligned, level kept.

    Args:
        rir: a measured RIR ``(M,)`` or ``(C', M)`` (first channel used) at ``rir_sample_rate``
            (default ``sample_rate``). ``None``: simulate a room with ``simulate_rir``
            (``rt60_s``, ``room_dims_m`` or random dims, ``max_order``).
    """
    wave = check_wave(wave, sample_rate, "reverb")
    if rir is None:
        response = simulate_rir(
            sample_rate, rng, rt60_s=rt60_s, room_dims_m=room_dims_m, max_order=max_order
        ).rir
    else:
        response = as_2d(np.asarray(rir, dtype=np.float32))[0]
        if response.size == 0 or not np.isfinite(response).all() or not response.any():
            raise ValueError("rir must be a finite, non-silent impulse response")
        response = resample(response, rir_sample_rate or sample_rate, sample_rate)
    return convolve_aligned(wave, response)

"""Reverberation: convolution with a measured or a simulated (pyroomacoustics) room response.

The output stays sample-aligned with the input: the convolution is shifted by the RIR's
direct-path delay (its largest peak), so the dry sound lands where it was and only the
reflections trail behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
from scipy import signal

from hireslm.audio.resample import resample
from hireslm.data.degradations._common import as_2d, check_wave, power
from hireslm.data.degradations.registry import DegradationEntry, Draw, Prepared, sample_param

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
    rt60_asked_s: float  # what inverse_sabine was given
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
    match_rt60: bool = True,
) -> SimulatedRoom:
    """Simulate a shoebox RIR with the image-source method.

    Wall absorption comes from ``pyroomacoustics.inverse_sabine(rt60_s, dims)``, which
    overshoots: the measured RT60 (T30) runs 1.2-1.4x the target from 0.4 s up (see
    docs/degradations.md). With ``match_rt60`` the same room is simulated once more, asking for
    ``rt60_s * rt60_s / measured``; that lands within about 10% of the target. ``max_order``
    caps the reflection order below inverse_sabine's choice: long rooms get tens of times
    faster and their tails shorter.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    if room_dims_m is None:
        # Room for the correction to ask for a drier room than the target.
        dims = _fit_room(np.asarray(random_room_dims(rng)), rt60_s / (1.5 if match_rt60 else 1))
    else:
        dims = np.asarray(room_dims_m, dtype=float)
    if dims.shape != (3,) or np.any(dims <= 2 * WALL_MARGIN_M):
        raise ValueError(f"room_dims_m must be 3 lengths > {2 * WALL_MARGIN_M} m, got {dims}")
    source = rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M)
    mic = rng.uniform(WALL_MARGIN_M, dims - WALL_MARGIN_M)
    asked = float(rt60_s)
    rir, measured, order = _shoebox(dims, source, mic, asked, sample_rate, max_order)
    if match_rt60 and measured > 0 and abs(measured / rt60_s - 1.0) > 0.05:
        corrected = rt60_s * rt60_s / measured
        try:
            rir2, measured2, order2 = _shoebox(dims, source, mic, corrected, sample_rate,
                                               max_order)
        except ValueError:
            pass  # the room cannot be that dry: keep the first response
        else:
            if abs(measured2 - rt60_s) < abs(measured - rt60_s):
                rir, measured, order, asked = rir2, measured2, order2, corrected
    return SimulatedRoom(
        rir=rir,
        room_dims_m=tuple(float(d) for d in dims),
        source_m=tuple(float(v) for v in source),
        mic_m=tuple(float(v) for v in mic),
        rt60_target_s=float(rt60_s),
        rt60_asked_s=asked,
        rt60_measured_s=measured,
        max_order=int(order),
    )


def _shoebox(
    dims: np.ndarray,
    source: np.ndarray,
    mic: np.ndarray,
    rt60_s: float,
    sample_rate: int,
    max_order: int | None,
) -> tuple[np.ndarray, float, int]:
    """One image-source simulation: (RIR ``(M,)`` float32, measured RT60 in s, order used)."""
    try:
        absorption, order = pra.inverse_sabine(rt60_s, dims)
    except ValueError as exc:
        raise ValueError(f"a {dims} m room cannot be as dry as RT60 {rt60_s} s") from exc
    if max_order is not None:
        order = min(order, int(max_order))
    room = pra.ShoeBox(
        dims, fs=int(sample_rate), materials=pra.Material(float(min(absorption, 1.0))),
        max_order=int(order),
    )
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    measured = float(pra.experimental.measure_rt60(rir, fs=int(sample_rate), decay_db=30))
    return rir, measured, int(order)


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
    match_rt60: bool = True,
) -> np.ndarray:
    """Reverberate ``(C, N)`` float32 -> ``(C, N)``, direct path aligned, level kept.

    Args:
        rir: a measured RIR ``(M,)`` or ``(C', M)`` (first channel used) at ``rir_sample_rate``
            (default ``sample_rate``). ``None``: simulate a room with ``simulate_rir``
            (``rt60_s``, ``room_dims_m`` or random dims, ``max_order``, ``match_rt60``).
    """
    wave = check_wave(wave, sample_rate, "reverb")
    if rir is None:
        response = simulate_rir(
            sample_rate, rng, rt60_s=rt60_s, room_dims_m=room_dims_m, max_order=max_order,
            match_rt60=match_rt60,
        ).rir
    else:
        response = as_2d(np.asarray(rir, dtype=np.float32))[0]
        if response.size == 0 or not np.isfinite(response).all() or not response.any():
            raise ValueError("rir must be a finite, non-silent impulse response")
        response = resample(response, rir_sample_rate or sample_rate, sample_rate)
    return convolve_aligned(wave, response)


def prepare_reverb(spec: dict, draw: Draw) -> Prepared:
    """A measured RIR (from the chain's RIR files, with ``rir_file_prob``, or a fixed
    ``rir_file``) or a simulated room of a drawn RT60."""
    rng = draw.rng
    file_prob = float(spec.pop("rir_file_prob", 1.0))
    path = spec.pop("rir_file", None)
    rt60_s = sample_param(spec.pop("rt60_s", 0.5), rng)
    max_order = sample_param(spec.pop("max_order", None), rng)
    dims = spec.pop("room_dims_m", None)
    match_rt60 = bool(sample_param(spec.pop("match_rt60", True), rng))
    if spec:
        raise ValueError(f"reverb: unknown parameters {sorted(spec)}")
    files = draw.resources.rir_files
    if path is not None or (files and rng.random() < file_prob):
        if path is None:
            path = files[int(rng.integers(0, len(files)))]
        rir, rir_rate = draw.resources.load(Path(path))
        return {"rir": rir, "rir_sample_rate": rir_rate}, {"rir_file": str(path)}
    room = simulate_rir(
        draw.sample_rate, rng, rt60_s=float(rt60_s), room_dims_m=dims, max_order=max_order,
        match_rt60=match_rt60,
    )
    record = {
        "rt60_target_s": room.rt60_target_s,
        "rt60_asked_s": room.rt60_asked_s,
        "rt60_measured_s": room.rt60_measured_s,
        "room_dims_m": list(room.room_dims_m),
        "source_m": list(room.source_m),
        "mic_m": list(room.mic_m),
        "max_order": room.max_order,
    }
    return {"rir": room.rir, "rir_sample_rate": draw.sample_rate}, record


REVERB_ENTRY = DegradationEntry(reverb, prepare_reverb,
                                chain_keys=frozenset({"rir_file_prob", "rir_file"}))

"""A-SPADE, the analysis-sparse audio declipper, on a batch of frames.

Kitić, Bertin, Gribonval, "Sparsity and cosparsity for audio declipping: a flexible
non-convex approach", LVA/ICA 2015 (arXiv 1506.01830); in the form of Záviška, Rajmic,
Ozerov, Rencker, "A survey and an extensive evaluation of popular audio declipping
methods", IEEE JSTSP 15(1), 2021 (their Algorithm "A-SPADE" and MATLAB toolbox). ADMM on

    min_{x, z} ||z||_0  subject to  x in Gamma,  ||A x - z||_2 <= epsilon,

where ``A`` is a Parseval tight frame (here the zero-padded, ``redundancy``-times
oversampled unitary DFT of the frame) and ``Gamma`` the signals consistent with the
observation: equal to it on reliable samples, at or beyond the clip level on clipped ones.
Each iteration hard-thresholds ``A x + u`` to its ``k`` largest coefficients (conjugate
pairs counted once), projects the synthesis back onto ``Gamma`` (a per-sample clamp, exact
for a tight frame) and updates the dual ``u``; ``k`` grows by ``step`` every ``every``
iterations, so the estimate starts very sparse and relaxes until it fits.

All frames of a batch share ``k`` (it depends only on the iteration count), so one
``np.partition`` thresholds the whole batch; a frame leaves the batch once it converges.
"""

from __future__ import annotations

import numpy as np


def aspade(
    observed: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    redundancy: int = 2,
    step: int = 1,
    every: int = 1,
    epsilon: float = 0.1,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Declip a batch of (windowed) frames.

    Args:
        observed: ``(B, w)`` float64 frames as observed (the starting point).
        lower, upper: ``(B, w)`` the consistent set, per sample: equal to ``observed`` on
            reliable samples; ``[level, inf)`` on positive clipped ones, ``(-inf, -level]``
            on negative ones (``level`` windowed like the frame).
        redundancy: oversampling of the DFT frame (FFT length ``redundancy * w``).
        step, every: ``k`` starts at ``step`` and grows by ``step`` every ``every``
            iterations.
        epsilon: a frame has converged when ``||A x - z||_2 <= epsilon``.
        max_iter: iteration cap; a frame that has not converged by then returns its best
            iterate (least ``||A x - z||``), as in the reference implementation.
    Returns:
        ``(restored, iterations)``: ``(B, w)`` float64, every row inside its consistent set;
        ``(B,)`` int64 iterations each frame ran.
    """
    batch, width = observed.shape
    n_fft = redundancy * width
    bins = n_fft // 2 + 1
    weight = np.full(bins, 2.0)  # the half spectrum stands for conjugate pairs
    weight[0] = 1.0
    weight[-1] = 1.0
    rank_scale = np.ones(bins)
    rank_scale[0] = 0.5  # DC and Nyquist have no conjugate: ranked as in Záviška et al.
    rank_scale[-1] = 0.5

    best = observed.copy()
    best_obj = np.full(batch, np.inf)
    iterations = np.zeros(batch, dtype=np.int64)
    active = np.arange(batch)
    x = observed.copy()
    lo, hi = lower, upper
    z = np.fft.rfft(x, n_fft, axis=1, norm="ortho")
    u = np.zeros_like(z)
    k = step
    for it in range(max_iter):
        v = z + u
        if k < bins:
            rank = np.abs(v) * rank_scale
            threshold = np.partition(rank, bins - k, axis=1)[:, bins - k]
            zbar = np.where(rank >= threshold[:, None], v, 0.0)
        else:
            zbar = v
        residual = z - zbar
        obj = np.sqrt(np.sum(weight * (residual.real**2 + residual.imag**2), axis=1))
        better = obj <= best_obj[active]
        best[active[better]] = x[better]
        best_obj[active[better]] = obj[better]
        iterations[active] = it + 1
        going = obj > epsilon
        if not going.any():
            break
        if not going.all():
            active, x, lo, hi, z, u, zbar = (
                a[going] for a in (active, x, lo, hi, z, u, zbar))
        x = np.clip(np.fft.irfft(zbar - u, n_fft, axis=1, norm="ortho")[:, :width], lo, hi)
        z = np.fft.rfft(x, n_fft, axis=1, norm="ortho")
        u += z - zbar
        if (it + 1) % every == 0:
            k += step
    return best, iterations

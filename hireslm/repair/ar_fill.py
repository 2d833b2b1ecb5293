"""Filling gaps by autoregressive interpolation (Janssen's iterative method).

Janssen, Veldhuis, Vries, "Adaptive interpolation of discrete-time signals that can be
modeled as autoregressive processes", IEEE Trans. ASSP 34(2), 1986; the least-squares AR
(LSAR) interpolator of Godsill & Rayner, "Digital Audio Restoration", Springer 1998, ch. 5.
Around each gap a window of ``context`` samples on both sides is taken; the missing
samples start at zero, then each iteration

1. fits an AR(``order``) model to the window as it stands (Yule-Walker, autocorrelation
   method), and
2. sets the missing samples to those that minimise the model's prediction error over the
   whole window, a linear least-squares problem: ``B x_u = -A_u^T A_k x_k`` with
   ``B[i, j] = R_a(u_i - u_j)`` the autocorrelation of the AR coefficients (positive
   definite, banded), solved directly.

The fill uses both neighbours at once (the prediction error runs across the gap in both
directions), keeps every known sample, and other gaps inside the window are unknowns of the
same solve (only the target gap's values are written). A gap's fill depends only on its
window, so the cut of a stream into blocks does not change it.
"""

from __future__ import annotations

import numpy as np

from hireslm.repair.runs import runs_mask

RIDGE = 1e-9  # white-noise correction of the autocorrelation (a digital-silence window)


def solve_toeplitz(column: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``T x = rhs`` for the symmetric positive-definite Toeplitz ``T`` whose first
    column is ``column`` ``(m,)``, by Levinson's recursion in O(m^2).

    A LAPACK solve of these few-hundred-sized systems is no faster on one core, and on a
    loaded machine OpenBLAS's threads made it 30x slower.
    """
    t = np.asarray(column, dtype=np.float64)
    y = np.asarray(rhs, dtype=np.float64)
    m = y.size
    forward = np.zeros(m)  # T_n forward = e_1
    x = np.zeros(m)
    forward[0] = 1.0 / t[0]
    x[0] = y[0] / t[0]
    for n in range(1, m):
        lags = t[n:0:-1]  # t[n - i], i = 0 .. n-1
        err = float(np.dot(lags, forward[:n]))
        old = forward[:n].copy()
        forward[: n + 1] = 0.0
        forward[:n] = old
        forward[1 : n + 1] -= err * old[::-1]
        forward[: n + 1] /= 1.0 - err * err
        backward = forward[n::-1]  # T_{n+1} backward = e_{n+1}
        x[: n + 1] += (y[n] - float(np.dot(lags, x[:n]))) * backward
    return x


def ar_coefficients(x: np.ndarray, order: int) -> np.ndarray:
    """AR polynomial ``(order + 1,)`` with ``a[0] = 1`` (``sum_k a_k x[n - k]`` is the
    prediction error), fitted to ``x`` ``(W,)`` by the autocorrelation method."""
    n = x.size
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, size)
    r = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[: order + 1]
    r[0] *= 1.0 + RIDGE
    if r[0] <= 0.0:
        return np.concatenate([[1.0], np.zeros(order)])
    return np.concatenate([[1.0], solve_toeplitz(r[:order], -r[1 : order + 1])])


def lsar_fill(x: np.ndarray, missing: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Least-squares AR interpolation of the ``missing`` samples of a window.

    Args:
        x: ``(W,)`` the window (missing samples' values are ignored).
        missing: ``(W,)`` bool; every missing sample at least ``order`` from both ends.
        a: AR polynomial ``(order + 1,)``, ``a[0] = 1``.
    Returns:
        ``(W,)`` float64: ``x`` with the missing samples filled.
    """
    order = a.size - 1
    unknown = np.flatnonzero(missing)
    known = np.where(missing, 0.0, x)
    error = np.convolve(known, a)  # error[n] = sum_k a_k known[n - k], n = 0 .. W + p - 1
    # rhs_i = -sum_k a_k error[u_i + k]: the prediction errors the unknown sample enters
    rhs = -np.correlate(error, a, mode="valid")[unknown]
    ra = np.correlate(a, a, mode="full")[order:]  # R_a(d), d = 0 .. p
    out = np.array(x, dtype=np.float64)
    if unknown.size and unknown[-1] - unknown[0] + 1 == unknown.size:  # one run: Toeplitz
        column = np.zeros(unknown.size)
        column[: min(order + 1, unknown.size)] = ra[: min(order + 1, unknown.size)]
        out[unknown] = solve_toeplitz(column, rhs)
    else:
        lag = np.abs(unknown[:, None] - unknown[None, :])
        b = np.where(lag <= order, ra[np.minimum(lag, order)], 0.0)
        out[unknown] = np.linalg.solve(b, rhs)
    return out


def janssen_fill(x: np.ndarray, missing: np.ndarray, order: int,
                 iterations: int = 5) -> np.ndarray:
    """Janssen's iterative AR interpolation of one window.

    Args:
        x: ``(W,)``; missing: ``(W,)`` bool (at least ``order`` from both ends).
    Returns:
        ``(W,)`` float64, known samples unchanged.
    """
    current = np.where(missing, 0.0, np.asarray(x, dtype=np.float64))
    for _ in range(iterations):
        a = ar_coefficients(current, order)
        current = lsar_fill(current, missing, a)
    return current


def fill_gaps_1d(
    x: np.ndarray, starts: np.ndarray, stops: np.ndarray, *, order: int, context: int,
    iterations: int = 5, only: np.ndarray | None = None,
) -> np.ndarray:
    """Fill the gaps ``[start, stop)`` of ``x`` ``(N,)`` from ``context`` samples on each
    side (fewer at the signal's ends, where the order shrinks to fit).

    Args:
        only: ``(R,)`` bool, the gaps to fill (default all); the others are still unknowns
            where they fall inside a filled gap's window.
    Returns:
        ``(N,)`` float64; samples outside the filled gaps are ``x``'s own.
    """
    out = np.array(x, dtype=np.float64)
    gap_mask = runs_mask(starts, stops, x.size)
    chosen = np.ones(starts.size, dtype=bool) if only is None else only
    for a, b in zip(starts[chosen], stops[chosen], strict=True):
        lo, hi = max(a - context, 0), min(b + context, x.size)
        missing = gap_mask[lo:hi].copy()
        # The solve needs ``p`` known samples at each end: the order shrinks near the
        # signal's ends, and other gaps' samples that close to the ends stay at zero.
        p = min(order, a - lo, hi - b)
        if p < 1:
            continue
        edge = np.zeros_like(missing)
        edge[:p] = True
        edge[-p:] = True
        missing &= ~edge
        window = np.where(gap_mask[lo:hi], 0.0, x[lo:hi])
        filled = janssen_fill(window, missing, p, iterations)
        out[a:b] = filled[a - lo:b - lo]
    return out

"""Integer allocation for separable objectives (Σ wᵢUᵢ) under linear quotas, with a certified bound.

Called by ``faro.optimizer.solve.api`` for ``sum``/``penaltysum`` and, with per-job lower offsets,
by the max-min and FairSum solvers in ``fair.py``.

Notes
-----
Tables ``V[i, k]`` give job i's value at ``lo_i + k`` replicas; constraints are ``A k ≤ slack``.
The curves are not concave near the stability edge, so we work on each row's upper concave
envelope: its segments (slope ``g``, length ``ℓ``) are the variables of the LP

    max Σ g·y   s.t.  A_seg y ≤ slack,  0 ≤ y ≤ ℓ,

whose basic optimum has at most ``K`` (number of binding rows) partly taken segments. Rounding
those down lands every job on an envelope vertex, i.e. on a real point of its curve; a greedy
repair then spends what is left by the best gain per priced cost on the *actual* curves. The LP
duals ``μ ≥ 0`` certify the result: for any ``μ ≥ 0`` the Lagrangian

    L(μ) = μ·slack + Σᵢ maxₖ (V[i, k] − (Aᵢ·μ)·k)

is an upper bound on the integer optimum (evaluated exactly on the tables, so LP tolerances do not
leak into the bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
from numpy.typing import NDArray

_TOL = 1e-9


@dataclass(frozen=True)
class Allocation:
    """Offsets ``k`` from each job's ``lo``, their value, an upper bound and the prices used."""

    k: NDArray[np.int64]
    value: float
    bound: float | None
    prices: NDArray[np.float64] | None


def shift_rows(values: NDArray[np.float64], start: NDArray[np.int64]) -> NDArray[np.float64]:
    """``out[i, j] = values[i, start_i + j]`` (``-inf`` past the row's end): raises each row's floor."""
    w = values.shape[1]
    cols = start[:, None] + np.arange(w)[None, :]
    out = np.take_along_axis(values, np.minimum(cols, w - 1), axis=1)
    return np.where(cols < w, out, -np.inf)


def upper_hull(values: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Mask of the vertices of each row's upper concave envelope (finite entries only).

    Points on or below the chord of their kept neighbours are dropped until none is; each dropped
    point lies under a chord of two points of the row, so it is never a vertex (simultaneous drops
    are safe).
    """
    n, w = values.shape
    keep = np.isfinite(values)
    if w <= 2:
        return keep
    cols = np.arange(w)
    v = np.where(keep, values, 0.0)
    while True:
        prev = np.maximum.accumulate(np.where(keep, cols, -1), axis=1)
        prev = np.concatenate([np.full((n, 1), -1), prev[:, :-1]], axis=1)
        nxt = np.minimum.accumulate(np.where(keep, cols, w)[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([nxt[:, 1:], np.full((n, 1), w)], axis=1)
        interior = keep & (prev >= 0) & (nxt < w)
        if not interior.any():
            return keep
        p = np.maximum(prev, 0)
        q = np.minimum(nxt, w - 1)
        vp = np.take_along_axis(v, p, axis=1)
        vq = np.take_along_axis(v, q, axis=1)
        span = np.where(interior, q - p, 1)
        chord = vp + (vq - vp) * (cols - p) / span
        drop = interior & (v <= chord + 1e-12 * np.maximum(1.0, np.abs(chord)))
        if not drop.any():
            return keep
        keep &= ~drop


def lagrangian_bound(
    values: NDArray[np.float64], matrix: NDArray[np.float64], slack: NDArray[np.float64], prices: NDArray
) -> float:
    """``L(μ)``: an upper bound on ``max Σ V[i, kᵢ]`` s.t. ``A k ≤ slack`` for any ``μ ≥ 0``."""
    mu = np.maximum(np.asarray(prices, dtype=float), 0.0)
    cost = mu @ matrix if matrix.shape[0] else np.zeros(values.shape[0])
    priced = values - cost[:, None] * np.arange(values.shape[1])[None, :]
    best = np.max(np.where(np.isfinite(values), priced, -np.inf), axis=1)
    return float(mu @ slack + best.sum()) if matrix.shape[0] else float(best.sum())


def _segments(values: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Envelope segments with positive slope: (job, start column, length, slope)."""
    keep = upper_hull(values)
    rows, cols = np.nonzero(keep)
    same = rows[1:] == rows[:-1]
    job = rows[:-1][same]
    start = cols[:-1][same]
    end = cols[1:][same]
    length = end - start
    slope = (values[job, end] - values[job, start]) / length
    positive = slope > 1e-12
    return job[positive], start[positive], length[positive], slope[positive]


def lp_relaxation(
    values: NDArray[np.float64], matrix: NDArray[np.float64], slack: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64] | None]:
    """Envelope LP: offsets rounded down to envelope vertices, and the dual prices (None if it fails)."""
    n = values.shape[0]
    job, start, length, slope = _segments(values)
    k = np.zeros(n, dtype=np.int64)
    if job.size == 0:
        return k, np.zeros(matrix.shape[0])
    if matrix.shape[0] == 0:
        np.maximum.at(k, job, start + length)
        return k, np.zeros(0)
    a_seg = scipy.sparse.csc_matrix(matrix)[:, job]
    res = scipy.optimize.linprog(
        -slope,
        A_ub=a_seg,
        b_ub=np.maximum(slack, 0.0),
        bounds=np.column_stack([np.zeros(job.size), length]),
        method="highs-ds",
        options={"presolve": False},  # presolve costs 4× the solve on these bound-heavy LPs
    )
    if res.status != 0 or res.x is None:
        return k, None
    taken = res.x >= length - 1e-7
    # The LP fills a job's segments in order of falling slope; stop at its first partial one.
    first_open = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_open, job[~taken], start[~taken])
    full_end = np.zeros(n, dtype=np.int64)
    np.maximum.at(full_end, job[taken], start[taken] + length[taken])
    k = np.where(first_open < np.iinfo(np.int64).max, first_open, full_end)
    prices = -np.asarray(res.ineqlin.marginals, dtype=float)
    return k.astype(np.int64), np.maximum(prices, 0.0)


def repair(
    values: NDArray[np.float64],
    k: NDArray[np.int64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    prices: NDArray[np.float64] | None,
    *,
    max_moves: int | None = None,
) -> NDArray[np.int64]:
    """Spend what is left: repeatedly move one job up to the count with the best gain per priced
    cost among moves that fit, until no move that fits gains anything."""
    n, w = values.shape
    k = k.copy()
    rows = np.arange(n)
    cols = np.arange(w)[None, :]
    left = slack - matrix @ k if matrix.shape[0] else np.zeros(0)
    mu = np.zeros(matrix.shape[0]) if prices is None else prices
    unit_price = mu @ matrix if matrix.shape[0] else np.zeros(n)
    # A small share of "fraction of what is left" keeps free resources from looking costless.
    scale = np.where(left > 0, left, 1.0) if matrix.shape[0] else np.zeros(0)
    for _ in range(max_moves if max_moves is not None else n * w + 1):
        if matrix.shape[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(matrix > 0, (left[:, None] + _TOL) / matrix, np.inf)
            dmax = np.floor(np.min(room, axis=0))
            frac = (matrix / scale[:, None]).sum(axis=0)
        else:
            dmax = np.full(n, np.inf)
            frac = np.zeros(n)
        delta = cols - k[:, None]
        fits = (delta >= 1) & (delta <= dmax[:, None])
        with np.errstate(invalid="ignore"):
            gain = values - values[rows, k][:, None]
        ok = fits & (gain > 1e-12)
        if not ok.any():
            return k
        denom = (unit_price + 1e-6 * frac + 1e-12)[:, None] * delta
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(ok, gain / denom, -np.inf)
        i, col = np.unravel_index(int(np.argmax(score)), score.shape)
        if matrix.shape[0]:
            left = left - matrix[:, i] * (col - k[i])
        k[i] = col
    return k


def allocate_sum(
    values: NDArray[np.float64], matrix: NDArray[np.float64], slack: NDArray[np.float64]
) -> Allocation:
    """Best ``k`` for ``max Σ V[i, kᵢ]`` s.t. ``A k ≤ slack`` (``k`` within each row's finite part):
    LP on the envelopes, round down, repair; bound from the LP prices."""
    n = values.shape[0]
    if n == 0:
        return Allocation(k=np.zeros(0, dtype=np.int64), value=0.0, bound=0.0, prices=None)
    k, prices = lp_relaxation(values, matrix, slack)
    k = repair(values, k, matrix, slack, prices)
    value = float(values[np.arange(n), k].sum())
    bound = lagrangian_bound(values, matrix, slack, prices) if prices is not None else None
    return Allocation(k=k, value=value, bound=bound, prices=prices)

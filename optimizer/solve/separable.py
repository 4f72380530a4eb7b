"""Integer allocation for separable objectives (Σ wᵢUᵢ) under linear quotas, with a certified bound.

Called by ``faro.optimizer.solve.api`` for ``sum``/``penaltysum`` and, with per-job lower offsets,
by the max-min and FairSum solvers in ``fair.py``. ``allocate_priced`` is the LP-free variant (exact
envelope LP for one constraint row; along a given price direction for more) the FairSum band
search calls once per band.

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


def shift_rows(values: NDArray, start: NDArray[np.int64]) -> NDArray:
    """``out[i, j] = values[i, start_i + j]`` (``-inf``, or False for a mask, past the row's end): raises
    each row's floor."""
    w = values.shape[1]
    cols = start[:, None] + np.arange(w)[None, :]
    out = np.take_along_axis(values, np.minimum(cols, w - 1), axis=1)
    return np.where(cols < w, out, False if values.dtype == bool else -np.inf)


def upper_hull(values: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Mask of the vertices of each row's upper concave envelope (finite entries only).

    Points on or below the chord of their kept neighbours are dropped until none is; each dropped
    point lies under a chord of two points of the row, so it is never a vertex (simultaneous drops
    are safe). A row that dropped nothing in a sweep is done, so each sweep covers only the rows the
    previous one changed.
    """
    n, w = values.shape
    keep = np.isfinite(values)
    if w <= 2:
        return keep
    cols = np.arange(w)
    v = np.where(keep, values, 0.0)
    active = np.arange(n)
    while active.size:
        kept, val = keep[active], v[active]
        m = active.size
        prev = np.maximum.accumulate(np.where(kept, cols, -1), axis=1)
        prev = np.concatenate([np.full((m, 1), -1), prev[:, :-1]], axis=1)
        nxt = np.minimum.accumulate(np.where(kept, cols, w)[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([nxt[:, 1:], np.full((m, 1), w)], axis=1)
        interior = kept & (prev >= 0) & (nxt < w)
        p = np.maximum(prev, 0)
        q = np.minimum(nxt, w - 1)
        vp = np.take_along_axis(val, p, axis=1)
        vq = np.take_along_axis(val, q, axis=1)
        span = np.where(interior, q - p, 1)
        chord = vp + (vq - vp) * (cols - p) / span
        drop = interior & (val <= chord + 1e-12 * np.maximum(1.0, np.abs(chord)))
        changed = drop.any(axis=1)
        keep[active[changed]] = kept[changed] & ~drop[changed]
        active = active[changed]
    return keep


def lagrangian_bound(
    values: NDArray[np.float64], matrix: NDArray[np.float64], slack: NDArray[np.float64], prices: NDArray
) -> float:
    """``L(μ)``: an upper bound on ``max Σ V[i, kᵢ]`` s.t. ``A k ≤ slack`` for any ``μ ≥ 0``."""
    mu = np.maximum(np.asarray(prices, dtype=float), 0.0)
    cost = mu @ matrix if matrix.shape[0] else np.zeros(values.shape[0])
    priced = values - cost[:, None] * np.arange(values.shape[1])[None, :]
    best = np.max(np.where(np.isfinite(values), priced, -np.inf), axis=1)
    return float(mu @ slack + best.sum()) if matrix.shape[0] else float(best.sum())


def _segments(
    values: NDArray[np.float64], hull: NDArray[np.bool_] | None = None
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Envelope segments with positive slope: (job, start column, length, slope); ``hull``: the
    ``upper_hull`` of ``values`` when the caller has it."""
    keep = upper_hull(values) if hull is None else hull
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
    values: NDArray[np.float64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    hull: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64] | None]:
    """Envelope LP: offsets rounded down to envelope vertices, and the dual prices (None if it fails)."""
    n = values.shape[0]
    job, start, length, slope = _segments(values, hull)
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
    """Spend what is left: move jobs up to the count with the best gain per priced cost among moves
    that fit, until no move that fits gains anything.

    Each round takes every job's best move, sorted by that score, and accepts the longest prefix
    that fits together (at least the best move, which fits alone), so a round costs one pass over
    the tables however many jobs move.
    """
    n, w = values.shape
    k = k.copy()
    rows = np.arange(n)
    cols = np.arange(w)[None, :]
    nrows = matrix.shape[0]
    left = slack - matrix @ k if nrows else np.zeros(0)
    mu = np.zeros(nrows) if prices is None else prices
    unit_price = mu @ matrix if nrows else np.zeros(n)
    # A small share of "fraction of what is left" keeps free resources from looking costless.
    scale = np.where(left > 0, left, 1.0) if nrows else np.zeros(0)
    frac = (matrix / scale[:, None]).sum(axis=0) if nrows else np.zeros(n)
    denom_unit = (unit_price + 1e-6 * frac + 1e-12)[:, None]
    tol = _TOL * np.maximum(1.0, np.abs(slack)) if nrows else np.zeros(0)
    moves = 0
    limit = max_moves if max_moves is not None else n * w + 1
    while moves < limit:
        if nrows:
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(matrix > 0, (left[:, None] + tol[:, None]) / matrix, np.inf)
            dmax = np.floor(np.min(room, axis=0))
        else:
            dmax = np.full(n, np.inf)
        delta = cols - k[:, None]
        with np.errstate(invalid="ignore"):
            gain = values - values[rows, k][:, None]
        ok = (delta >= 1) & (delta <= dmax[:, None]) & (gain > 1e-12)
        if not ok.any():
            return k
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(ok, gain / (denom_unit * delta), -np.inf)
        target = np.argmax(score, axis=1)
        best = score[rows, target]
        movers = np.nonzero(np.isfinite(best))[0]
        movers = movers[np.argsort(-best[movers], kind="stable")][: limit - moves]
        step = target[movers] - k[movers]
        if nrows:
            use = np.cumsum(matrix[:, movers] * step[None, :], axis=1)
            fits = np.all(use <= (left + tol)[:, None], axis=0)
            take = max(1, int(np.argmin(fits)) if not fits.all() else movers.size)
            movers, step = movers[:take], step[:take]
            left = left - matrix[:, movers] @ step
        k[movers] += step
        moves += movers.size
    return k


def allocate_sum(
    values: NDArray[np.float64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    hull: NDArray[np.bool_] | None = None,
) -> Allocation:
    """Best ``k`` for ``max Σ V[i, kᵢ]`` s.t. ``A k ≤ slack`` (``k`` within each row's finite part):
    LP on the envelopes, round down, repair; bound from the LP prices. ``hull``: the ``upper_hull`` of
    ``values`` when the caller has it."""
    n = values.shape[0]
    if n == 0:
        return Allocation(k=np.zeros(0, dtype=np.int64), value=0.0, bound=0.0, prices=None)
    if matrix.shape[0] <= 1 and np.isfinite(values[:, 0]).all():
        # One row: the envelope LP is a fractional knapsack, solved exactly without an LP solver.
        alloc = allocate_priced(values, matrix, slack, hull=hull)
        if alloc is not None:
            return alloc
    k, prices = lp_relaxation(values, matrix, slack, hull)
    k = repair(values, k, matrix, slack, prices)
    value = float(values[np.arange(n), k].sum())
    bound = lagrangian_bound(values, matrix, slack, prices) if prices is not None else None
    return Allocation(k=k, value=value, bound=bound, prices=prices)


def allocate_priced(
    values: NDArray[np.float64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    direction: NDArray[np.float64] | None = None,
    *,
    max_moves: int | None = None,
    repair_above: float = -np.inf,
    hull: NDArray[np.bool_] | None = None,
) -> Allocation | None:
    """``allocate_sum`` without an LP solver: the envelope segments are taken in order of gain per
    unit of priced cost ``(μ·A)ᵢ`` with ``μ = t·direction`` for falling ``t``, the longest prefix
    that fits every row is kept (each job on an envelope vertex) and ``repair`` spends what is left.

    The bound is ``min_t L(t·direction)`` over the prefix breakpoints, re-evaluated exactly on the
    tables. With one constraint row (direction 1) that is the envelope LP's value, so this is the
    LP solution itself (a fractional knapsack); with more rows ``direction`` should be LP duals
    of a related problem (e.g. the unrestricted tables'). Rows may hold ``-inf`` anywhere (columns a
    job may not take); ``k`` starts at each row's first finite column. None when even those do not
    fit. The repair runs only when the bound exceeds ``repair_above`` (callers that only need the
    bound of a hopeless problem skip it). ``hull``: the ``upper_hull`` of ``values`` when the caller has it.
    """
    n = values.shape[0]
    nrows = matrix.shape[0]
    finite = np.isfinite(values)
    if n == 0:
        return Allocation(k=np.zeros(0, dtype=np.int64), value=0.0, bound=0.0, prices=np.zeros(nrows))
    if not finite.any(axis=1).all():
        return None
    start = np.argmax(finite, axis=1).astype(np.int64)
    left = slack - matrix @ start if nrows else np.zeros(0)
    if nrows and np.any(left < -_TOL * np.maximum(1.0, np.abs(slack))):
        return None
    rows = np.arange(n)
    base = float(values[rows, start].sum())
    job, seg_start, length, slope = _segments(values, hull)
    if nrows == 0:
        k = start.copy()
        np.maximum.at(k, job, seg_start + length)
        value = float(values[rows, k].sum())
        return Allocation(k=k, value=value, bound=value, prices=np.zeros(0))
    d = np.ones(nrows) if direction is None else np.maximum(np.asarray(direction, dtype=float), 0.0)
    given = d
    # A tiny price on every row keeps rows the direction calls free from looking costless.
    d = np.ones(1) if nrows == 1 else d + 1e-6 * np.max(d, initial=1.0) / np.maximum(np.abs(left), 1.0)
    cost = d @ matrix  # (N,)
    seg_cost = cost[job]
    with np.errstate(divide="ignore"):
        ratio = np.where(seg_cost > 0, slope / np.where(seg_cost > 0, seg_cost, 1.0), np.inf)
    order = np.lexsort((seg_start, -ratio))
    job, seg_start, length, slope, ratio = job[order], seg_start[order], length[order], slope[order], ratio[order]
    seg_cost = seg_cost[order]
    use = np.cumsum(matrix[:, job] * length[None, :], axis=1)  # (K, S) cumulative use of each prefix
    tol = _TOL * np.maximum(1.0, np.abs(slack))
    fit = min(int(np.searchsorted(use[r], left[r] + tol[r], side="right")) for r in range(nrows)) if job.size else 0
    # A job's segments are in order, so the prefix ends each job on an envelope vertex.
    k = start.copy()
    np.add.at(k, job[:fit], length[:fit])
    # L(t·d) at every breakpoint t = ratio_j (segments before j taken) and at t = 0 (all taken).
    budget = float(d @ left)
    gain = np.concatenate([[0.0], np.cumsum(slope * length)])
    spent = np.concatenate([[0.0], np.cumsum(seg_cost * length)])
    t = np.concatenate([ratio, [0.0]])
    finite_t = np.isfinite(t)
    phi = np.where(finite_t, base + gain + np.where(finite_t, t, 0.0) * (budget - spent), np.inf)
    t_best = float(t[int(np.argmin(phi))]) if job.size else 0.0
    prices = t_best * d
    bound = lagrangian_bound(values, matrix, slack, prices)
    if direction is not None and nrows > 1:
        bound = min(bound, lagrangian_bound(values, matrix, slack, given))  # the direction as given (LP duals)
    if bound > repair_above:
        k = repair(values, k, matrix, slack, d if nrows > 1 else np.ones(1), max_moves=max_moves)
    value = float(values[rows, k].sum())
    return Allocation(k=k, value=value, bound=max(bound, value), prices=prices)

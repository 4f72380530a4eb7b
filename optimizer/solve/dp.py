"""Exact dynamic programme over jobs with Pareto pruning (the ``dp`` solver; small instances).

Called by ``faro.optimizer.solve.api`` for ``solver="dp"`` and by ``auto`` to close the gap the
fast allocator leaves on small problems; the tests use it as the exact reference.

Notes
-----
Jobs are added one at a time. A state is a partial allocation summarised by its resource use on
every constraint row and by the features the objective needs: the weighted sum (``sum``), the
minimum utility and the sum (``fair``, sum as tie-break), or the sum, minimum and maximum
(``fairsum``: ``ΣU + N(min − max + 1)`` rises with the sum and the minimum and falls with the
maximum). A state is dropped when another uses no more of any resource and is at least as good in
every feature: no completion of the dropped state can beat the same completion of the other, so
the optimum survives. For ``sum`` states are also dropped when their value plus a Lagrangian bound
on the remaining jobs cannot beat the incumbent. The programme gives up (returns ``None``) past
``max_states`` states in one layer.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_TOL = 1e-9


def solve_dp(
    utility: NDArray[np.float64],
    weight: NDArray[np.float64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    *,
    kind: str,
    prices: NDArray[np.float64] | None = None,
    incumbent: float = -np.inf,
    max_states: int = 20_000,
) -> NDArray[np.int64] | None:
    """Optimal offsets ``k`` (columns of ``utility``) for objective ``kind`` in
    {``sum``, ``fair``, ``fairsum``}, or ``None`` when the state space grew past ``max_states``
    (or, for ``sum`` with an incumbent, when nothing beats it)."""
    k, _ = dp_search(
        utility, weight, matrix, slack, kind=kind, prices=prices, incumbent=incumbent, max_states=max_states
    )
    return k


def dp_search(
    utility: NDArray[np.float64],
    weight: NDArray[np.float64],
    matrix: NDArray[np.float64],
    slack: NDArray[np.float64],
    *,
    kind: str,
    prices: NDArray[np.float64] | None = None,
    incumbent: float = -np.inf,
    max_states: int = 20_000,
) -> tuple[NDArray[np.int64] | None, bool]:
    """``solve_dp`` that also says why it has no answer: ``(k, False)`` optimal; ``(None, False)``
    no allocation beats ``incumbent`` (``sum`` with prices) or none fits; ``(None, True)`` gave up.

    ``utility`` rows may hold ``-inf`` at columns a job may not take (bands of the FairSum search).
    """
    n, w = utility.shape
    nrows = matrix.shape[0]
    value = weight[:, None] * utility  # what "sum" adds up (fair uses it as the tie-break)
    if kind == "fairsum":
        value = np.where(np.isfinite(utility), utility, -np.inf)
    usage = np.zeros((1, nrows))
    feats = _initial(kind)
    choice = np.zeros((1, 0), dtype=np.int64)
    # Lagrangian tail bounds for pruning "sum": best priced value of each remaining suffix of jobs.
    tail = None
    if kind == "sum" and prices is not None and np.isfinite(incumbent):
        mu = np.maximum(prices, 0.0)
        cost = mu @ matrix if nrows else np.zeros(n)
        priced = np.where(np.isfinite(value), value - cost[:, None] * np.arange(w)[None, :], -np.inf)
        best = priced.max(axis=1)
        tail = np.concatenate([np.cumsum(best[::-1])[::-1], [0.0]])
    for i in range(n):
        cols = np.nonzero(np.isfinite(utility[i]))[0]
        s = usage.shape[0]
        new_usage = (usage[:, None, :] + matrix[:, i][None, None, :] * cols[None, :, None]).reshape(-1, nrows)
        fits = np.all(new_usage <= slack[None, :] + _TOL * np.maximum(1.0, np.abs(slack)), axis=1)
        new_feats = _extend(kind, feats, utility[i, cols], value[i, cols])
        new_choice = np.concatenate(
            [np.repeat(choice, cols.size, axis=0), np.tile(cols, s)[:, None]], axis=1
        )
        keep = fits
        if tail is not None:
            left = slack[None, :] - new_usage
            optimistic = new_feats[:, 0] + tail[i + 1] + (left @ np.maximum(prices, 0.0) if nrows else 0.0)
            keep &= optimistic >= incumbent - 1e-9 * max(1.0, abs(incumbent))
        usage, feats, choice = new_usage[keep], new_feats[keep], new_choice[keep]
        if usage.shape[0] == 0:
            return None, False
        usage, feats, choice = _pareto(usage, feats, choice)
        if usage.shape[0] > max_states:
            return None, True
    best = int(np.argmax(_score(kind, feats, n)))
    return choice[best].astype(np.int64), False


def _initial(kind: str) -> NDArray[np.float64]:
    if kind == "sum":
        return np.zeros((1, 1))
    if kind == "fair":
        return np.array([[np.inf, 0.0]])  # (min utility, weighted sum)
    return np.array([[0.0, np.inf, -np.inf]])  # (sum, min, max)


def _extend(kind: str, feats: NDArray, utils: NDArray, values: NDArray) -> NDArray[np.float64]:
    """Features of every (state, choice) pair, states major."""
    s, m = feats.shape[0], utils.size
    f = np.repeat(feats, m, axis=0)
    u = np.tile(utils, s)
    v = np.tile(values, s)
    if kind == "sum":
        return f + v[:, None]
    if kind == "fair":
        return np.column_stack([np.minimum(f[:, 0], u), f[:, 1] + v])
    return np.column_stack([f[:, 0] + u, np.minimum(f[:, 1], u), np.maximum(f[:, 2], u)])


def _score(kind: str, feats: NDArray, n: int) -> NDArray[np.float64]:
    if kind == "sum":
        return feats[:, 0]
    if kind == "fair":
        # Lexicographic: min first, then the sum (scaled below one min-step of 1e-9).
        return feats[:, 0] + 1e-12 * feats[:, 1] / max(1.0, float(np.abs(feats[:, 1]).max()))
    return feats[:, 0] + n * (feats[:, 1] - feats[:, 2] + 1.0)


def _pareto(usage: NDArray, feats: NDArray, choice: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Drop states another state dominates (no more usage, no worse features)."""
    # "Better" features all point up: negate the maximum of fairsum.
    up = feats.copy()
    if feats.shape[1] == 3:
        up[:, 2] = -up[:, 2]
    order = np.lexsort((usage.sum(axis=1), -up[:, 0]))
    usage, up, choice, feats = usage[order], up[order], choice[order], feats[order]
    kept: list[int] = []
    kept_usage = np.empty((0, usage.shape[1]))
    kept_up = np.empty((0, up.shape[1]))
    for j in range(usage.shape[0]):
        if kept:
            dominated = np.all(kept_usage <= usage[j] + _TOL, axis=1) & np.all(kept_up >= up[j] - _TOL, axis=1)
            if dominated.any():
                continue
        kept.append(j)
        kept_usage = np.vstack([kept_usage, usage[j]])
        kept_up = np.vstack([kept_up, up[j]])
    idx = np.array(kept, dtype=np.int64)
    return usage[idx], feats[idx], choice[idx]

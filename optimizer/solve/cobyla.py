"""The Faro artifact's solver, kept as the paper-faithful reference (``solver="cobyla"``).

Called by ``faro.optimizer.solve.api`` and ``bench/solver.py``. It exists to be beaten.

Notes
-----
As in the artifact (github.com/beomyeol/faro ``src/solver.py``): relax replicas to real numbers,
run scipy's COBYLA (``rhobeg = 3``) from the current replicas on the negated objective with the
quota rows and bounds as inequality constraints; then round up and, while a quota is exceeded,
remove the replica whose removal costs the least objective ("make feasible"); then "shrink" every
job while dropping a replica changes the objective by at most 1e-4; then offer all spare resources
to each job in turn and keep the first offer that improves the objective by more than 1e-4
(shrinking again). Differences: the latency model is ours (smooth Erlang C in real ``c``); the
Penalty variants pick the best admission rate per replica count (as our tables do) instead of
optimising admission rates as extra COBYLA variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize
from faro.optimizer.model.objective import is_penalty, objective_value
from faro.optimizer.model.utility import ADMISSION_GRID, drop_penalty, horizon_utility, utility_curves
from numpy.typing import NDArray

if TYPE_CHECKING:
    from faro.optimizer.solve.api import Prepared

_EPSILON = 1e-4
_RHOBEG = 3.0


def _continuous_utility(prep: Prepared, x: NDArray[np.float64]) -> NDArray[np.float64]:
    a = prep.arrays
    cfg = prep.problem.model
    reps = np.maximum(x, 1e-9)[:, None]
    if any(job.llm is not None for job in prep.problem.jobs):  # LLM jobs: their own model, same rules
        penalty = is_penalty(prep.problem.objective)
        return utility_curves(prep.problem.jobs, reps, config=cfg, penalty=penalty).utility[:, 0]
    args = (a.rates_rps, a.processing_time_ms, a.slo_ms, a.percentile, reps, a.current)
    util, _ = horizon_utility(*args, config=cfg)
    util = util[:, 0]
    if is_penalty(prep.problem.objective):
        for d in ADMISSION_GRID[1:]:
            u_d, _ = horizon_utility(*args, config=cfg, admission=d)
            util = np.maximum(util, u_d[:, 0] * (1.0 - float(drop_penalty(1.0 - d))))
    return util


def solve_cobyla(
    prep: Prepared,
    *,
    initial: NDArray | None = None,
    time_limit_s: float | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[NDArray[np.int64], str]:
    """Offsets from ``lo`` found the artifact's way, and a note."""
    t = prep.tables
    objective_name = prep.problem.objective
    weights = prep.arrays.weight
    matrix, bound = prep.constraints.matrix, prep.constraints.bound
    lo, hi = t.lo.astype(float), t.hi.astype(float)
    x0 = prep.arrays.current.astype(float) if initial is None else np.asarray(initial, dtype=float)
    x0 = np.clip(x0, lo, np.maximum(hi, lo))
    start = clock() if clock else None

    def negated(x: NDArray) -> float:
        return -objective_value(objective_name, _continuous_utility(prep, x), weights)

    def constraints(x: NDArray) -> NDArray:
        parts = [x - lo, hi - x]
        if matrix.shape[0]:
            parts.insert(0, bound - matrix @ x)
        return np.concatenate(parts)

    note = "COBYLA"

    def stop_on_time(_x: NDArray) -> None:
        if clock and time_limit_s is not None and start is not None and clock() - start > time_limit_s:
            raise StopIteration

    res = scipy.optimize.minimize(
        negated, x0, method="COBYLA", constraints=[{"type": "ineq", "fun": constraints}],
        options={"rhobeg": _RHOBEG}, callback=stop_on_time,
    )
    if clock and time_limit_s is not None and start is not None and clock() - start > time_limit_s:
        note = "time limit reached during COBYLA; rounded its last iterate"
    x_cont = np.asarray(res.x, dtype=float)
    k = np.clip(np.ceil(x_cont - 1e-9), lo, hi).astype(np.int64) - t.lo

    def score(kk: NDArray[np.int64]) -> float:
        u = t.utility[np.arange(kk.size), kk]
        return objective_value(objective_name, u, weights)

    k = _make_feasible(prep, k, score)
    k = _shrink(prep, k, score)
    k = _spare(prep, k, score)
    return k, f"{note}: {res.message}".strip()


def _make_feasible(prep: Prepared, k: NDArray[np.int64], score: Callable) -> NDArray[np.int64]:
    matrix, slack = prep.constraints.matrix, prep.slack
    if not matrix.shape[0]:
        return k
    current = prep.arrays.current - prep.tables.lo
    while True:
        over = matrix @ k > slack + 1e-9 * np.maximum(1.0, np.abs(slack))
        if not over.any():
            return k
        movable = np.nonzero((matrix[over] > 0).any(axis=0) & (k > 0))[0]
        if movable.size == 0:
            return k
        best = None
        for i in movable:  # remove the replica that costs the least (tie: least change from now)
            k[i] -= 1
            key = (round(score(k), 4), -abs(int(k[i]) - int(current[i])))
            k[i] += 1
            if best is None or key > best[0]:
                best = (key, i)
        assert best is not None
        k[best[1]] -= 1


def _shrink(prep: Prepared, k: NDArray[np.int64], score: Callable) -> NDArray[np.int64]:
    value = score(k)
    for i in range(k.size):
        while k[i] > 0:
            k[i] -= 1
            new = score(k)
            if value - new > _EPSILON:
                k[i] += 1
                break
            value = new
    return k


def _spare(prep: Prepared, k: NDArray[np.int64], score: Callable) -> NDArray[np.int64]:
    """Offer all spare resources to each job in turn; keep the first offer that helps."""
    matrix, slack = prep.constraints.matrix, prep.slack
    width = prep.tables.width
    value = score(k)
    left = slack - matrix @ k if matrix.shape[0] else np.zeros(0)
    for i in range(k.size):
        if matrix.shape[0]:
            need = matrix[:, i]
            room = np.min(np.where(need > 0, (left + 1e-9) / np.where(need > 0, need, 1.0), np.inf))
        else:
            room = np.inf
        extra = int(min(room, width[i] - 1 - k[i]))
        if extra <= 0:
            continue
        k[i] += extra
        if score(k) - value > _EPSILON:
            return _shrink(prep, k, score)
        k[i] -= extra
    return k

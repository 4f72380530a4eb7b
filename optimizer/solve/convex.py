"""The continuous relaxation in cvxpy: every job's utility replaced by its upper concave envelope.

Called by ``faro.optimizer.solve.api`` for ``solver="cvxpy"`` (a cross-check of the integer
allocator and an upper bound for every objective). ``EnvelopeRelaxation`` is built once per
problem *structure* (jobs, envelope segments, constraint matrix) with the envelopes, floors, caps
and free quota as cvxpy Parameters, so the problem is DPP and re-solving with new numbers (another
fairness floor, a new forecast with the same segment counts, a changed quota) reuses the
compilation; a caller that solves repeatedly keeps the object.

Notes
-----
With hull segments ``(job j, slope g, intercept h)`` the hypograph of the envelope of job j is
``t_j ≤ h + g·k_j`` for all its segments, so ``sum``/``penaltysum`` is the LP
``max Σ t`` s.t. the segment cuts, ``A k ≤ slack``, ``floor ≤ k ≤ cap``; ``fair`` maximises ``z ≤ t``;
``fairsum`` maximises ``Σ t + N(z − y + 1)`` with ``z ≤ t ≤ y`` (a relaxation: lowering a ``t`` below its
envelope is allowed, so it still bounds the integer optimum from above).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cvxpy as cp
import numpy as np
from faro.optimizer.solve.separable import lagrangian_bound, repair, upper_hull
from numpy.typing import NDArray

if TYPE_CHECKING:
    from faro.optimizer.solve.api import Prepared


def hull_lines(values: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray]:
    """(job, slope, intercept) of every envelope segment; a single-point row gets a flat line."""
    keep = upper_hull(values)
    rows, cols = np.nonzero(keep)
    same = rows[1:] == rows[:-1]
    job = rows[:-1][same]
    start, end = cols[:-1][same], cols[1:][same]
    slope = (values[job, end] - values[job, start]) / (end - start)
    icpt = values[job, start] - slope * start
    lonely = np.setdiff1d(np.arange(values.shape[0]), job)
    job = np.concatenate([job, lonely])
    slope = np.concatenate([slope, np.zeros(lonely.size)])
    icpt = np.concatenate([icpt, values[lonely, 0]])
    return job, slope, icpt


class EnvelopeRelaxation:
    """A DPP cvxpy problem for one structure; ``solve`` sets the Parameters and re-solves."""

    def __init__(self, *, kind: str, segment_job: NDArray, num_jobs: int, matrix: NDArray[np.float64]) -> None:
        self.kind = kind
        self.segment_job = segment_job
        n, s = num_jobs, segment_job.size
        self.slope = cp.Parameter(s)
        self.icpt = cp.Parameter(s)
        self.floor = cp.Parameter(n)
        self.cap = cp.Parameter(n)
        self.k = cp.Variable(n)
        self.t = cp.Variable(n)
        cons = [
            self.t[segment_job] <= self.icpt + cp.multiply(self.slope, self.k[segment_job]),
            self.k >= self.floor,
            self.k <= self.cap,
        ]
        self.slack = cp.Parameter(matrix.shape[0]) if matrix.shape[0] else None
        self.quota = None
        if self.slack is not None:
            self.quota = matrix @ self.k <= self.slack
            cons.append(self.quota)
        if kind == "sum":
            objective = cp.sum(self.t)
        elif kind == "fair":
            z = cp.Variable()
            cons.append(z <= self.t)
            objective = z
        else:
            z, y = cp.Variable(), cp.Variable()
            cons += [z <= self.t, self.t <= y]
            objective = cp.sum(self.t) + n * (z - y + 1)
        self.problem = cp.Problem(cp.Maximize(objective), cons)

    def solve(
        self, *, slope: NDArray, icpt: NDArray, floor: NDArray, cap: NDArray, slack: NDArray
    ) -> tuple[NDArray[np.float64] | None, float | None, NDArray[np.float64] | None]:
        """Relaxed offsets, the relaxation's value and the quota duals (None where the solve failed)."""
        self.slope.value, self.icpt.value = slope, icpt
        self.floor.value, self.cap.value = floor.astype(float), cap.astype(float)
        if self.slack is not None:
            self.slack.value = slack
        try:  # Clarabel: ships with cvxpy and, unlike HiGHS there, prints no banner
            self.problem.solve(solver=cp.CLARABEL)
        except cp.error.SolverError:
            return None, None, None
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.k.value is None:
            return None, None, None
        duals = None
        if self.quota is not None and self.quota.dual_value is not None:
            duals = np.maximum(np.asarray(self.quota.dual_value, dtype=float), 0.0)
        return np.asarray(self.k.value, dtype=float), float(self.problem.value), duals


def solve_relaxed(prep: Prepared) -> tuple[NDArray[np.int64], float | None, str]:
    """Relax, round down, repair on the real curves. Returns offsets, a bound and a note."""
    kind = prep.kind
    values = prep.values
    util = prep.tables.utility
    n = values.shape[0]
    matrix, slack = prep.constraints.matrix, prep.slack
    job, slope, icpt = hull_lines(values)
    relax = EnvelopeRelaxation(kind=kind, segment_job=job, num_jobs=n, matrix=matrix)
    width = prep.tables.width
    k_rel, value, duals = relax.solve(
        slope=slope, icpt=icpt, floor=np.zeros(n), cap=(width - 1).astype(float), slack=slack
    )
    if k_rel is None:
        return np.zeros(n, dtype=np.int64), None, "cvxpy relaxation failed; returned the floors"
    k = np.clip(np.floor(k_rel + 1e-7), 0, width - 1).astype(np.int64)
    while matrix.shape[0] and np.any(matrix @ k > slack + 1e-9):  # solver tolerance: step back
        over = matrix @ k > slack + 1e-9
        i = int(np.argmax(np.where((matrix[over] > 0).any(axis=0) & (k > 0), k, -1)))
        k[i] -= 1
    rows = np.arange(n)
    if kind == "sum":
        k = repair(values, k, matrix, slack, duals)
        bound = lagrangian_bound(values, matrix, slack, duals) if duals is not None else value
        return k, bound, "cvxpy envelope relaxation, rounded down and repaired"
    # Fair kinds: repair without lowering the minimum (fair) or raising the maximum (fairsum).
    floor = k.copy()
    if kind == "fair":
        sub = np.where(np.arange(util.shape[1])[None, :] >= floor[:, None], prep.arrays.weight[:, None] * util, -np.inf)
    else:
        cap = float(util[rows, k].max())
        sub = np.where((util <= cap + 1e-12) & (np.arange(util.shape[1])[None, :] >= floor[:, None]), util, -np.inf)
    k = repair(np.where(np.isfinite(sub), sub, -np.inf), k, matrix, slack, duals)
    bound = None if value is None else value + 1e-6 * max(1.0, abs(value))  # solver tolerance
    return k, bound, "cvxpy envelope relaxation (bound within solver tolerance), rounded down and repaired"

"""Max-min fairness (``fair``) and FairSum (``fairsum``/``penaltyfairsum``) on utility tables.

Called by ``faro.optimizer.solve.api``.

Notes
-----
*Max-min.* Utilities rise with replicas, so reaching level ``u`` needs at least
``rᵢ(u) = min{k : Uᵢ[k] ≥ u}`` replicas and, since every quota row has non-negative coefficients,
``u`` is reachable iff ``A r(u) ≤ slack``. Feasibility is monotone in ``u``, so a bisection over
the sorted table values finds the best level ``u*`` exactly. Leftovers then go to the weighted sum
with ``k ≥ r(u*)``, which never lowers the minimum.

*FairSum* ``f = ΣU + N(m − M + 1)`` with ``m = min U``, ``M = max U``. For a fixed floor ``m`` we
solve the separable subproblem ``max ΣU`` s.t. ``k ≥ r(m)`` (bound ``S(m)``, non-increasing in
``m``). Any allocation whose minimum lies in ``(m_j, m_{j+1}]`` has ``ΣU ≤ S(m_j)`` and, as
``ΣU ≤ N·M``, ``f ≤ N(m + 1)``; with ``M ≥ M₀ = maxᵢ Uᵢ[0]`` (no job can go below its floor),
``f ≤ min(S(m_j) + N(m_{j+1} − M₀ + 1), N(m_{j+1} + 1))`` on that bucket. We
evaluate floors on a grid of the achievable levels, refine the bucket holding the largest bound,
keep the best allocation found and report the largest bucket bound as the certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faro.optimizer.solve.separable import allocate_sum, shift_rows
from numpy.typing import NDArray


@dataclass(frozen=True)
class FairResult:
    k: NDArray[np.int64]
    bound: float | None


def level_offsets(utility: NDArray[np.float64], level: float) -> NDArray[np.int64] | None:
    """``r(level)``: each job's first column reaching ``level``; None if some job never does."""
    reach = utility >= level - 1e-12
    ok = reach.any(axis=1)
    if not ok.all():
        return None
    return np.argmax(reach, axis=1).astype(np.int64)


def _fits(k: NDArray[np.int64], matrix: NDArray, slack: NDArray) -> bool:
    return not matrix.shape[0] or bool(np.all(matrix @ k <= slack + 1e-9 * np.maximum(1.0, np.abs(slack))))


def feasible_levels(utility: NDArray[np.float64], matrix: NDArray, slack: NDArray) -> NDArray[np.float64]:
    """Sorted table values that the minimum utility can reach, up to the max-min level ``u*``."""
    finite = utility[np.isfinite(utility)]
    top = np.max(np.where(np.isfinite(utility), utility, -np.inf), axis=1).min() if utility.size else 0.0
    floor = utility[:, 0].min() if utility.size else 0.0
    levels = np.unique(finite[(finite >= floor) & (finite <= top)])
    lo_i, hi_i = 0, levels.size - 1  # levels[0] (= every job at its floor) is always reachable
    while lo_i < hi_i:
        mid = (lo_i + hi_i + 1) // 2
        r = level_offsets(utility, levels[mid])
        if r is not None and _fits(r, matrix, slack):
            lo_i = mid
        else:
            hi_i = mid - 1
    return levels[: lo_i + 1]


def _sum_above(values: NDArray, floor: NDArray[np.int64], matrix: NDArray, slack: NDArray):
    """Separable sum with ``k ≥ floor``: returns (k, bound)."""
    sub = shift_rows(values, floor)
    left = slack - (matrix @ floor if matrix.shape[0] else 0.0)
    alloc = allocate_sum(sub, matrix, left)
    return floor + alloc.k, alloc.bound


def solve_fair(utility: NDArray, weight: NDArray, matrix: NDArray, slack: NDArray) -> FairResult:
    """Max-min level exactly, then the weighted sum on top of it. Bound = ``u*`` (exact)."""
    levels = feasible_levels(utility, matrix, slack)
    best = float(levels[-1]) if levels.size else 0.0
    floor = level_offsets(utility, best)
    if floor is None:
        floor = np.zeros(utility.shape[0], dtype=np.int64)
    k, _ = _sum_above(weight[:, None] * utility, floor, matrix, slack)
    return FairResult(k=k, bound=best)


def fairsum_value(u: NDArray) -> float:
    return float(u.sum() + u.size * (u.min() - u.max() + 1.0)) if u.size else 0.0


def solve_fairsum(
    utility: NDArray, matrix: NDArray, slack: NDArray, *, grid: int = 8, refine: int = 6
) -> FairResult:
    """Best floor on a refined grid of levels; certified by the bucket bounds (see module notes)."""
    n = utility.shape[0]
    rows = np.arange(n)
    levels = feasible_levels(utility, matrix, slack)
    if levels.size == 0:
        k = np.zeros(n, dtype=np.int64)
        return FairResult(k=k, bound=None)
    evaluated: dict[int, tuple[float | None, NDArray[np.int64]]] = {}

    def evaluate(j: int) -> None:
        if j in evaluated:
            return
        floor = level_offsets(utility, float(levels[j]))
        assert floor is not None  # every level in `levels` is reachable
        k, bound = _sum_above(utility, floor, matrix, slack)
        # Raising the maximum costs N per unit, so also spend leftovers only up to the floor's
        # current maximum utility; keep whichever scores better.
        cap = float(utility[rows, floor].max())
        capped = np.where(utility <= cap + 1e-12, utility, -np.inf)
        k_cap, _ = _sum_above(capped, floor, matrix, slack)
        if fairsum_value(utility[rows, k_cap]) > fairsum_value(utility[rows, k]):
            k = k_cap
        evaluated[j] = (bound, k)

    for j in np.unique(np.linspace(0, levels.size - 1, min(grid, levels.size)).round().astype(int)):
        evaluate(int(j))

    # No allocation has a maximum below the largest utility some job has at its floor.
    max_floor = float(np.max(utility[:, 0]))

    def bucket_bounds() -> list[tuple[float, int, int]]:
        idx = sorted(evaluated)
        out = []
        for a, b in zip(idx, [*idx[1:], None], strict=True):
            s_a = evaluated[a][0]
            m_top = float(levels[b]) if b is not None else float(levels[-1])
            s_term = np.inf if s_a is None else s_a + n * (m_top - max_floor + 1.0)
            top = float(levels[b]) if b is not None else float(levels[-1])
            out.append((min(s_term, n * (top + 1.0)), a, b if b is not None else a))
        return out

    for _ in range(refine):
        worst = max(bucket_bounds())
        _, a, b = worst
        if b - a <= 1:
            break
        evaluate((a + b) // 2)
    best_k = max((k for _, k in evaluated.values()), key=lambda k: fairsum_value(utility[rows, k]))
    bound = max(b for b, _, _ in bucket_bounds())
    return FairResult(k=best_k, bound=None if not np.isfinite(bound) else float(bound))

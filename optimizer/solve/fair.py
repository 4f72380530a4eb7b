"""Max-min fairness (``fair``) and FairSum (``fairsum``/``penaltyfairsum``) on utility tables.

Called by ``faro.optimizer.solve.api``.

Notes
-----
*Max-min.* Utilities rise with replicas, so reaching level ``u`` needs at least
``rᵢ(u) = min{k : Uᵢ[k] ≥ u}`` replicas and, since every quota row has non-negative coefficients,
``u`` is reachable iff ``A r(u) ≤ slack``. Feasibility is monotone in ``u``, so a bisection over
the sorted table values finds the best level ``u*`` exactly. Leftovers then go to the weighted sum
with ``k ≥ r(u*)``, which never lowers the minimum.

*FairSum* ``f = ΣU + N(m − M + 1)`` with ``m = min U``, ``M = max U``. For a *band*
``[lo, hi]`` of utility values let ``S(lo, hi) = max ΣU`` s.t. every ``Uᵢ ∈ [lo, hi]`` (the
separable Sum problem on tables cut to the band; rows rise with replicas, so a job's band is a run
of counts). The optimum is ``max over bands of S(lo, hi) + N(lo − hi + 1)`` with ``lo`` a level
the minimum can reach (``≤ u*``) and ``hi ≥ M₀ = maxᵢ Uᵢ[0]``. A *box* of bands
``lo ∈ [l_a, l_b]``, ``hi ∈ [h_c, h_d]`` contains only allocations in band ``(l_a, h_d)``, so

    f ≤ min(S̄(l_a, h_d) + N(l_b − h_c + 1),  (N + 1)·l_b − h_c + N)

(``S̄``: the Lagrangian bound of the band's Sum problem; the second term uses ``ΣU ≤ m + (N−1)M``).
Branch and bound pops the box with the largest bound, evaluates its corner band once (priced
allocation → an incumbent and ``S̄``), and halves the wider side; the ``N`` per unit of spread
prunes almost every box at once. A single band left open is closed exactly by the Sum DP on small
problems; otherwise the largest open bound is the certificate.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from faro.optimizer.solve.dp import dp_search
from faro.optimizer.solve.separable import allocate_priced, allocate_sum, lp_relaxation, shift_rows, upper_hull
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
    utility: NDArray,
    matrix: NDArray,
    slack: NDArray,
    *,
    max_evals: int | None = None,
    rel_tol: float = 1e-6,
    exact_leaves: bool = False,
) -> FairResult:
    """Best FairSum allocation by branch and bound over utility bands (see module notes).

    Stops when the best open box's bound is within ``rel_tol`` of the incumbent or after
    ``max_evals`` band evaluations (default: about 2·10⁶ table entries of work); the bound is then
    the largest open box bound, so the result is always certified. With ``exact_leaves`` a single
    band whose inner bound is still open is solved exactly by the Sum DP (small problems); the
    result is then optimal whenever the search finishes and no DP gives up.
    """
    n, w = utility.shape
    rows = np.arange(n)
    nrows = matrix.shape[0]
    finite = np.isfinite(utility)
    if n == 0:
        return FairResult(k=np.zeros(0, dtype=np.int64), bound=0.0)
    low = feasible_levels(utility, matrix, slack)
    if low.size == 0:
        return FairResult(k=np.zeros(n, dtype=np.int64), bound=None)
    # No allocation has a maximum below the largest utility some job has at its first column.
    max_floor = float(np.max(np.where(finite, utility, np.inf).min(axis=1)))
    values = utility[finite]
    high = np.unique(values[values >= max_floor - 1e-12])
    direction = None
    full_hull = upper_hull(utility)
    if nrows > 1:
        _, direction = lp_relaxation(utility, matrix, slack, full_hull)  # one LP: the price direction for every band
    if max_evals is None:
        max_evals = int(np.clip(2_000_000 // max(1, n * w), 24, 400))

    best_k = np.asarray(level_offsets(utility, float(low[0])), dtype=np.int64)
    best = fairsum_value(utility[rows, best_k]) if _fits(best_k, matrix, slack) else -np.inf
    cache: dict[tuple[int, int], float] = {}
    prices: dict[tuple[int, int], NDArray | None] = {}

    def band(a: int, d: int) -> NDArray:
        inside = (utility >= low[a] - 1e-12) & (utility <= high[d] + 1e-12)
        return np.where(inside, utility, -np.inf)

    def band_hull(cut: NDArray) -> NDArray[np.bool_]:
        """``upper_hull(cut)``: a band cuts few rows, the others keep the whole table's hull."""
        hull = full_hull.copy()
        changed = (np.isfinite(cut) != finite).any(axis=1)
        if changed.any():
            hull[changed] = upper_hull(cut[changed])
        return hull

    def band_bound(a: int, d: int) -> float:
        """Upper bound on ΣU over allocations with every utility in [low[a], high[d]]; updates the
        incumbent with the band's own allocation."""
        nonlocal best, best_k
        key = (a, d)
        if key in cache:
            return cache[key]
        lo_u, hi_u = float(low[a]), float(high[d])
        out = -np.inf
        if hi_u >= lo_u - 1e-12:
            # The band's allocation only matters if it could beat the incumbent: skip its repair otherwise.
            target = best - n * (lo_u - hi_u + 1.0)
            cut = band(a, d)
            alloc = allocate_priced(cut, matrix, slack, direction, repair_above=target, hull=band_hull(cut))
            if alloc is not None:
                prices[key] = alloc.prices
                score = fairsum_value(utility[rows, alloc.k])
                if score > best:
                    best, best_k = score, alloc.k
                out = float(alloc.bound) if alloc.bound is not None else np.inf
        cache[key] = out
        return out

    def box_bound(a: int, b: int, c: int, d: int, s_bound: float) -> float:
        # f = ΣU + N(min − max + 1) with min ≤ low[b], max ≥ high[c], ΣU ≤ min + (N−1)·max
        if high[d] < low[a] - 1e-12:
            return -np.inf
        top = min(s_bound + n * (low[b] - high[c] + 1.0), (n + 1) * low[b] - high[c] + n)
        return float(top)

    def close_leaf(a: int, d: int) -> bool:
        """Solve band (a, d) exactly; True when nothing in it can beat the (updated) incumbent."""
        nonlocal best, best_k
        spread = n * (float(low[a]) - float(high[d]) + 1.0)
        k, gave_up = dp_search(
            band(a, d), np.ones(n), matrix, slack, kind="sum", prices=prices.get((a, d)), incumbent=best - spread
        )
        if k is not None:
            score = fairsum_value(utility[rows, k])
            if score > best:
                best, best_k = score, k
        return not gave_up

    lp_leaves = 0
    lp_done: set[tuple[int, int]] = set()

    def lp_bound(a: int, d: int) -> float:
        """The band's envelope LP (HiGHS): a tighter S̄ than the shared direction gives, and its allocation."""
        nonlocal best, best_k
        cut = band(a, d)
        start = np.argmax(np.isfinite(cut), axis=1).astype(np.int64)
        # a row's hull moves with its columns
        alloc = allocate_sum(shift_rows(cut, start), matrix, slack - matrix @ start, shift_rows(band_hull(cut), start))
        k = start + alloc.k
        if _fits(k, matrix, slack):
            score = fairsum_value(utility[rows, k])
            if score > best:
                best, best_k = score, k
        if alloc.bound is not None:
            cache[(a, d)] = min(cache[(a, d)], float(alloc.bound))
        return cache[(a, d)]

    counter = 0
    heap: list[tuple[float, int, int, int, int, int, bool]] = []

    def push(a: int, b: int, c: int, d: int, s_bound: float, evaluated: bool) -> None:
        nonlocal counter
        bound = box_bound(a, b, c, d, s_bound)
        if bound > best + _slack(bound, rel_tol):
            counter += 1
            heapq.heappush(heap, (-bound, counter, a, b, c, d, evaluated))

    push(0, low.size - 1, 0, high.size - 1, np.inf, False)
    leaves: list[float] = []
    evals = 0
    while heap:
        neg, _, a, b, c, d, evaluated = heap[0]
        if -neg <= best + _slack(-neg, rel_tol) or evals >= max_evals:
            break
        heapq.heappop(heap)
        if not evaluated:
            if (a, d) not in cache:
                evals += 1
            push(a, b, c, d, band_bound(a, d), True)
            continue
        s_bound = cache[(a, d)]
        if a == b and c == d:
            # One band: only its inner bound is left, unless the DP closes it.
            if exact_leaves and close_leaf(a, d):
                continue
            if nrows > 1 and lp_leaves < _MAX_LP_LEAVES and (a, d) not in lp_done:
                # The price direction is shared by all bands; the band's own LP bound is tighter.
                lp_leaves += 1
                lp_done.add((a, d))
                push(a, b, c, d, lp_bound(a, d), True)
                continue
            leaves.append(-neg)
            continue
        # Split the wider side (both cost N per unit of utility).
        if c == d or (a < b and low[b] - low[a] >= high[d] - high[c]):
            m = (a + b) // 2
            push(a, m, c, d, s_bound, True)  # same corner (a, d)
            push(m + 1, b, c, d, s_bound, False)
        else:
            m = (c + d) // 2
            push(a, b, c, m, s_bound, False)
            push(a, b, m + 1, d, s_bound, True)
    bound = max([best, *leaves, *(-e[0] for e in heap)])
    return FairResult(k=best_k, bound=float(bound) if np.isfinite(bound) else None)


_MAX_LP_LEAVES = 8
"""Most single bands per search that get their own LP (problems with several constraint rows)."""


def _slack(bound: float, rel_tol: float) -> float:
    return rel_tol * max(1.0, abs(bound))

"""``solve(problem)``: the one entry point to every solver, and the ``SOLVERS`` registry.

Called by policies (every 10–300 simulated seconds), the live optimizer, ``faro plan`` and the
solver benchmark. Builds the integer utility tables once, handles quotas that cannot even hold the
minimum replicas (status ``degraded``), dispatches to the named solver and packs a ``SolveResult``.

Solvers (``SOLVERS``): ``auto`` (``greedy``, then ``dp`` to close any gap on small problems;
FairSum's band search closes its last bands with the Sum DP instead), ``greedy`` (envelope LP +
repair with a certified bound; exact level bisection for ``fair``; band branch and bound for
``fairsum``), ``dp
(exact Pareto DP, small problems), ``cvxpy`` (continuous relaxation on the concave envelopes with
DPP parameters, then integer repair) and ``cobyla`` (the Faro artifact's method, a reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from faro.optimizer.model.objective import base_objective, objective_value
from faro.optimizer.model.problem import Constraints, Problem
from faro.optimizer.solve.dp import solve_dp
from faro.optimizer.solve.fair import fairsum_value, solve_fair, solve_fairsum
from faro.optimizer.solve.result import SolveResult
from faro.optimizer.solve.separable import allocate_sum
from faro.optimizer.solve.tables import JobArrays, Tables, build_tables, resource_caps
from numpy.typing import NDArray

Clock = Callable[[], float]

OPTIMAL_GAP = 1e-6
"""Relative gap at or below which a result is reported ``optimal``."""

DP_MAX_JOBS = 12
"""``auto`` runs the exact DP after the fast allocator only up to this many jobs."""


@dataclass(frozen=True)
class Prepared:
    """What every solver starts from: arrays, constraints, (possibly lowered) floors and tables."""

    problem: Problem
    arrays: JobArrays
    constraints: Constraints
    lo: NDArray[np.int64]
    tables: Tables
    slack: NDArray[np.float64]  # bound − A·lo
    degraded: str  # why mins were lowered ("" when they fit)

    @property
    def kind(self) -> str:
        return base_objective(self.problem.objective)

    @property
    def values(self) -> NDArray[np.float64]:
        """What each job adds to the objective per column (weighted for sum, raw otherwise)."""
        if self.kind == "sum":
            return self.arrays.weight[:, None] * self.tables.utility
        return self.tables.utility


def prepare(problem: Problem) -> Prepared:
    arrays = JobArrays.of(problem)
    cons = problem.constraints()
    lo, degraded = _fit_minimums(cons, arrays.min_replicas)
    hi = resource_caps(cons, lo, np.maximum(arrays.max_replicas, lo))
    tables = build_tables(problem, arrays=arrays, lo=lo, hi=hi)
    slack = cons.bound - cons.matrix @ lo if cons.matrix.shape[0] else np.zeros(0)
    return Prepared(problem, arrays, cons, lo, tables, np.maximum(slack, 0.0), degraded)


def _fit_minimums(cons: Constraints, lo: NDArray[np.int64]) -> tuple[NDArray[np.int64], str]:
    """Lower the minimums of the jobs under over-full quota rows by one common factor (rounded
    down) until they fit; jobs under no over-full row keep theirs."""
    if cons.matrix.shape[0] == 0:
        return lo, ""
    tol = 1e-9 * np.maximum(1.0, np.abs(cons.bound))
    over = cons.matrix @ lo > cons.bound + tol
    if not over.any():
        return lo, ""
    hit = (cons.matrix[over] > 0).any(axis=0) & (lo > 0)

    def scaled(f: float) -> NDArray[np.int64]:
        return np.where(hit, np.floor(lo * f + 1e-9), lo).astype(np.int64)

    def fits(x: NDArray[np.int64]) -> bool:
        return bool(np.all(cons.matrix @ x <= cons.bound + tol))

    lo_f, hi_f = 0.0, 1.0
    for _ in range(50):
        mid = (lo_f + hi_f) / 2
        if fits(scaled(mid)):
            lo_f = mid
        else:
            hi_f = mid
    new = scaled(lo_f)
    # Rounding down can take much more than needed (a minimum of 1 becomes 0): hand replicas back
    # one at a time to the job that kept the smallest share of its minimum, while they fit.
    usage = cons.matrix @ new
    handed_back = 0
    while True:
        short = np.nonzero(hit & (new < lo))[0]
        if short.size == 0:
            break
        fits_one = np.all(usage[:, None] + cons.matrix[:, short] <= (cons.bound + tol)[:, None], axis=0)
        if not fits_one.any():
            break
        cand = short[fits_one]
        i = int(cand[np.argmin(new[cand] / lo[cand])])
        new[i] += 1
        usage += cons.matrix[:, i]
        handed_back += 1
    labels = [cons.labels[r] for r in np.nonzero(over)[0]]
    msg = (
        f"minimum replicas do not fit {', '.join(labels)}: the minimums of {int(hit.sum())} job(s) under "
        f"those quotas were scaled by {lo_f:.3f}, rounded down, and {handed_back} replica(s) handed back to "
        f"the jobs furthest below their minimum while they fit (total {int(lo[hit].sum())} -> "
        f"{int(new[hit].sum())} replicas)"
    )
    if not fits(new):
        bad = [cons.labels[r] for r in np.nonzero(cons.matrix @ new > cons.bound + tol)[0]]
        msg += f"; {', '.join(bad)} is over-used by pods Faro does not manage, so its jobs get 0 replicas"
    return new, msg


def _pack(
    prep: Prepared,
    k: NDArray[np.int64],
    *,
    solver: str,
    bound: float | None,
    solve_ms: float,
    proven: bool = False,
    message: str = "",
    status: str | None = None,
) -> SolveResult:
    t = prep.tables
    replicas = t.lo + k
    util, lat, adm = t.at(replicas)
    rows = np.arange(k.size)
    ttft = None if t.ttft_ms is None else t.ttft_ms[rows, k]
    itl = None if t.itl_ms is None else t.itl_ms[rows, k]
    value = objective_value(prep.problem.objective, util, prep.arrays.weight)
    if proven and bound is None:
        bound = value
    if bound is not None:
        bound = max(bound, value)  # the certificate can only be above what we hold
    if status is None:
        gap = None if bound is None else (bound - value) / max(1.0, abs(bound))
        status = "optimal" if proven or (gap is not None and gap <= OPTIMAL_GAP) else "feasible"
    if prep.degraded:
        status = "degraded"
        message = f"{prep.degraded}. {message}".strip()
    return SolveResult(
        status=status,
        replicas=replicas.astype(np.int64),
        objective_value=value,
        utility=util,
        latency_ms=lat,
        solver=solver,
        solve_ms=solve_ms,
        bound=bound,
        message=message,
        admission=adm,
        ttft_ms=ttft,
        itl_ms=itl,
    )


def _greedy(prep: Prepared, *, exact: bool = False) -> tuple[NDArray[np.int64], float | None]:
    """The fast allocator of each objective; ``exact`` lets FairSum close its last bands by DP."""
    kind = prep.kind
    m, s = prep.constraints.matrix, prep.slack
    if kind == "sum":
        alloc = allocate_sum(prep.values, m, s)
        return alloc.k, alloc.bound
    if kind == "fair":
        res = solve_fair(prep.tables.utility, prep.arrays.weight, m, s)
        return res.k, res.bound
    res = solve_fairsum(prep.tables.utility, m, s, exact_leaves=exact)
    return res.k, res.bound


def _dp(prep: Prepared, *, incumbent_k: NDArray[np.int64] | None = None) -> NDArray[np.int64] | None:
    kind = prep.kind
    m, s = prep.constraints.matrix, prep.slack
    prices = None
    incumbent = -np.inf
    if kind == "sum":
        alloc = allocate_sum(prep.values, m, s)
        prices = alloc.prices
        k0 = alloc.k if incumbent_k is None else incumbent_k
        incumbent = float(prep.values[np.arange(k0.size), k0].sum())
    return solve_dp(prep.tables.utility, prep.arrays.weight, m, s, kind=kind, prices=prices, incumbent=incumbent)


def _score(prep: Prepared, k: NDArray[np.int64]) -> float:
    util = prep.tables.utility[np.arange(k.size), k]
    if prep.kind == "fairsum":
        return fairsum_value(util)
    return objective_value(prep.problem.objective, util, prep.arrays.weight)


def solve(
    problem: Problem,
    *,
    solver: str = "auto",
    time_limit_s: float | None = None,
    initial: np.ndarray | None = None,
    clock: Clock | None = None,
) -> SolveResult:
    """Solve ``problem`` with the named solver; never raises for infeasible or odd inputs.

    Parameters
    ----------
    solver
        A key of ``SOLVERS``.
    time_limit_s
        Soft limit for the iterative solvers (``cobyla``); needs ``clock``.
    initial
        Starting replicas for ``cobyla`` (default: the jobs' current replicas).
    clock
        Monotonic seconds (e.g. ``time.perf_counter``) to measure ``solve_ms``; pure layers read no
        clock, so without one ``solve_ms`` is NaN.
    """
    start = clock() if clock else math.nan
    if solver not in SOLVERS:
        return SolveResult(
            status="error",
            replicas=np.array([j.current_replicas for j in problem.jobs], dtype=np.int64),
            objective_value=math.nan,
            utility=np.zeros(len(problem.jobs)),
            latency_ms=np.full(len(problem.jobs), np.inf),
            solver=solver,
            solve_ms=0.0,
            message=f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}",
            admission=np.ones(len(problem.jobs)),
        )
    prep = prepare(problem)

    def elapsed_ms() -> float:
        return (clock() - start) * 1000.0 if clock else math.nan

    if not problem.jobs:
        return _pack(prep, np.zeros(0, dtype=np.int64), solver=solver, bound=0.0, solve_ms=elapsed_ms(), proven=True)
    return SOLVERS[solver](prep, time_limit_s=time_limit_s, initial=initial, clock=clock, elapsed_ms=elapsed_ms)


def _run_greedy(prep: Prepared, *, elapsed_ms: Callable[[], float], **_: object) -> SolveResult:
    k, bound = _greedy(prep)
    return _pack(prep, k, solver="greedy", bound=bound, solve_ms=elapsed_ms())


def _run_auto(prep: Prepared, *, elapsed_ms: Callable[[], float], **_: object) -> SolveResult:
    small = prep.tables.lo.size <= DP_MAX_JOBS
    fairsum = prep.kind == "fairsum"
    k, bound = _greedy(prep, exact=fairsum and small)
    value = _score(prep, k)
    gap = None if bound is None else (bound - value) / max(1.0, abs(bound))
    proven = False
    note = ""
    if fairsum and small and gap is not None and gap <= OPTIMAL_GAP:
        note = "proven optimal by the band search (bands closed by the exact Sum DP)"
    # FairSum's band search already ran its exact DP per band; the feature DP would only repeat it slower.
    if (gap is None or gap > OPTIMAL_GAP) and small and not fairsum:
        exact = _dp(prep, incumbent_k=k)
        if exact is not None:
            if _score(prep, exact) >= value - 1e-12:
                k = exact
            proven = True
            note = "proven optimal by the exact DP"
    return _pack(
        prep, k, solver="auto", bound=None if proven else bound, solve_ms=elapsed_ms(), proven=proven, message=note
    )


def _run_dp(prep: Prepared, *, elapsed_ms: Callable[[], float], **_: object) -> SolveResult:
    exact = _dp(prep)
    if exact is None:
        k, bound = _greedy(prep)
        return _pack(
            prep, k, solver="dp", bound=bound, solve_ms=elapsed_ms(), status="time_limit",
            message="state space too large for the exact DP; returned the greedy allocation",
        )
    return _pack(prep, exact, solver="dp", bound=None, solve_ms=elapsed_ms(), proven=True)


def _run_cvxpy(prep: Prepared, *, elapsed_ms: Callable[[], float], **_: object) -> SolveResult:
    from faro.optimizer.solve.convex import solve_relaxed

    k, bound, msg = solve_relaxed(prep)
    return _pack(prep, k, solver="cvxpy", bound=bound, solve_ms=elapsed_ms(), message=msg)


def _run_cobyla(
    prep: Prepared,
    *,
    elapsed_ms: Callable[[], float],
    time_limit_s: float | None = None,
    initial: np.ndarray | None = None,
    clock: Clock | None = None,
    **_: object,
) -> SolveResult:
    from faro.optimizer.solve.cobyla import solve_cobyla

    k, msg = solve_cobyla(prep, initial=initial, time_limit_s=time_limit_s, clock=clock)
    status = "time_limit" if msg.startswith("time limit") else None
    return _pack(prep, k, solver="cobyla", bound=None, solve_ms=elapsed_ms(), message=msg, status=status)


SOLVERS: dict[str, Callable[..., SolveResult]] = {
    "auto": _run_auto,
    "greedy": _run_greedy,
    "dp": _run_dp,
    "cvxpy": _run_cvxpy,
    "cobyla": _run_cobyla,
}
"""Solver name → runner (``runner(prepared, *, time_limit_s, initial, clock, elapsed_ms)``)."""

"""FairSum's band search and the LP-free priced allocator: exact on small instances, certified bounds."""

import itertools

import numpy as np
import pytest
from faro.optimizer.model import SLO, Job, ModelConfig, Problem, Quota, objective_value
from faro.optimizer.solve import solve
from faro.optimizer.solve import tables as tables_mod
from faro.optimizer.solve.api import prepare
from faro.optimizer.solve.fair import fairsum_value, solve_fairsum
from faro.optimizer.solve.separable import allocate_priced, lagrangian_bound, lp_relaxation
from faro.optimizer.solve.tables import build_tables
from test_solve_allocator import random_problem


def all_allocations(tables, lo, hi):
    """Every integer allocation within ``lo … hi`` per job, as rows of replica counts."""
    grids = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def brute_force_fast(problem):
    """Best objective over every allocation of the solver's own tables (vectorised enumeration).

    The tables stop at each job's saturation point, where utility is flat, so the optimum over
    them is the optimum over ``min … max``; test_solve_allocator checks tables against the model.
    """
    prep = prepare(problem)
    t = prep.tables
    x = all_allocations(t, t.lo, t.hi)
    cons = problem.constraints()
    fits = np.all(cons.matrix @ x.T <= (cons.bound + 1e-9 * np.maximum(1.0, np.abs(cons.bound)))[:, None], axis=0)
    x = x[fits]
    if x.shape[0] == 0:
        return -np.inf
    util = t.utility[np.arange(x.shape[1])[None, :], x - t.lo[None, :]]
    n = x.shape[1]
    values = util.sum(axis=1) + n * (util.min(axis=1) - util.max(axis=1) + 1.0)
    return float(values.max())


def cluster_problem(rng, *, n, objective, cpu):
    """The simulator's shape: one cluster CPU cap, 7-step forecasts, wide tables."""
    jobs = tuple(
        Job(name=f"j{i}", slo=SLO(720.0, 99.0), processing_time_ms=180.0,
            rate_rps=tuple(rng.uniform(0.5, 1.0) * float(rng.uniform(1, 60)) for _ in range(7)),
            resources={"cpu": float(rng.choice([0.5, 1.0]))}, min_replicas=int(rng.integers(0, 2)),
            max_replicas=40, current_replicas=int(rng.integers(1, 8)))
        for i in range(n)
    )
    return Problem(jobs=jobs, quotas=(Quota("cluster", {"cpu": cpu}),), objective=objective,
                   model=ModelConfig(cold_start_s=float(rng.choice([0.0, 35.0, 90.0]))))


@pytest.mark.parametrize("objective", ["fairsum", "penaltyfairsum"])
def test_auto_band_search_equals_brute_force_on_many_small_instances(objective):
    rng = np.random.default_rng(20 + len(objective))
    checked = 0
    for trial in range(140):
        n = int(rng.integers(1, 6))
        if trial % 2:
            problem = random_problem(rng, n=n, objective=objective, max_cap=5 if n > 3 else 8)
        else:
            problem = cluster_problem(rng, n=min(n, 4), objective=objective, cpu=float(rng.uniform(2, 16)))
        if np.prod(prepare(problem).tables.width, dtype=float) > 200_000:
            continue
        expected = brute_force_fast(problem)
        if not np.isfinite(expected):
            continue
        result = solve(problem, solver="auto")
        if result.status == "degraded":
            continue
        assert result.status == "optimal", result.message
        assert result.objective_value == pytest.approx(expected, abs=1e-9)
        assert result.bound == pytest.approx(expected, abs=1e-6)
        greedy = solve(problem, solver="greedy")
        assert greedy.bound is not None and greedy.bound >= expected - 1e-9
        assert greedy.objective_value <= expected + 1e-9
        checked += 1
    assert checked >= 100


def test_brute_force_over_tables_equals_brute_force_over_min_max():
    from test_solve_allocator import brute_force

    rng = np.random.default_rng(3)
    for _ in range(15):
        problem = random_problem(rng, n=int(rng.integers(1, 4)), objective="penaltyfairsum", max_cap=5)
        assert brute_force_fast(problem) == pytest.approx(brute_force(problem), abs=1e-9)


def test_band_search_without_exact_leaves_is_certified_on_wider_problems():
    rng = np.random.default_rng(8)
    for _ in range(12):
        problem = cluster_problem(rng, n=int(rng.integers(5, 9)), objective="fairsum", cpu=float(rng.uniform(8, 30)))
        prep = prepare(problem)
        util, m, s = prep.tables.utility, prep.constraints.matrix, prep.slack
        fast = solve_fairsum(util, m, s)
        exact = solve_fairsum(util, m, s, exact_leaves=True, max_evals=10_000)
        rows = np.arange(util.shape[0])
        best = fairsum_value(util[rows, exact.k])
        assert exact.bound == pytest.approx(best, abs=1e-9)
        assert fast.bound >= best - 1e-9
        assert fairsum_value(util[rows, fast.k]) <= best + 1e-12
        assert np.all(m @ fast.k <= s + 1e-9) and np.all(m @ exact.k <= s + 1e-9)


def test_the_optimum_keeps_every_job_inside_its_table_and_reports_the_model_utility():
    problem = cluster_problem(np.random.default_rng(4), n=10, objective="penaltyfairsum", cpu=32.0)
    result = solve(problem)
    assert result.status == "optimal"
    assert result.objective_value == pytest.approx(objective_value("fairsum", result.utility))
    assert np.all(result.replicas <= 40) and result.replicas @ [j.resources["cpu"] for j in problem.jobs] <= 32 + 1e-9


def random_tables(rng, n, w):
    """Nondecreasing random utility rows with an occasional jump (like the stability edge)."""
    steps = rng.exponential(0.1, (n, w)) * (rng.random((n, w)) < 0.7)
    steps[:, 0] = rng.uniform(0, 0.3, n)
    return np.minimum(1.0, np.cumsum(steps, axis=1))


@pytest.mark.parametrize("nrows", [1, 3])
def test_priced_allocation_fits_and_bounds_the_integer_optimum(nrows):
    rng = np.random.default_rng(nrows)
    for _ in range(60):
        n, w = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        values = random_tables(rng, n, w)
        matrix = rng.choice([0.0, 0.5, 1.0, 2.0], (nrows, n))
        slack = rng.uniform(0, 2 * w, nrows)
        direction = lp_relaxation(values, matrix, slack)[1] if nrows > 1 else None
        alloc = allocate_priced(values, matrix, slack, direction)
        ks = all_allocations(None, np.zeros(n, dtype=int), np.full(n, w - 1))
        ok = np.all(matrix @ ks.T <= slack[:, None] + 1e-9, axis=0)
        best = values[np.arange(n)[None, :], ks[ok]].sum(axis=1).max()
        assert np.all(matrix @ alloc.k <= slack + 1e-9)
        assert alloc.value <= best + 1e-12
        assert alloc.bound >= best - 1e-9
        if nrows == 1:  # one row: the bound is the envelope LP's value
            _, prices = lp_relaxation(values, matrix, slack)
            assert alloc.bound == pytest.approx(lagrangian_bound(values, matrix, slack, prices), abs=1e-9)


def test_priced_allocation_keeps_jobs_inside_their_bands():
    values = np.array([[-np.inf, 0.3, 0.6, -np.inf], [0.2, 0.5, 0.9, 1.0], [-np.inf, -np.inf, 0.4, 0.45]])
    matrix = np.array([[1.0, 1.0, 1.0]])
    alloc = allocate_priced(values, matrix, np.array([6.0]))
    assert np.all(np.isfinite(values[np.arange(3), alloc.k]))
    best = max(
        sum(values[i, k] for i, k in enumerate(ks))
        for ks in itertools.product(range(4), repeat=3)
        if sum(ks) <= 6 and all(np.isfinite(values[i, k]) for i, k in enumerate(ks))
    )
    assert alloc.value == pytest.approx(best)
    assert allocate_priced(values, matrix, np.array([2.0])) is None  # the bands' floors need 3


def test_penalty_tables_are_the_same_when_the_admission_sweep_is_split(monkeypatch):
    problem = random_problem(np.random.default_rng(12), n=6, objective="penaltyfairsum", max_cap=20)
    whole = build_tables(problem)
    monkeypatch.setattr(tables_mod, "_STACK_BUDGET", 1)  # one admission rate per sweep
    split = build_tables(problem)
    np.testing.assert_array_equal(whole.utility, split.utility)
    np.testing.assert_array_equal(whole.admission, split.admission)
    np.testing.assert_array_equal(whole.latency_ms, split.latency_ms)


@pytest.mark.parametrize("objective", ["sum", "penaltyfairsum"])
def test_utility_tables_never_fall_as_replicas_rise(objective):
    """The band search treats each job's utilities in [lo, hi] as one run of counts; cold start
    (min(x, current) for the first steps) and the admission choice keep rows nondecreasing."""
    rng = np.random.default_rng(2)
    for _ in range(40):
        problem = random_problem(rng, n=6, objective=objective, max_cap=25,
                                 cold_start_s=float(rng.choice([0.0, 35.0, 150.0])))
        util = build_tables(problem).utility
        diffs = np.diff(np.where(np.isfinite(util), util, np.nan), axis=1)
        assert np.nanmin(diffs, initial=0.0) >= -1e-12

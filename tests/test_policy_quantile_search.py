"""The Faro long step's fast paths: the top-first/bisection quantile search picks the level the
artifact's one-at-a-time raise picks, with fewer solves, and the vectorised shrink and room check
agree with their per-job definitions."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.model.problem import SLO, ModelConfig, Quota
from faro.optimizer.model.utility import utility_curves
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.common import constraint_matrix
from faro.optimizer.policy.faro import build_problem, has_room, shrink
from faro.optimizer.policy.registry import make_policy
from test_policy_faro import RecordingSolve, TableForecaster

SCALE = {0.6: 1.0, 0.7: 1.3, 0.8: 1.6, 0.9: 1.9}


def view_of(n_jobs: int, *, cpus: float, rate_rpm: float = 1200.0, replicas: int = 2) -> ClusterView:
    jobs = tuple(
        JobView(
            spec=JobSpec(name=f"j{i}", slo=SLO(720.0), processing_time_ms=180.0, min_replicas=1, max_replicas=40),
            observation=JobObservation(rate_history_rpm=(rate_rpm * (1 + 0.2 * i),) * 20),
            current_replicas=replicas,
            ready_replicas=replicas,
        )
        for i in range(n_jobs)
    )
    return ClusterView(now_s=60.0, jobs=jobs, quotas=(Quota(name="cap", hard={"cpu": float(cpus)}),))


def decide(search: str, view: ClusterView) -> tuple[float, dict, int]:
    solve = RecordingSolve()
    policy = make_policy("faro-fairsum", solve_fn=solve, quantile_search=search, quantile=0.6, coverage=None,
                         forecaster_factory=lambda: TableForecaster(SCALE))
    d = policy.decide(view, policy.initial_state())
    return d.state.quantile, d.plan.desired(), len(solve.problems)


def test_bisection_picks_the_same_quantile_and_plan_as_the_linear_raise_at_every_quota():
    chosen = set()
    for cpus in range(3, 40):
        view = view_of(3, cpus=cpus)
        q_lin, plan_lin, _ = decide("linear", view)
        q_bis, plan_bis, _ = decide("bisect", view)
        assert (q_bis, plan_bis) == (q_lin, plan_lin), cpus
        chosen.add(q_lin)
    assert len(chosen) >= 3  # the sweep really exercises intermediate levels, not only 0.6 and 0.9


def test_bisection_solves_twice_when_the_cluster_has_room_for_the_top_quantile():
    view = view_of(2, cpus=200)
    assert decide("linear", view)[2] == 4
    q, _, solves = decide("bisect", view)
    assert (q, solves) == (pytest.approx(0.9), 2)


def test_a_plan_without_room_at_the_first_level_is_kept_after_one_solve():
    view = view_of(4, cpus=6, rate_rpm=3000.0)
    for search in ("linear", "bisect"):
        q, _, solves = decide(search, view)
        assert (q, solves) == (pytest.approx(0.6), 1)


def test_unknown_quantile_search_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="quantile_search"):
        make_policy("faro-fairsum", quantile_search="galloping")


def reference_shrink(problem, x, tol=1e-4):
    curves = utility_curves(problem.jobs, np.arange(int(x.max()) + 1), config=problem.model)
    out = x.copy()
    for i, job in enumerate(problem.jobs):
        ok = np.flatnonzero(curves.utility[i, : x[i] + 1] >= curves.utility[i, x[i]] - tol)
        out[i] = max(job.min_replicas, int(ok[0]) if ok.size else int(x[i]))
    return out


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(5)])
def test_vectorised_shrink_matches_the_per_job_rule(seed):
    rng = np.random.default_rng(seed)
    view = view_of(30, cpus=500)
    rates = rng.uniform(0, 3000, size=(30, 7))
    problem = build_problem(view, rates, objective="sum", model=ModelConfig())
    x = rng.integers(0, 25, size=30).astype(np.int64)
    assert np.array_equal(shrink(problem, x), reference_shrink(problem, x))


def test_build_problem_cleans_nan_and_negative_rates_and_converts_to_per_second():
    view = view_of(2, cpus=10)
    problem = build_problem(view, np.array([[60.0, np.nan], [-5.0, 120.0]]), objective="sum", model=ModelConfig())
    assert problem.jobs[0].rate_rps == (1.0, 0.0)
    assert problem.jobs[1].rate_rps == (0.0, 2.0)


@pytest.mark.parametrize("cpus", [pytest.param(c, id=f"{c}cpu") for c in (4, 8, 9, 10, 50)])
def test_room_check_with_a_precomputed_matrix_agrees_with_the_per_job_rule(cpus):
    view = view_of(4, cpus=cpus)
    matrix, bound = constraint_matrix(view)
    for x in ([1, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 3], [40, 40, 40, 1]):
        x = np.array(x)
        free = bound - matrix @ x
        expected = any(x[i] < 40 and np.all(free - matrix[:, i] >= -1e-9) for i in range(4))
        assert has_room(view, x, constraints=(matrix, bound)) is expected
        assert has_room(view, x) is expected

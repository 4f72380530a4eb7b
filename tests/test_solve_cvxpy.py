"""The cvxpy relaxation agrees with the integer allocator where the curves are concave, and re-solves."""

import numpy as np
import pytest
from faro.optimizer.model import SLO, Job, Problem, Quota
from faro.optimizer.solve import solve
from faro.optimizer.solve.convex import EnvelopeRelaxation, hull_lines
from faro.optimizer.solve.separable import allocate_sum, upper_hull


def concave_problem(seed):
    """Light jobs (ρ well below the stability edge) with large SLOs: concave, saturating curves."""
    rng = np.random.default_rng(seed)
    jobs = tuple(
        Job(name=f"j{i}", namespace="a", slo=SLO(float(rng.uniform(150, 400))), processing_time_ms=100.0,
            rate_rps=(float(rng.uniform(1, 4)),), resources={"cpu": float(rng.choice([0.5, 1.0]))},
            weight=float(rng.uniform(0.5, 2)), min_replicas=1, max_replicas=8, current_replicas=8)
        for i in range(8)
    )
    return Problem(jobs=jobs, quotas=(Quota("qa", {"cpu": float(rng.uniform(5, 9))}, namespace="a"),))


@pytest.mark.parametrize("seed", range(6))
def test_cvxpy_and_greedy_agree_within_tolerance_on_concave_cases(seed):
    problem = concave_problem(seed)
    greedy = solve(problem, solver="greedy")
    relaxed = solve(problem, solver="cvxpy")
    assert relaxed.objective_value == pytest.approx(greedy.objective_value, rel=1e-3)
    assert relaxed.bound == pytest.approx(greedy.bound, rel=1e-4)


def test_the_relaxation_is_an_upper_bound_and_resolves_with_new_parameters():
    values = np.array([[0.0, 0.6, 0.9, 1.0], [0.0, 0.2, 0.9, 1.0], [0.0, 0.5, 0.5, -np.inf]])
    matrix = np.array([[1.0, 1.0, 2.0]])
    job, slope, icpt = hull_lines(values)
    relax = EnvelopeRelaxation(kind="sum", segment_job=job, num_jobs=3, matrix=matrix)
    results = []
    for free in (2.0, 4.0):
        _k, value, duals = relax.solve(slope=slope, icpt=icpt, floor=np.zeros(3), cap=np.array([3, 3, 2]),
                                      slack=np.array([free]))
        exact = allocate_sum(values, matrix, np.array([free]))
        assert value >= exact.value - 1e-7
        assert duals is not None and duals[0] >= 0
        results.append(value)
    assert results[1] > results[0]


def test_upper_hull_keeps_the_envelope_vertices():
    values = np.array([[0.0, 0.1, 0.2, 0.9, 1.0, 1.0]])
    assert upper_hull(values)[0].tolist() == [True, False, False, True, True, True]

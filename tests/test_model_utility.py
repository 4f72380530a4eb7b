"""Utilities, cold start, penalty and objectives behave as the design says."""

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model import (
    SLO,
    Job,
    ModelConfig,
    Problem,
    Quota,
    objective_value,
    utility_curves,
)
from faro.optimizer.model.utility import (
    ADMISSION_MIN_GAIN,
    drop_penalty,
    effective_replicas,
    relaxed_utility,
    step_utility,
)


def job(**kw):
    base = dict(name="j", slo=SLO(720), processing_time_ms=180, rate_rps=(16.0,), current_replicas=5)
    base.update(kw)
    return Job(**base)


def test_relaxed_utility_is_one_within_slo_and_the_ratio_beyond():
    assert relaxed_utility([500, 720, 1440, np.inf], 720).tolist() == [1.0, 1.0, 0.5, 0.0]
    assert relaxed_utility(1440, 720, alpha=2) == pytest.approx(0.25)
    assert step_utility([719, 721], 720).tolist() == [1.0, 0.0]


def test_a_growing_job_keeps_its_old_count_during_cold_start():
    eff = effective_replicas(np.array([3, 8]), 5, horizon=4, cold_start_steps=1)
    assert eff.tolist() == [[3, 3, 3, 3], [5, 8, 8, 8]]


def test_utility_curves_rise_with_replicas_and_see_the_cold_start():
    curves = utility_curves([job(rate_rps=(16.0,) * 7, current_replicas=2)], np.arange(1, 12), config=ModelConfig())
    u = curves.utility[0]
    assert np.all(np.diff(u) >= -1e-12)
    assert u[-1] == pytest.approx(1 / 7 * float(curves.utility[0][1]) + 6 / 7, rel=1e-6)  # step 0 runs on 2


def test_drop_penalty_goes_through_the_artifact_breakpoints():
    assert drop_penalty([0, 0.001, 0.03, 0.08, 1.0]).tolist() == [0, 0, 0.25, 0.5, 1.0]


def test_penalty_curves_admit_less_when_replicas_are_too_few():
    j = job(rate_rps=(30.0,) * 3, current_replicas=2)
    plain = utility_curves([j], np.array([2, 20]), config=ModelConfig())
    pen = utility_curves([j], np.array([2, 20]), config=ModelConfig(), penalty=True)
    assert pen.admission[0, 0] < 1.0
    assert pen.utility[0, 0] > plain.utility[0, 0]


def test_penalty_curves_never_drop_for_less_than_the_minimum_gain():
    # a job near its SLO: dropping 0.1% (free under P) shaves a little latency but buys < 0.01 utility
    j = job(rate_rps=(10.0,) * 3, current_replicas=3)
    pen = utility_curves([j], np.arange(1, 12), config=ModelConfig(), penalty=True)
    plain = utility_curves([j], np.arange(1, 12), config=ModelConfig())
    chose = pen.admission[0] < 1.0
    assert np.all(pen.utility[0, chose] >= plain.utility[0, chose] + ADMISSION_MIN_GAIN)
    assert np.array_equal(pen.utility[0, ~chose], plain.utility[0, ~chose])


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        pytest.param("sum", 0.2 * 1 + 0.8 * 2 + 1.0, id="sum is weighted"),
        pytest.param("fair", 0.2, id="fair is the worst utility"),
        pytest.param("fairsum", 2.0 + 3 * (0.2 - 1.0 + 1), id="fairsum adds N times the spread"),
    ],
)
def test_objectives(objective, expected):
    assert objective_value(objective, [0.2, 0.8, 1.0], [1, 2, 1]) == pytest.approx(expected)


def test_constraints_count_each_quota_resource_for_the_jobs_it_covers():
    jobs = (job(name="a", namespace="x", resources={"cpu": 1, "memory": 2e9}), job(name="b", namespace="y"))
    problem = Problem(
        jobs=jobs,
        quotas=(
            Quota("x", hard={"requests.cpu": 4, "memory": 8e9, "pods": 10}, used={"requests.cpu": 1}, namespace="x"),
            Quota("cluster", hard={"cpu": 6}),
        ),
    )
    cons = problem.constraints()
    assert cons.labels == ("x:requests.cpu", "x:memory", "x:pods", "cluster:cpu")
    assert cons.matrix.tolist() == [[1, 0], [2e9, 0], [1, 0], [1, 1]]
    assert cons.bound.tolist() == [3, 8e9, 10, 6]
    assert cons.satisfied(np.array([3, 3])) and not cons.satisfied(np.array([4, 1]))


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        pytest.param({"processing_time_ms": 0}, "processing_time_ms", id="zero processing time"),
        pytest.param({"rate_rps": (1.0, -2.0)}, "rate_rps", id="negative rate"),
        pytest.param({"min_replicas": 5, "max_replicas": 2}, "max_replicas", id="max below min"),
    ],
)
def test_invalid_jobs_name_the_field(kw, field):
    with pytest.raises(InvalidInputError, match=field):
        job(**kw)

"""Policies reproduce the Faro artifact's behaviour where it is the reference (``docs/fidelity.md``).

MArk: the artifact's controller clips scale-ups to the free quota first come, first served (scale-downs
first, then jobs in order), so the last jobs absorb the shortfall.
"""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.common import clip_to_quota, fit_in_job_order
from faro.optimizer.policy.registry import make_policy


def job(name, *, replicas=1, lo=1, hi=100, history=(), resources=None):
    spec = JobSpec(
        name=name,
        slo=SLO(720.0),
        processing_time_ms=180.0,
        min_replicas=lo,
        max_replicas=hi,
        resources=resources or {"cpu": 1.0},
    )
    obs = JobObservation(rate_history_rpm=tuple(history))
    return JobView(spec=spec, observation=obs, current_replicas=replicas, ready_replicas=replicas)


def cluster(*jobs, hard=None, now=60.0):
    quotas = () if hard is None else (Quota(name="cap", hard=hard),)
    return ClusterView(now_s=now, jobs=tuple(jobs), quotas=quotas)


@pytest.mark.parametrize(
    ("current", "desired", "cpus", "expected"),
    [
        pytest.param([2, 2, 2], [6, 6, 6], 12, [6, 4, 2], id="the-last-jobs-absorb-the-shortfall"),
        pytest.param([2, 2, 5], [6, 6, 1], 12, [6, 5, 1], id="scale-downs-free-quota-before-any-scale-up"),
        pytest.param([1, 1, 1], [3, 2, 2], 12, [3, 2, 2], id="everything-fits-as-asked"),
        pytest.param([3, 3, 3], [5, 5, 5], 9, [3, 3, 3], id="no-free-quota-holds-everyone"),
        pytest.param([1, 1, 1], [1, 9, 9], 10, [1, 8, 1], id="a-job-not-growing-takes-no-turn"),
    ],
)
def test_job_order_clipping_grants_increases_first_come_first_served(current, desired, cpus, expected):
    view = cluster(*[job(f"j{i}", replicas=c) for i, c in enumerate(current)], hard={"cpu": float(cpus)})
    assert fit_in_job_order(view, desired).tolist() == expected


def test_job_order_clipping_respects_every_quota_row():
    heavy = {"cpu": 1.0, "memory": 4.0}
    view = cluster(
        job("a", replicas=1, resources=heavy), job("b", replicas=1, resources=heavy), hard={"cpu": 10.0, "memory": 12.0}
    )
    # memory allows 3 replicas in all: a gets the one free, b stays
    assert fit_in_job_order(view, [5, 5]).tolist() == [2, 1]


def test_job_order_clipping_clamps_to_min_and_max_replicas():
    view = cluster(job("a", replicas=2, lo=2, hi=4), job("b", replicas=2), hard={"cpu": 20.0})
    assert fit_in_job_order(view, [9, 0]).tolist() == [4, 1]


def test_job_order_clipping_shrinks_when_already_over_quota():
    view = cluster(job("a", replicas=6), job("b", replicas=6), hard={"cpu": 8.0})
    x = fit_in_job_order(view, [6, 6])
    assert x.sum() <= 8
    assert np.all(x >= 1)


def test_job_order_clipping_without_quotas_only_clamps():
    view = cluster(job("a", replicas=1, hi=5), job("b", replicas=1))
    assert fit_in_job_order(view, [50, 7]).tolist() == [5, 7]


class _Flat:
    """A forecaster whose every quantile is ``rpm`` for each job and minute."""

    def __init__(self, rpm):
        self.rpm = rpm

    def fit(self, history):
        rpm = self.rpm

        class Fitted:
            def update(self, new):
                return self

            def forecast(self, horizon, quantiles):
                from faro.optimizer.forecast.base import Forecast

                table = np.tile(np.asarray(rpm, dtype=float)[:, None], (1, horizon))
                return Forecast(mean=table, quantiles={q: table for q in quantiles})

        return Fitted()


def _mark_plan(**options):
    # both jobs want ceil(1200/60/4) = 5 replicas; 8 CPUs leave 6 free above the current 1 + 1
    policy = make_policy("mark", forecaster_factory=lambda: _Flat([1200.0, 1200.0]), **options)
    view = cluster(job("a", history=[1200.0] * 20), job("b", history=[1200.0] * 20), hard={"cpu": 8.0})
    plan = policy.decide(view, policy.initial_state()).plan
    return [plan.desired()[("default", n)] for n in ("a", "b")]


def test_mark_clips_in_job_order_by_default_as_the_artifact():
    assert _mark_plan() == [5, 3]


def test_mark_fair_order_splits_the_free_quota_evenly():
    assert _mark_plan(quota_order="fair") == [4, 4]


def test_mark_rejects_an_unknown_quota_order():
    with pytest.raises(ValueError, match="quota_order"):
        make_policy("mark", quota_order="random")


def test_no_quota_order_leaves_over_quota_asks_to_the_cluster():
    view = cluster(job("a", replicas=2, hi=5), job("b", replicas=2), hard={"cpu": 4.0})
    assert clip_to_quota(view, [9, 3], "none").tolist() == [5, 3]  # only the [min, max] clamp


def _hot_view(cpus):
    # both jobs at 100% CPU on 2 ready replicas: an HPA at 70% target asks ceil(2 × 100/70) = 3 each
    def hot(name):
        spec = JobSpec(name=name, slo=SLO(720.0), processing_time_ms=180.0, resources={"cpu": 1.0})
        obs = JobObservation(rate_history_rpm=(), cpu_utilization=1.0)
        return JobView(spec=spec, observation=obs, current_replicas=2, ready_replicas=2)

    return cluster(hot("a"), hot("b"), hard={"cpu": cpus})


@pytest.mark.parametrize(
    ("order", "expected"),
    [pytest.param(None, [3, 3], id="default-none-asks-past-the-quota"),
     pytest.param("job", [3, 2], id="job-first-come-first-served"),
     pytest.param("fair", [3, 2], id="fair-split")],
)
def test_hpa_cpu_does_not_coordinate_with_other_hpas_by_default(order, expected):
    policy = make_policy("hpa-cpu", **({} if order is None else {"quota_order": order}))
    plan = policy.decide(_hot_view(5.0), policy.initial_state()).plan
    assert [plan.desired()[("default", n)] for n in ("a", "b")] == expected


@pytest.mark.parametrize("name", ["aiad", "oneshot"])
def test_streak_baselines_clip_in_job_order_by_default(name):
    # both jobs over the SLO for 3 checks; only one replica is free: the first job gets it
    def slow(n):
        spec = JobSpec(name=n, slo=SLO(720.0), processing_time_ms=180.0, resources={"cpu": 1.0})
        obs = JobObservation(rate_history_rpm=(), latency_ms=2000.0, mean_latency_ms=2000.0)
        return JobView(spec=spec, observation=obs, current_replicas=2, ready_replicas=2)

    policy = make_policy(name)
    state = policy.initial_state()
    for t in range(3):
        decision = policy.decide(cluster(slow("b"), slow("a"), hard={"cpu": 5.0}, now=10.0 * t), state)
        state = decision.state
    desired = decision.plan.desired()
    assert desired[("default", "b")] == 3 and desired[("default", "a")] == 2

"""Every policy's plan respects quotas and min/max replicas, whatever the view (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.common import constraint_matrix, fit_to_quota
from faro.optimizer.policy.registry import POLICY_NAMES, make_policy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_faro import TableForecaster, greedy_solve


def options_for(name):
    if name.startswith("faro-") or name == "oracle":
        return {"solve_fn": greedy_solve, "forecaster_factory": TableForecaster, "min_history_min": 3}
    if name == "mark":
        return {"forecaster_factory": TableForecaster, "min_history_min": 3}
    if name == "hpa-cpu":
        return {"quota_order": "job"}  # by default it leaves over-quota asks to the cluster, as real HPAs do
    return {}


@st.composite
def views(draw):
    n = draw(st.integers(1, 5))
    namespaces = ["a", "b"]
    jobs = []
    for i in range(n):
        lo = draw(st.integers(0, 2))
        hi = draw(st.integers(max(lo, 1), 12))
        cpu = draw(st.sampled_from([0.5, 1.0, 2.0]))
        spec = JobSpec(
            name=f"j{i}",
            namespace=draw(st.sampled_from(namespaces)),
            slo=SLO(draw(st.sampled_from([300.0, 720.0]))),
            processing_time_ms=draw(st.sampled_from([50.0, 180.0])),
            resources={"cpu": cpu, "memory": 1e9},
            min_replicas=lo,
            max_replicas=hi,
        )
        cur = draw(st.integers(lo, hi))
        lat = draw(st.one_of(st.none(), st.floats(1.0, 5000.0)))
        obs = JobObservation(
            rate_history_rpm=tuple(draw(st.lists(st.floats(0.0, 3000.0), min_size=0, max_size=6))),
            latency_ms=lat,
            mean_latency_ms=lat,
            cpu_utilization=draw(st.one_of(st.none(), st.floats(0.0, 1.0))),
            future_rate_rpm=tuple(draw(st.lists(st.floats(0.0, 3000.0), min_size=1, max_size=8))),
        )
        jobs.append(JobView(spec=spec, observation=obs, current_replicas=cur, ready_replicas=draw(st.integers(0, cur))))
    # Quotas always leave room for every job's minimum (else no plan can satisfy both).
    min_cpu = sum(j.spec.min_replicas * j.spec.resources["cpu"] for j in jobs)
    cap = min_cpu + draw(st.integers(0, 20))
    quotas = [Quota(name="cluster", hard={"cpu": float(cap)})]
    ns_a = [j for j in jobs if j.spec.namespace == "a"]
    if draw(st.booleans()):
        need = sum(j.spec.min_replicas for j in ns_a)
        quotas.append(Quota(name="qa", namespace="a", hard={"pods": float(need + draw(st.integers(0, 6)))}))
    return ClusterView(now_s=draw(st.sampled_from([10.0, 60.0, 300.0, 310.0])), jobs=tuple(jobs), quotas=tuple(quotas))


def assert_respects(view, plan):
    desired = np.array([t.desired_replicas for t in plan.targets])
    assert [(t.namespace, t.name) for t in plan.targets] == [jv.spec.key for jv in view.jobs]
    for jv, d in zip(view.jobs, desired, strict=True):
        assert jv.spec.min_replicas <= d <= jv.spec.max_replicas
    matrix, bound = constraint_matrix(view)
    assert np.all(matrix @ desired <= bound + 1e-9)


@pytest.mark.parametrize("name", POLICY_NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view=views(), ticks=st.integers(1, 4))
def test_every_policy_plan_respects_quotas_and_min_max(name, view, ticks):
    policy = make_policy(name, **options_for(name))
    state = policy.initial_state()
    for k in range(ticks):
        tick = ClusterView(now_s=view.now_s + 10.0 * k, jobs=view.jobs, quotas=view.quotas)
        decision = policy.decide(tick, state)
        state = decision.state
        assert_respects(tick, decision.plan)


def test_scale_ups_share_the_free_quota_fairly():
    jobs = tuple(
        JobView(
            spec=JobSpec(name=n, slo=SLO(720.0), processing_time_ms=180.0),
            observation=JobObservation(),
            current_replicas=2,
            ready_replicas=2,
        )
        for n in ("a", "b", "c")
    )
    view = ClusterView(now_s=0.0, jobs=jobs, quotas=(Quota(name="cap", hard={"cpu": 12.0}),))
    assert fit_to_quota(view, [10, 10, 3]).tolist() == [4, 5, 3] or fit_to_quota(view, [10, 10, 3]).tolist() == [
        5,
        4,
        3,
    ]


def test_plan_over_a_lowered_quota_gives_replicas_back_from_the_largest_job():
    jobs = tuple(
        JobView(
            spec=JobSpec(name=n, slo=SLO(720.0), processing_time_ms=180.0),
            observation=JobObservation(),
            current_replicas=c,
            ready_replicas=c,
        )
        for n, c in (("a", 8), ("b", 2))
    )
    view = ClusterView(now_s=0.0, jobs=jobs, quotas=(Quota(name="cap", hard={"cpu": 6.0}),))
    assert fit_to_quota(view, [8, 2]).tolist() == [4, 2]


def test_unknown_policy_or_option_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="unknown policy 'nope'"):
        make_policy("nope")
    with pytest.raises(InvalidInputError, match="policy aiad"):
        make_policy("aiad", up_checks=0)
    with pytest.raises(InvalidInputError, match="policy faro-sum"):
        make_policy("faro-sum", bogus=1)

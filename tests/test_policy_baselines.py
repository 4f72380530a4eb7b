"""Baseline policies follow their rules on hand-made views: AIAD, Oneshot, HPA-CPU, FairShare, MArk."""

from __future__ import annotations

import pytest
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.hpa_cpu import hpa_recommendation
from faro.optimizer.policy.mark import mark_replicas
from faro.optimizer.policy.oneshot import oneshot_target
from faro.optimizer.policy.registry import make_policy


def job(name, *, replicas=3, ready=None, latency=None, mean=None, cpu=None, history=(), lo=1, hi=100):
    spec = JobSpec(name=name, slo=SLO(720.0), processing_time_ms=180.0, min_replicas=lo, max_replicas=hi)
    obs = JobObservation(rate_history_rpm=tuple(history), latency_ms=latency, mean_latency_ms=mean, cpu_utilization=cpu)
    return JobView(
        spec=spec, observation=obs, current_replicas=replicas, ready_replicas=replicas if ready is None else ready
    )


def cluster(*jobs, cpus=None, now=10.0):
    quotas = () if cpus is None else (Quota(name="cap", hard={"cpu": float(cpus)}),)
    return ClusterView(now_s=now, jobs=tuple(jobs), quotas=quotas)


def run(policy, views):
    state = policy.initial_state()
    plans = []
    for view in views:
        decision = policy.decide(view, state)
        state = decision.state
        plans.append(decision.plan.desired()[("default", "a")])
    return plans


# --- AIAD --------------------------------------------------------------------------------------
def test_aiad_adds_a_replica_after_exactly_three_checks_over_the_slo():
    views = [cluster(job("a", replicas=3, mean=900.0), now=10.0 * (k + 1)) for k in range(4)]
    assert run(make_policy("aiad"), views) == [3, 3, 4, 3]  # counter resets after acting


def test_aiad_streak_over_the_slo_is_broken_by_one_check_under_it():
    lats = [900.0, 900.0, 500.0, 900.0, 900.0]
    views = [cluster(job("a", replicas=3, mean=m), now=10.0 * (k + 1)) for k, m in enumerate(lats)]
    assert run(make_policy("aiad"), views) == [3, 3, 3, 3, 3]


def test_aiad_removes_a_replica_after_sixty_checks_under_the_slo_and_not_before():
    views = [cluster(job("a", replicas=3, mean=300.0), now=10.0 * (k + 1)) for k in range(60)]
    plans = run(make_policy("aiad"), views)
    assert plans[:59] == [3] * 59
    assert plans[59] == 2


def test_aiad_never_goes_below_min_replicas():
    views = [cluster(job("a", replicas=1, mean=None), now=10.0 * (k + 1)) for k in range(60)]
    assert run(make_policy("aiad"), views)[-1] == 1


def test_aiad_uses_the_percentile_latency_when_asked():
    views = [cluster(job("a", replicas=3, latency=900.0, mean=400.0), now=10.0 * (k + 1)) for k in range(3)]
    assert run(make_policy("aiad"), views)[-1] == 3
    assert run(make_policy("aiad", metric="percentile"), views)[-1] == 4


def test_aiad_scale_up_is_clipped_to_the_free_quota():
    views = [
        cluster(job("a", replicas=3, mean=900.0), job("b", replicas=5), cpus=8, now=10.0 * (k + 1)) for k in range(3)
    ]
    assert run(make_policy("aiad"), views)[-1] == 3


# --- Oneshot -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "latency", "expected"),
    [
        pytest.param(4, 1440.0, 8, id="twice-the-slo-doubles"),
        pytest.param(3, 1000.0, 5, id="ceil-of-4.17"),
        pytest.param(10, 360.0, 5, id="half-the-slo-halves"),
        pytest.param(5, 720.0, 5, id="at-the-slo-stays"),
        pytest.param(5, None, 0, id="no-data-counts-as-zero"),
    ],
)
def test_oneshot_target_is_ceil_of_current_times_latency_over_slo(current, latency, expected):
    assert oneshot_target(current, latency, 720.0) == expected


def test_oneshot_jumps_after_three_checks_over_the_slo():
    views = [cluster(job("a", replicas=4, mean=1440.0), now=10.0 * (k + 1)) for k in range(3)]
    assert run(make_policy("oneshot"), views) == [4, 4, 8]


def test_oneshot_shrinks_after_sixty_checks_under_the_slo():
    views = [cluster(job("a", replicas=10, mean=360.0), now=10.0 * (k + 1)) for k in range(60)]
    plans = run(make_policy("oneshot"), views)
    assert plans[58] == 10 and plans[59] == 5


# --- HPA on CPU --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ready", "util", "expected"),
    [
        pytest.param(10, 0.77, 10, id="ratio-1.10-inside-tolerance-stays"),
        pytest.param(10, 0.63, 10, id="ratio-0.90-inside-tolerance-stays"),
        pytest.param(10, 0.78, 12, id="ratio-1.114-scales-to-ceil-11.14"),
        pytest.param(10, 0.35, 5, id="half-the-target-halves"),
        pytest.param(4, 1.0, 6, id="ceil-5.71"),
        pytest.param(10, None, 10, id="no-metric-no-change"),
    ],
)
def test_hpa_cpu_recommendation_follows_the_kubernetes_rule(ready, util, expected):
    assert hpa_recommendation(10, ready, util, target=0.7, tolerance=0.1) == expected


def test_hpa_cpu_scales_up_at_once_and_down_only_after_the_stabilization_window():
    policy = make_policy("hpa-cpu")
    state = policy.initial_state()
    hot = cluster(job("a", replicas=4, cpu=1.0), now=0.0)
    d = policy.decide(hot, state)
    assert d.plan.desired()[("default", "a")] == 6
    state = d.state
    plans = []
    for k in range(1, 40):  # 10 s checks, idle load
        view = cluster(job("a", replicas=6, cpu=0.35), now=10.0 * k)
        d = policy.decide(view, state)
        state = d.state
        plans.append(d.plan.desired()[("default", "a")])
    assert plans[:29] == [6] * 29  # 300 s window still holds the recommendation of 6
    assert plans[29] == 3


def test_hpa_cpu_scale_up_rate_is_limited_to_double_or_four_pods():
    view = cluster(job("a", replicas=2, cpu=1.0 * 10), now=0.0)
    assert (
        make_policy("hpa-cpu")
        .decide(view, None or make_policy("hpa-cpu").initial_state())
        .plan.desired()[("default", "a")]
        == 6
    )


# --- FairShare ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cpus", "jobs", "each"),
    [
        pytest.param(32, 10, 3, id="32-cpus-10-jobs-3-each-like-the-artifact"),
        pytest.param(36, 10, 3, id="36-cpus-10-jobs-3-each"),
        pytest.param(40, 10, 4, id="40-cpus-10-jobs-4-each"),
        pytest.param(16, 3, 5, id="16-cpus-3-jobs"),
    ],
)
def test_fairshare_gives_every_job_the_same_share_of_the_cap(cpus, jobs, each):
    view = cluster(*[job(f"j{i}", replicas=1) for i in range(jobs)], cpus=cpus)
    plan = make_policy("fairshare").decide(view, None).plan
    assert {t.desired_replicas for t in plan.targets} == {each}


def test_fairshare_can_hand_out_the_remainder():
    view = cluster(*[job(f"j{i}", replicas=1) for i in range(10)], cpus=32)
    plan = make_policy("fairshare", distribute_remainder=True).decide(view, None).plan
    assert sorted(t.desired_replicas for t in plan.targets) == [3] * 8 + [4] * 2


# --- MArk --------------------------------------------------------------------------------------
def test_mark_sizes_for_the_peak_at_slo_over_processing_time_per_replica():
    # 720/180: 4 req/s per replica; 30 req/s peak -> 8 replicas.
    assert mark_replicas(30.0, processing_time_ms=180.0, slo_ms=720.0) == 8
    assert mark_replicas(32.0, processing_time_ms=180.0, slo_ms=720.0) == 8


def test_mark_long_step_uses_the_forecast_peak_over_the_horizon():
    class Fitted:
        def __init__(self, n):
            self.n = n

        def update(self, new):
            return self

        def forecast(self, horizon, quantiles):
            import numpy as np
            from faro.optimizer.forecast.base import Forecast

            table = np.tile(np.linspace(600.0, 1800.0, horizon), (self.n, 1))  # peak 30 req/s
            return Forecast(mean=table, quantiles={q: table for q in quantiles})

    class Fake:
        def fit(self, history):
            return Fitted(history.shape[0])

    policy = make_policy("mark", forecaster_factory=Fake)
    view = cluster(job("a", replicas=2, history=[600.0] * 20), now=60.0)
    assert policy.decide(view, policy.initial_state()).plan.desired()[("default", "a")] == 8

"""The simulator: queueing against Erlang C, conservation, the CPU cap, seeds, actuation and metrics."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.latency import mmc_mean_wait_s
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.metrics import job_minute_stats, summarize
from faro.optimizer.sim.queueing import JobServer
from faro.optimizer.sim.workload import Exponential, Workload, load_trace, parse_trace_csv


class StaticPolicy:
    """Asks for the same replica count for every job (tests only)."""

    name = "static"
    needs_future = False

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def initial_state(self) -> int:
        return 0

    def decide(self, view, state):
        targets = tuple(Target(j.spec.namespace, j.spec.name, self.replicas, j.current_replicas) for j in view.jobs)
        return Decision(Plan(targets), state + 1)


def _workload(rpm: int = 600, minutes: int = 4, jobs: int = 2) -> Workload:
    return Workload(names=tuple(f"j{i}" for i in range(jobs)), counts_rpm=np.full((jobs, minutes), rpm, np.int64))


@pytest.mark.parametrize(
    ("servers", "rho"),
    [pytest.param(1, 0.6, id="M/M/1"), pytest.param(4, 0.75, id="M/M/4"), pytest.param(8, 0.8, id="M/M/8")],
)
def test_central_queue_with_exponential_service_matches_erlang_c_mean_wait(servers, rho):
    rng = np.random.default_rng(11)
    service_s, n = 0.1, 300_000
    rate = rho * servers / service_s
    arrivals = np.cumsum(rng.exponential(1 / rate, n))
    server = JobServer(concurrency=1, max_queue=None, rng=np.random.default_rng(1))
    for _ in range(servers):
        server.add(0.0)
    server.serve(arrivals, rng.exponential(service_s, n), np.zeros(n))
    server.drain(float("inf"))
    arrival, start, _finish, _extra, dropped = server.take_results()
    assert dropped.size == 0 and arrival.size == n
    expected = float(mmc_mean_wait_s(rate, service_s, servers))
    assert (start - arrival).mean() == pytest.approx(expected, rel=0.05)


def test_central_queue_serves_in_arrival_order():
    server = JobServer(concurrency=1, max_queue=None, rng=np.random.default_rng(0))
    server.add(0.0)
    server.add(0.0)
    arrivals = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    server.serve(arrivals, np.full(5, 1.0), np.zeros(5))
    server.drain(float("inf"))
    _a, start, _f, _e, _d = server.take_results()
    assert np.all(np.diff(start) >= 0)
    assert start.tolist() == [0.0, 0.1, 1.0, 1.1, 2.0]


def test_artifact_discipline_holds_at_most_four_per_replica_and_queues_the_rest():
    server = JobServer(concurrency=4, max_queue=3, rng=np.random.default_rng(0))
    server.add(0.0)
    server.serve(np.zeros(9), np.full(9, 1.0), np.zeros(9))
    assert len(server.queue) == 3  # 4 on the replica, 3 waiting, 2 dropped
    server.drain(float("inf"))
    _a, start, _f, _e, dropped = server.take_results()
    assert dropped.size == 2
    assert start.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_a_replica_that_becomes_ready_takes_queued_requests():
    server = JobServer(concurrency=1, max_queue=None, rng=np.random.default_rng(0))
    server.add(0.0)
    server.add(0.5)  # cold start finishes at 0.5 s
    server.serve(np.zeros(3), np.full(3, 10.0), np.zeros(3))
    server.drain(float("inf"))
    _a, start, _f, _e, _d = server.take_results()
    assert sorted(start.tolist()) == [0.0, 0.5, 10.0]


def test_every_arrived_request_is_served_or_dropped():
    workload = _workload(rpm=2000, minutes=3)
    result = simulate(workload, StaticPolicy(2), SimConfig(cpus=8))
    assert result.req_latency_ms.size == workload.total_requests
    served = np.isfinite(result.req_latency_ms).sum()
    dropped = (~np.isfinite(result.req_latency_ms)).sum()
    assert dropped > 0  # 2000 rpm on ≤ 2 replicas overloads the queue
    assert served + dropped == workload.total_requests
    stats = job_minute_stats(result)
    assert stats.arrived.sum() == workload.total_requests


def test_pods_never_exceed_the_cpu_cap():
    workload = _workload(rpm=1200, minutes=3, jobs=3)

    class Greedy(StaticPolicy):
        def decide(self, view, state):  # alternates who wants everything, to churn pods
            big = view.jobs[int(view.now_s // 60) % len(view.jobs)].spec.name
            targets = tuple(
                Target(j.spec.namespace, j.spec.name, 9 if j.spec.name == big else 1, j.current_replicas)
                for j in view.jobs
            )
            return Decision(Plan(targets), state)

    result = simulate(workload, Greedy(0), SimConfig(cpus=10, idle_pod_timeout_s=30))
    assert result.pods.sum(axis=1).max() <= 10
    assert result.max_cpus_used <= 10
    assert result.ready_replicas.max() > 1  # some scale-up did happen


def test_new_pods_become_ready_after_the_cold_start():
    result = simulate(_workload(minutes=2, jobs=1), StaticPolicy(4), SimConfig(cpus=8, step_s=5.0))
    ready = result.ready_replicas[:, 0]
    t = result.step_time_s
    assert ready[t < 35.0].max() == 1
    assert ready[t >= 40.0].min() == 4


def test_the_same_seed_reproduces_results_exactly():
    workload = _workload(rpm=900, minutes=3)
    a = simulate(workload, StaticPolicy(2), SimConfig(cpus=8, seed=7))
    b = simulate(workload, StaticPolicy(2), SimConfig(cpus=8, seed=7))
    c = simulate(workload, StaticPolicy(2), SimConfig(cpus=8, seed=8))
    assert np.array_equal(a.req_latency_ms, b.req_latency_ms)
    assert summarize(a) == summarize(b)
    assert not np.array_equal(a.req_latency_ms, c.req_latency_ms)


def test_hpa_actuation_ignores_moves_inside_the_tolerance_band():
    workload = _workload(rpm=60, minutes=2, jobs=1)

    class Plan10Then11(StaticPolicy):
        def decide(self, view, state):
            want = 10 if view.now_s < 60 else 11
            return Decision(Plan((Target("default", "j0", want, view.jobs[0].current_replicas),)), state)

    direct = simulate(workload, Plan10Then11(0), SimConfig(cpus=20, actuation="direct"))
    hpa = simulate(workload, Plan10Then11(0), SimConfig(cpus=20, actuation="hpa"))
    assert direct.target_replicas[-1, 0] == 11
    assert hpa.target_replicas[-1, 0] == 10  # 11/10 = 1.1 is inside the default 10% dead-band


def test_utility_and_satisfaction_per_minute():
    workload = _workload(rpm=120, minutes=2, jobs=1)
    result = simulate(workload, StaticPolicy(1), SimConfig(cpus=4, slo_ms=10_000.0))
    summary = summarize(result)
    assert summary.slo_violation == 0.0 and summary.lost_utility == 0.0
    strict = simulate(workload, StaticPolicy(1), SimConfig(cpus=4, slo_ms=1.0))
    assert summarize(strict).slo_violation == 1.0
    assert summarize(strict).lost_utility == pytest.approx(1.0, abs=0.05)


def test_penalty_admission_drops_the_refused_fraction():
    class HalfAdmitted(StaticPolicy):
        def decide(self, view, state):
            t = Target("default", "j0", 4, view.jobs[0].current_replicas, admission=0.5)
            return Decision(Plan((t,)), state)

    result = simulate(_workload(rpm=600, minutes=3, jobs=1), HalfAdmitted(0), SimConfig(cpus=8))
    dropped = (~np.isfinite(result.req_latency_ms)).mean()
    assert 0.4 < dropped < 0.6


def test_bundled_trace_has_ten_jobs_for_six_hours():
    workload = load_trace()
    assert workload.counts_rpm.shape == (10, 360)
    assert workload.multiplied(10).num_jobs == 100


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param("minute,a\n0,x\n", "line 2 column a", id="not-a-number"),
        pytest.param("minute,a\n0,-1\n", "line 2 column a", id="negative"),
        pytest.param("minute,a,b\n0,1\n", "line 2", id="short-row"),
        pytest.param("minute,a\n", "needs a header row", id="no-rows"),
    ],
)
def test_bad_trace_gets_an_error_naming_the_place(text, where):
    with pytest.raises(InvalidInputError, match=where):
        parse_trace_csv(text, source="t.csv")


def test_exponential_service_option_is_accepted_by_the_engine():
    cfg = SimConfig(cpus=4, service=Exponential(100.0), routing=None, discipline="mgc")
    result = simulate(_workload(rpm=60, minutes=1, jobs=1), StaticPolicy(1), cfg)
    assert np.isfinite(result.req_latency_ms).all()


def test_a_minute_with_drops_in_its_tail_has_infinite_p99_and_zero_utility():
    # 200 requests in minute 0, 3 of them dropped: the 99th percentile lands on a drop (the artifact's way).
    from faro.optimizer.sim.engine import SimResult

    lat = np.full(200, 100.0, dtype=np.float32)
    lat[:3] = np.inf
    cfg = SimConfig(cpus=4)
    result = SimResult(
        job_names=("a",), config=cfg, policy="x", duration_s=60.0, arrivals_rpm=np.array([[200]]),
        req_job=np.zeros(200, np.int32), req_arrival_s=np.linspace(0, 59, 200), req_latency_ms=lat,
        step_time_s=np.arange(12) * 5.0, target_replicas=np.ones((12, 1), np.int32),
        ready_replicas=np.ones((12, 1), np.int32), pods=np.ones((12, 1), np.int32), max_cpus_used=1.0,
        policy_calls=0, policy_time_s=0.0,
    )
    stats = job_minute_stats(result)
    assert np.isinf(stats.tail_latency_ms[0, 0])
    assert stats.utility[0, 0] == 0.0
    assert stats.satisfaction[0, 0] == pytest.approx(197 / 200)
    lat[:3] = 100.0
    lat[0] = np.inf  # one drop in 200 stays below the 99th percentile
    assert job_minute_stats(result).utility[0, 0] == 1.0

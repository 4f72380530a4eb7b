"""The vectorised queue path gives exactly the reference loop's results (same seed → identical latencies)."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.queueing import JobServer, ReplicaTable, serve_fast
from faro.optimizer.sim.workload import Workload
from hypothesis import given, settings
from hypothesis import strategies as st


def _run_server(vectorized: bool, seed: int, *, cap: int, replicas: int, rate_rps: float, n: int, admit: bool):
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, n))
    service = 0.08 + 0.07 * np.exp(0.42 * rng.standard_normal(n))
    extra = rng.random(n) * 0.01
    admits = rng.random(n) < 0.9 if admit else None
    srv = JobServer(concurrency=cap, max_queue=50, rng=np.random.default_rng(seed + 1), vectorized=vectorized)
    for k in range(replicas):
        srv.add(0.0 if k < max(1, replicas - 1) else arrivals[n // 3])  # one replica arrives late
    half = n // 2
    srv.serve(arrivals[:half], service[:half], extra[:half], admits[:half] if admit else None)
    srv.remove(1)  # change the replica set mid-way, as the engine does
    srv.add(arrivals[half])
    srv.serve(arrivals[half:], service[half:], extra[half:], admits[half:] if admit else None)
    srv.drain(float("inf"))
    return srv.take_results()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cap=st.sampled_from([1, 2, 4]),
    replicas=st.integers(1, 9),
    load=st.floats(0.2, 1.6),
    admit=st.booleans(),
)
def test_vectorised_server_equals_the_reference_loop_bit_for_bit(seed, cap, replicas, load, admit):
    rate = load * replicas / 0.154
    kwargs = dict(cap=cap, replicas=replicas, rate_rps=rate, n=1500, admit=admit)
    fast = _run_server(True, seed, **kwargs)
    slow = _run_server(False, seed, **kwargs)
    for f, s in zip(fast, slow, strict=True):
        assert np.array_equal(f, s)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cap=st.sampled_from([1, 2, 4]),
    replicas=st.integers(1, 9),
    load=st.floats(0.2, 1.4),
    keep_fraction=st.floats(0.0, 1.0),
)
def test_a_rewound_prefix_continues_exactly_like_the_reference_loop(seed, cap, replicas, load, keep_fraction):
    from faro.optimizer.sim.queueing import rewind_fast

    rng = np.random.default_rng(seed)
    n = 800
    arrivals = np.cumsum(rng.exponential(0.154 / (load * replicas), n))
    service = 0.08 + 0.07 * np.exp(0.42 * rng.standard_normal(n))
    extra = np.zeros(n)

    def server(vectorized: bool) -> JobServer:
        srv = JobServer(concurrency=cap, max_queue=50, rng=np.random.default_rng(seed + 1), vectorized=vectorized)
        for _ in range(replicas):
            srv.add(0.0)
        srv.serve(arrivals[:5], service[:5], extra[:5])  # activates the replicas, some requests in flight
        return srv

    ref = server(False)
    ref.serve(arrivals[5:], service[5:], extra[5:])
    ref.drain(float("inf"))
    expected = ref.take_results()

    fast = server(True)
    head = fast.take_results()
    served: list = [None]
    undo: list = [None]
    done = serve_fast([fast], [arrivals[5:]], [service[5:]], [extra[5:]], [None], served=served, undo=undo)[0]
    keep = int(done * keep_fraction)
    if done:
        rewind_fast(fast, undo[0], keep)  # as if only the first `keep` had been served
    fast.serve(arrivals[5 + keep :], service[5 + keep :], extra[5 + keep :])
    fast.drain(float("inf"))
    rest = fast.take_results()
    kept = [p[:keep] for p in served[0]] if served[0] is not None else [np.empty(0)] * 4
    for k in range(4):
        assert np.array_equal(np.concatenate([head[k], kept[k], rest[k]]), expected[k])
    assert np.array_equal(rest[4], expected[4])  # drops


def test_serve_fast_on_several_jobs_stops_each_job_at_its_first_full_replica():
    table = ReplicaTable(4)
    servers = [JobServer(concurrency=4, max_queue=50, rng=np.random.default_rng(j), table=table) for j in range(2)]
    for srv in servers:
        srv.add(0.0)
        srv._activate(0.0)
    # Job 0: 10 requests at once on one replica — the 5th finds it full. Job 1: spaced out, all fit.
    arr = [np.full(10, 1.0), np.arange(10) * 10.0]
    svc = [np.full(10, 1.0), np.full(10, 1.0)]
    done = serve_fast(servers, arr, svc, [np.zeros(10)] * 2, [None, None])
    assert done == [4, 10]
    _a, start, _f, _e, _d = servers[0].take_results()
    assert start.tolist() == [1.0, 2.0, 3.0, 4.0]


class _Churn:
    """Changes every job's replicas and admission often, to exercise every hand-over in the engine."""

    name = "churn"
    needs_future = False

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        k = int(view.now_s // 20)
        targets = tuple(
            Target(j.spec.namespace, j.spec.name, 1 + (k * 5 + i * 3) % 7, j.current_replicas,
                   admission=0.7 if (k + i) % 4 == 0 else 1.0)
            for i, j in enumerate(view.jobs)
        )
        return Decision(Plan(targets), None)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(SimConfig(cpus=20, seed=1), id="artifact-direct"),
        pytest.param(SimConfig(cpus=20, seed=2, discipline="mgc"), id="mgc"),
        pytest.param(SimConfig(cpus=14, seed=3, actuation="hpa"), id="hpa-tight-cap"),
    ],
)
def test_engine_with_vectorised_queues_equals_the_reference_loop(config):
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 900, size=(3, 6))
    counts[1, 2] = 3000  # an overload minute: queues fill and drop
    workload = Workload(names=("a", "b", "c"), counts_rpm=counts)
    fast = simulate(workload, _Churn(), config)
    slow = simulate(workload, _Churn(), SimConfig(**{**config.__dict__, "vectorized": False}))
    assert np.array_equal(fast.req_latency_ms, slow.req_latency_ms)
    assert np.array_equal(fast.req_arrival_s, slow.req_arrival_s)
    assert np.array_equal(fast.ready_replicas, slow.ready_replicas)
    assert np.isinf(fast.req_latency_ms).any()  # the overload did drop requests


class _Steady:
    """Holds every job's replicas for long stretches (so whole policy intervals are served at once), then
    changes them, refuses traffic for a while and starves one job (saturation and drops); records views."""

    name = "steady"
    needs_future = False

    def __init__(self) -> None:
        self.views: list = []

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        self.views.append(view)
        phase = int(view.now_s // 90)
        targets = []
        for i, j in enumerate(view.jobs):
            replicas = 1 if (phase == 2 and i == 0) else 2 + (phase + i) % 3
            admission = 0.8 if (phase == 3 and i == 1) else 1.0
            targets.append(Target(j.spec.namespace, j.spec.name, replicas, j.current_replicas, admission=admission))
        return Decision(Plan(tuple(targets)), None)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(SimConfig(cpus=40, seed=4), id="artifact"),
        pytest.param(SimConfig(cpus=40, seed=5, discipline="mgc"), id="mgc"),
        pytest.param(SimConfig(cpus=40, seed=6, policy_interval_s=15.0), id="blocks-not-dividing-the-kept-steps"),
        pytest.param(SimConfig(cpus=9, seed=7), id="cap-limits-scale-up"),
        pytest.param(
            SimConfig(cpus=9, seed=9, cold_start_s=1.0, hot_start_s=0.5, idle_pod_timeout_s=5.0),
            id="pods-freed-and-started-between-policy-calls",
        ),
        pytest.param(SimConfig(cpus=40, seed=8, actuation="hpa"), id="hpa-one-step-blocks"),
    ],
)
def test_whole_intervals_served_at_once_equal_the_reference_loop_and_policies_see_the_same(config):
    rng = np.random.default_rng(config.seed)
    counts = rng.integers(200, 1500, size=(3, 8))
    counts[0, 4] = 4000  # job a saturates (its replicas fill, the queue drops) while held at 1 replica
    workload = Workload(names=("a", "b", "c"), counts_rpm=counts)
    fast_policy, slow_policy = _Steady(), _Steady()
    fast = simulate(workload, fast_policy, config)
    slow = simulate(workload, slow_policy, SimConfig(**{**config.__dict__, "vectorized": False}))
    for name in ("req_job", "req_arrival_s", "req_latency_ms", "target_replicas", "ready_replicas", "pods"):
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert fast_policy.views == slow_policy.views  # observations (latency, utilisation, queue) identical
    assert np.isinf(fast.req_latency_ms).any()


def test_minute_draws_for_several_jobs_equal_each_job_drawing_alone():
    from faro.optimizer.sim.engine import _StepDraws, start_minutes
    from faro.optimizer.sim.workload import ARTIFACT_ROUTING, ARTIFACT_SERVICE

    sizes = np.array([[3, 0, 5], [0, 0, 0], [7, 2, 1]])
    together = [_StepDraws(np.random.default_rng(s), ARTIFACT_SERVICE, ARTIFACT_ROUTING, 2) for s in range(3)]
    alone = [_StepDraws(np.random.default_rng(s), ARTIFACT_SERVICE, ARTIFACT_ROUTING, 2) for s in range(3)]
    start_minutes(together, sizes)
    for d, row in zip(alone, sizes, strict=True):
        start_minutes([d], row[None, :])
    for t, a, row in zip(together, alone, sizes, strict=True):
        assert t.active == a.active == bool(row.sum())
        if t.active:
            assert np.array_equal(t.svc_s, a.svc_s) and np.array_equal(t.extra_s, a.extra_s)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=1, max_size=400),
    percentile=st.sampled_from([0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]),
)
def test_observation_percentile_equals_numpy_bit_for_bit(values, percentile):
    from faro.optimizer.sim.engine import percentile_linear

    arr = np.asarray(values)
    expected = float(np.percentile(arr, percentile))
    assert percentile_linear(arr, percentile) == expected
    assert percentile_linear(arr.copy(), percentile, in_place=True) == expected


def test_minute_block_draws_equal_per_step_draws_even_when_admission_changes_mid_minute():
    from faro.optimizer.sim.engine import _StepDraws
    from faro.optimizer.sim.workload import ARTIFACT_ROUTING, ARTIFACT_SERVICE

    sizes = np.array([5, 0, 7, 3, 9, 4])
    admissions = [1.0, 1.0, 1.0, 0.6, 1.0, 1.0]  # the policy refuses some traffic from step 3
    block = _StepDraws(np.random.default_rng(9), ARTIFACT_SERVICE, ARTIFACT_ROUTING, 2)
    block.start_minute(sizes)
    ref_rng = np.random.default_rng(9)
    for n, adm in zip(sizes.tolist(), admissions, strict=True):
        if not n:
            continue
        svc, extra, admit = block.take(n, adm)
        ref_svc = ARTIFACT_SERVICE.draw_ms(ref_rng, n) / 1000.0
        ref_extra = np.zeros(n)
        for _ in range(2):
            ref_extra += ARTIFACT_ROUTING.draw_ms(ref_rng, n) / 1000.0
        ref_admit = ref_rng.random(n) < adm if adm < 1.0 else None
        assert np.array_equal(svc, ref_svc) and np.array_equal(extra, ref_extra)
        assert (admit is None and ref_admit is None) or np.array_equal(admit, ref_admit)

"""Faro scaling a real Ray Serve directly: Ray's metrics scraped by a real Prometheus, read through the
``ray-serve`` preset, solved by Faro-Sum, applied through Ray's external-scaler API.

Two applications (``vision``: 75 ms of numpy work per request, ``text``: 20 ms) run on a local Ray
(``ray.init(num_cpus=2)``, dashboard and metrics on free loopback ports, token authentication on)
with ``external_scaler_enabled: true`` and one replica each. An open-loop Poisson generator on
loopback drives them. Phase A keeps the fixed allocation; phase B lets Faro's loop scale; phase C
drops the load. The loop here is time-compressed (one 5 s tick stands for one minute of the
policy's per-minute history): the live ``ControlLoop`` reads completed minutes only, which would
make this test take tens of minutes. The service time is a fixed wall-clock budget of numpy work,
so it stays the same when other jobs load the 2-core machine.
"""

from __future__ import annotations

import math
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from faro.optimizer.actuate.ray_serve import RayServeActuator
from faro.optimizer.metrics import DeploymentRef, JobMetrics, PrometheusClient, PrometheusSource
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView, Plan, Target
from faro.optimizer.policy.registry import make_policy
from prom_fixture import free_port

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'; CI installs it)")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]')")

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.prometheus]

CPU_PER_REPLICA = 0.5
QUOTA_CPU = 2.0  # at most 4 replicas in all
TICK_S = 5.0
VISION_RPS = 10.0  # utilisation 0.75 on one replica
WINDOW_S = 10.0
APPS = {  # app -> (deployment, service time ms, SLO p99 ms)
    "vision": ("Classifier", 75.0, 300.0),
    "text": ("Embedder", 20.0, 100.0),
}


def make_model(name: str, work_ms: float):
    """A small numpy MLP applied repeatedly for ``work_ms`` of wall time per request."""

    # max_ongoing_requests > 1 so the router hands requests over at once (with 1 it backs off between
    # probes and becomes the bottleneck on a loaded machine); the blocking call in an async method then
    # serves one request at a time per replica, like one model worker, and the rest wait in the replica.
    @serve.deployment(name=name, num_replicas=1, max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25})
    class Model:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.w1 = rng.standard_normal((128, 128)) / 12
            self.w2 = rng.standard_normal((128, 16)) / 12

        def forward(self) -> str:
            started = time.perf_counter()
            x = np.ones((8, 128))
            while time.perf_counter() - started < work_ms / 1000:
                x = np.tanh(x @ self.w1)
            return str(float(np.argmax(x @ self.w2)))

        async def __call__(self, request) -> str:
            return self.forward()  # blocks this replica's user event loop on purpose

    return Model.bind()


def refresh_ray_auth_config() -> None:
    """Ray caches its auth mode and token per process; re-read them after changing the environment
    (what Ray's own tests do, ``ray._private.authentication_test_utils.reset_auth_token_state``)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@dataclass
class RayCluster:
    dashboard_url: str
    http_url: str
    metrics_target: str
    token_file: Path


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> Iterator[RayCluster]:
    token_file = tmp_path_factory.mktemp("ray") / "auth_token"
    token_file.write_text("faro-test-" + os.urandom(16).hex())
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    refresh_ray_auth_config()
    dashboard_port, metrics_port, http_port = free_port(), free_port(), free_port()
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            _metrics_export_port=metrics_port,
            _system_config={"metrics_report_interval_ms": 1000},
            log_to_driver=False,
        )
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        for app, (deployment, work_ms, _slo) in APPS.items():
            serve.run(make_model(deployment, work_ms), name=app, route_prefix=f"/{app}", external_scaler_enabled=True)
        # An application deployed without the external scaler: Ray must refuse to scale it (412).
        serve.run(make_model("Fixed", 1.0), name="fixed", route_prefix="/fixed")
        yield RayCluster(
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            http_url=f"http://127.0.0.1:{http_port}",
            metrics_target=f"127.0.0.1:{metrics_port}",
            token_file=token_file,
        )
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            refresh_ray_auth_config()


class LoadGenerator:
    """Open-loop Poisson arrivals on loopback; bounded by duration and a worker pool."""

    def __init__(self, url: str, *, seed: int) -> None:
        self.url = url
        self.rate_rps = 0.0
        self.records: list[tuple[float, float, bool]] = []  # (sent at, latency s, ok)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=48)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadGenerator:
        self._thread.start()
        return self

    def _request(self) -> None:
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                ok = response.status == 200
                response.read()
        except OSError:
            ok = False
        with self._lock:
            self.records.append((sent, time.monotonic() - sent, ok))

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            if self.rate_rps <= 0:
                time.sleep(0.05)
                next_s = time.monotonic()
                continue
            next_s += self._rng.exponential(1 / self.rate_rps)
            delay = next_s - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            self._pool.submit(self._request)

    def p99_ms(self, since_s: float, until_s: float) -> tuple[float, int, int]:
        with self._lock:
            window = [(lat, ok) for sent, lat, ok in self.records if since_s <= sent < until_s]
        latencies = [lat for lat, ok in window if ok]
        failures = sum(1 for _lat, ok in window if not ok)
        return (float(np.percentile(latencies, 99)) * 1000 if latencies else math.inf), len(latencies), failures

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)


def running_replicas() -> dict[str, int]:
    status = serve.status()
    counts = {}
    for app, (deployment, _work, _slo) in APPS.items():
        states = status.applications[app].deployments[deployment].replica_states
        counts[app] = int(states.get("RUNNING", 0))
    return counts


def wait_until(predicate, *, timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


class CompressedLoop:
    """Faro's cycle with one tick standing for one minute: observe (PrometheusSource, ray-serve
    preset) → Faro-Sum → RayServeActuator."""

    def __init__(self, source: PrometheusSource, actuator: RayServeActuator) -> None:
        self.source = source
        self.actuator = actuator
        self.policy = make_policy("faro-sum", interval_s=60, first_long_s=0, horizon=2, cold_start_s=0, reactive=False)
        self.state = self.policy.initial_state()
        self.refs = [DeploymentRef(app, deployment, preset="ray-serve") for app, (deployment, _w, _s) in APPS.items()]
        self.history: dict[str, list[float]] = {app: [] for app in APPS}
        self.tick_count = 0
        self.log: list[dict] = []

    def tick(self) -> tuple[Plan, dict]:
        observed = self.source.observe(self.refs, now_s=time.time(), history_minutes=1)
        current = running_replicas()
        jobs = []
        for ref in self.refs:
            app, (_deployment, work_ms, slo_ms) = ref.namespace, APPS[ref.namespace]
            metrics = observed[ref.key]
            # Declared like faro.dev/processing-time-ms: Ray's processing latency also counts the wait
            # inside a replica, so it overstates the service time under load.
            processing_ms = work_ms
            if isinstance(metrics, JobMetrics):
                self.history[app].append((metrics.rate_rps or 0.0) * 60)
            elif self.history[app]:
                self.history[app].append(self.history[app][-1])  # keep the last good value, as the service does
            else:
                self.history[app].append(0.0)
            spec = JobSpec(
                ref.name,
                SLO(slo_ms, 99),
                processing_ms,
                namespace=app,
                resources={"cpu": CPU_PER_REPLICA},
                max_replicas=4,
            )
            jobs.append(
                JobView(
                    spec,
                    JobObservation(rate_history_rpm=tuple(self.history[app])),
                    current_replicas=max(1, current[app]),
                    ready_replicas=current[app],
                )
            )
        view = ClusterView(
            now_s=self.tick_count * 60.0, jobs=tuple(jobs), quotas=(Quota("ray-cap", hard={"cpu": QUOTA_CPU}),)
        )
        decision = self.policy.decide(view, self.state)
        self.state = decision.state
        errors = self.actuator.apply(decision.plan)
        self.tick_count += 1
        entry = {
            "desired": {t.namespace: t.desired_replicas for t in decision.plan.targets},
            "running": current,
            "observed": observed,
            "errors": errors,
        }
        self.log.append(entry)
        return decision.plan, entry

    def run(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            started = time.monotonic()
            self.tick()
            time.sleep(max(0.0, TICK_S - (time.monotonic() - started)))


def test_faro_scales_ray_serve_deployments_with_load_within_the_quota_and_improves_p99(
    ray_cluster: RayCluster, prometheus_factory
) -> None:
    started = time.monotonic()
    prometheus = prometheus_factory([ray_cluster.metrics_target])
    source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=10), window_s=WINDOW_S)
    actuator = RayServeActuator(ray_cluster.dashboard_url, token_file=ray_cluster.token_file, timeout_s=30, resync_s=30)
    loop = CompressedLoop(source, actuator)
    vision = LoadGenerator(f"{ray_cluster.http_url}/vision", seed=1).start()
    text = LoadGenerator(f"{ray_cluster.http_url}/text", seed=2).start()
    try:
        # Phase A: fixed allocation (one replica each), heavy load on vision (utilisation 0.75).
        # (Rates are kept low: Ray's Python HTTP proxy shares the 2 cores with everything else.)
        vision.rate_rps, text.rate_rps = VISION_RPS, 3.0
        phase_a = time.monotonic()
        prometheus.wait_for('ray_serve_num_router_requests_total{application="vision"}', timeout_s=120)
        time.sleep(max(0.0, phase_a + 30 - time.monotonic()))
        fixed_p99_ms, fixed_n, _ = vision.p99_ms(phase_a + 5, time.monotonic())

        # The preset's series exist and read sensibly (metric names verified against this Ray).
        first = source.observe(loop.refs, now_s=time.time(), history_minutes=1)
        seen = first[("vision", "Classifier")]
        assert isinstance(seen, JobMetrics), seen
        _p99, completed, _failed = vision.p99_ms(time.monotonic() - WINDOW_S, time.monotonic())
        diagnostics = f"{seen}; client completed {completed} in {WINDOW_S} s; fixed p99 {fixed_p99_ms} n={fixed_n}"
        assert seen.rate_rps == pytest.approx(VISION_RPS, rel=0.35), diagnostics
        # Replica-side latency: at least the service time (it also counts waiting inside the replica).
        assert seen.processing_time_ms is not None and seen.processing_time_ms >= 0.8 * 75.0, diagnostics
        assert seen.latency_ms is not None and seen.queue_length is not None, diagnostics

        # Phase B: Faro scales.
        phase_b = time.monotonic()
        assert wait_until(lambda: loop.tick() and running_replicas()["vision"] >= 2, timeout_s=90, every_s=TICK_S), (
            loop.log[-3:]
        )
        scaled = time.monotonic()
        loop.run(30)
        faro_p99_ms, faro_n, faro_failures = vision.p99_ms(scaled + 5, time.monotonic())
        peak_vision = max(entry["desired"]["vision"] for entry in loop.log)

        # Phase C: load drops; Faro gives the replicas back.
        vision.rate_rps = 1.0
        assert wait_until(lambda: loop.tick() and running_replicas()["vision"] == 1, timeout_s=90, every_s=TICK_S), (
            loop.log[-3:]
        )
    finally:
        vision.stop()
        text.stop()

    # Replicas followed the load, inside the quota, every tick.
    for entry in loop.log:
        assert sum(entry["desired"].values()) * CPU_PER_REPLICA <= QUOTA_CPU, entry
        assert sum(entry["running"].values()) <= QUOTA_CPU / CPU_PER_REPLICA + 1, entry  # +1: one replica in handover
        assert entry["errors"] == {}, entry["errors"]
    assert peak_vision >= 2
    assert loop.log[-1]["desired"] == {"vision": 1, "text": 1}
    # p99 against the fixed allocation at the same load.
    assert fixed_n > 150 and faro_n > 150
    assert faro_failures == 0
    # measured Faro/fixed ratios on the shared 2-core machine: 0.44, 0.60, 0.74 (the fixed phase's p99 at
    # utilisation 0.75 is heavy-tailed, and Ray's proxy shares the cores): ask for a 20% cut
    assert faro_p99_ms < 0.8 * fixed_p99_ms, (fixed_p99_ms, faro_p99_ms)
    print(
        f"\nray e2e: fixed p99 {fixed_p99_ms:.0f} ms (n={fixed_n}) -> faro p99 {faro_p99_ms:.0f} ms (n={faro_n}); "
        f"peak vision replicas {peak_vision}; phase B took {scaled - phase_b:.0f} s to scale; "
        f"test body {time.monotonic() - started:.0f} s"
    )


def test_ray_answers_for_unknown_and_non_external_apps_are_per_job_errors(ray_cluster: RayCluster) -> None:
    actuator = RayServeActuator(ray_cluster.dashboard_url, token_file=ray_cluster.token_file, timeout_s=30)
    plan = Plan(
        targets=(
            Target("no-such-app", "Model", desired_replicas=2, current_replicas=1),
            Target("fixed", "Fixed", desired_replicas=2, current_replicas=1),
            Target("text", "Embedder", desired_replicas=1, current_replicas=1),
        )
    )

    errors = actuator.apply(plan)

    assert set(errors) == {("no-such-app", "Model"), ("fixed", "Fixed")}, errors
    assert "HTTP 404" in errors[("no-such-app", "Model")]
    assert "HTTP 412" in errors[("fixed", "Fixed")] and "external_scaler_enabled" in errors[("fixed", "Fixed")]


def test_the_scale_api_rejects_a_missing_token(ray_cluster: RayCluster) -> None:
    actuator = RayServeActuator(ray_cluster.dashboard_url, timeout_s=30)
    errors = actuator.apply(Plan(targets=(Target("text", "Embedder", desired_replicas=1, current_replicas=1),)))
    assert "HTTP 401" in errors[("text", "Embedder")]

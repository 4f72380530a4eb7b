"""Faro's product control loop scaling a real Ray Serve: Ray's metrics scraped by a real Prometheus, read through
the ``ray-serve`` preset, planned by the optimizer's own ``ControlLoop`` (built by ``faro optimizer``'s wiring,
``build_service``) and applied through Ray's external-scaler API by the product's ``RayServeActuator``.

Two applications (``vision`` and ``text``) run on a local Ray (``ray.init(num_cpus=2)``, dashboard and metrics
on free loopback ports, token authentication on) with ``external_scaler_enabled: true``. A replica serves one
request at a time for 200 ms without using a CPU (like a model server waiting on its accelerator), so what a
replica can serve does not depend on how busy the shared 2-core machine is. Each is a Deployment in the test
Kubernetes API server, annotated with its SLO, the ``ray-serve`` preset and its Ray names, under a 2-CPU quota
(0.5 CPU per replica: 4 replicas in all). An open-loop Poisson generator sends 10 req/s to vision (2 busy
replicas' worth) and 0.5 req/s to text; the SLO is p99 ≤ 1 s.

Three runs on the same load, each from the same start (2 replicas each, the quota split evenly):

* **fixed** — that even split, kept (a fixed allocation of the same CPUs): vision runs at utilisation 1.0,
  beyond what its two replicas sustain once Ray's own per-request overhead is added;
* **faro** — ``faro optimizer --policy faro-sum --actuator ray-serve`` (the product's loop, in this process);
* **hpa-cpu** — the same loop with the ``hpa-cpu`` policy (Kubernetes' HPA rule at 70% utilisation, fed each
  replica's busy fraction, the quota enforced in job order as pods over a ResourceQuota are refused).

The loop's clock is accelerated 12x (one 5 s tick is one of the policy's minutes): Ray's metrics are stamped on
the wall clock, so the metrics source reports the last 20 s of wall time as each new minute (``CompressedMinutes``).
The statistic is robust: per 20 s window, vision's p99 over its SLO inside the replicas (Ray's own latency
histogram through the preset: queueing + service, what the allocation changes; the client's end-to-end p99
is reported too, but it also carries the HTTP proxy's delays, which follow the shared machine's load); the
median of the four per-window Faro/baseline ratios after a warm-up. Faro must cut the fixed split's p99 by
at least 30% and not lose to hpa-cpu beyond run-to-run noise; its plans must put the quota where the load is.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
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
from faro.optimizer.policy.base import Plan, Target
from prom_fixture import free_port

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'; CI installs it)")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]')")

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.prometheus]

NS = "ray"
CPU_PER_REPLICA = 0.5
QUOTA_CPU = 2.0  # at most 4 replicas in all
SERVICE_MS = 200.0
SLO_MS = 1000.0
APPS = {"vision": "Classifier", "text": "Embedder"}  # app -> Ray deployment
# Ray's Python HTTP proxy shares the 2 cores: keep it light. Vision's load sits 27% above what Faro plans 2
# replicas for (7.3 req/s): each of the loop's minutes is a 20 s window (200 requests, ±7% Poisson noise, 3x a
# real minute's), and at 9 req/s (19% above) a 2.4-sigma low window made the plan release a replica (measured).
LOAD_RPS = {"vision": 10.0, "text": 0.5}
ACCELERATION = 12.0  # the loop's minute passes every 5 s of wall time
TICK_S = 60.0 / ACCELERATION
RATE_WINDOW_S = 20.0
WARMUP_S = 30.0
WINDOWS, MEASURE_S = 4, 20.0


def make_model(name: str, work_ms: float):
    """A replica that serves one request at a time for ``work_ms`` without using a CPU."""

    # max_ongoing_requests > 1 so the router hands requests over at once (with 1 it backs off between
    # probes and becomes the bottleneck on a loaded machine); the blocking sleep in the async method then
    # serves one request at a time per replica, like one model worker, and the rest wait in the replica.
    @serve.deployment(name=name, num_replicas=2, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
    class Model:
        async def __call__(self, request) -> str:
            time.sleep(work_ms / 1000)  # blocks this replica's event loop on purpose
            return "ok"

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
        for app, deployment in APPS.items():
            serve.run(make_model(deployment, SERVICE_MS), name=app, route_prefix=f"/{app}",
                      external_scaler_enabled=True)
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
    """Open-loop Poisson arrivals on loopback; bounded by duration and a worker pool. A request that fails
    (or times out after ``TIMEOUT_S``) counts with the timeout as its latency."""

    TIMEOUT_S = 30.0

    def __init__(self, url: str, *, seed: int) -> None:
        self.url = url
        self.rate_rps = 0.0
        self.records: list[tuple[float, float, bool]] = []  # (sent at, latency s, ok)
        self.outstanding = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=160)  # open loop: seconds-long waits must not throttle it
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadGenerator:
        self._thread.start()
        return self

    def _request(self, sent: float) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.TIMEOUT_S) as response:
                ok = response.status == 200
                response.read()
        except OSError:
            ok = False
        with self._lock:
            latency = time.monotonic() - sent if ok else max(self.TIMEOUT_S, time.monotonic() - sent)
            self.records.append((sent, latency, ok))
            self.outstanding -= 1

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
            with self._lock:
                self.outstanding += 1
            self._pool.submit(self._request, next_s)  # latency from the scheduled send time

    def drain(self, timeout_s: float = TIMEOUT_S + 10) -> None:
        """Stop sending and wait for every request in flight to finish (or time out)."""
        self.rate_rps = 0.0
        assert wait_until(lambda: self.outstanding == 0, timeout_s=timeout_s), f"{self.outstanding} still in flight"

    def window(self, since_s: float, until_s: float) -> tuple[float, int, int]:
        """(p99 latency ms, requests, failed) of the requests sent in [since, until)."""
        with self._lock:
            window = [(lat, ok) for sent, lat, ok in self.records if since_s <= sent < until_s]
        latencies = [lat for lat, _ok in window]
        failures = sum(1 for _lat, ok in window if not ok)
        return (float(np.percentile(latencies, 99)) * 1000 if latencies else math.inf), len(latencies), failures

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)


def running_replicas() -> dict[str, int]:
    status = serve.status()
    return {app: int(status.applications[app].deployments[dep].replica_states.get("RUNNING", 0))
            for app, dep in APPS.items()}


def wait_until(predicate, *, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


class AcceleratedClock:
    def __init__(self, factor: float) -> None:
        self._t0, self._start_s, self.factor = time.monotonic(), time.time(), factor

    def __call__(self) -> float:
        return self._start_s + (time.monotonic() - self._t0) * self.factor


class CompressedMinutes:
    """The loop's metrics source under an accelerated clock: each observation reports Ray's last
    ``RATE_WINDOW_S`` of wall time (``PrometheusSource``, ``ray-serve`` preset) as the newest minute, and each
    replica's busy fraction (rate × service time / running replicas) as its CPU utilisation, which is what
    the HPA would read from a CPU-bound model server."""

    def __init__(self, source: PrometheusSource) -> None:
        self.source = source
        self.rates_seen: list[tuple[float, str, float]] = []  # (wall time, app, req/s): what the loop measured

    def observe(self, refs, *, now_s: float, history_minutes: int):
        observed = self.source.observe(refs, now_s=time.time(), history_minutes=1)
        running = running_replicas()
        out = {}
        for ref in refs:
            value = observed[ref.key]
            if isinstance(value, JobMetrics) and value.rate_rps is not None:
                self.rates_seen.append((time.monotonic(), ref.app_label, value.rate_rps))
                busy = value.rate_rps * SERVICE_MS / 1000 / max(1, running.get(ref.app_label, 1))
                value = dataclasses.replace(value, rate_history_rpm=(value.rate_rps * 60.0,),
                                            cpu_utilization=min(1.0, busy), observed_at_s=now_s)
            out[ref.key] = value
        return out


def lowest_recent_rate(metrics: CompressedMinutes, app: str, *, lookback_s: float = 2 * TICK_S) -> float:
    """The lowest load of ``app`` the loop measured in the last ``lookback_s`` of wall time (a plan follows the
    observation made at its long step, at most one tick before it is sampled)."""
    since = time.monotonic() - lookback_s
    recent = [rate for at, seen_app, rate in metrics.rates_seen if seen_app == app and at >= since]
    return min(recent, default=math.inf)


class ReadySync:
    """Keeps each Deployment's status at Ray's running replicas (what the cluster shows the loop)."""

    def __init__(self, kubeapi) -> None:
        self._kubeapi, self._stop = kubeapi, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadySync:
        self._thread.start()
        return self

    def _run(self) -> None:
        rtype = self._kubeapi._rtype("apps", "deployments")
        while not self._stop.wait(1.0):
            for app, n in running_replicas().items():
                self._kubeapi.update(rtype, NS, app, lambda obj, n=n: {**obj, "status": {
                    "replicas": n, "readyReplicas": n, "availableReplicas": n}}, subresource="status")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def set_replicas(actuator: RayServeActuator, replicas: dict[str, int]) -> None:
    plan = Plan(targets=tuple(Target(app, APPS[app], desired_replicas=n, current_replicas=n)
                              for app, n in replicas.items()))
    errors = actuator.apply(plan)
    for _ in range(3):  # the dashboard can time out while the shared machine is busy: ask again
        if not errors:
            break
        time.sleep(5)
        errors = actuator.apply(plan)
    assert errors == {}
    assert wait_until(lambda: running_replicas() == replicas, timeout_s=120), running_replicas()


def start_loop(policy: str, *, kube_client, metrics: CompressedMinutes, ray_cluster: RayCluster, certs: Path):
    """``faro optimizer``'s own wiring (``build_service``) for the flags below, with an accelerated clock."""
    from faro.optimizer.commands import optimizer as command
    from pki import plan_api_certs
    from prometheus_client import CollectorRegistry

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([
        "--policy", "faro-sum", "--actuator", "ray-serve", "--ray-dashboard-url", ray_cluster.dashboard_url,
        "--ray-token-file", str(ray_cluster.token_file), "--metrics-preset", "ray-serve", "--namespace", NS,
        "--interval-s", "60", "--reactive-interval-s", str(TICK_S / 2), "--horizon", "2",
        "--history-minutes", "1", "--history-backfill-minutes", "1", "--no-leader-elect",
        "--grpc-address", "127.0.0.1:0", "--metrics-address", "", *plan_api_certs(certs).server_flags(),
    ])
    # The CLI offers Faro's policies only; the baseline goes through the same wiring (build_service) and loop.
    args.policy = policy
    options = {"quota_order": "job"} if policy == "hpa-cpu" else None  # pods over the quota are refused
    return command.build_service(args, api_client=kube_client, metrics_source=metrics, registry=CollectorRegistry(),
                                 clock=AcceleratedClock(ACCELERATION), policy_options=options).start()


def p99_over_slo(gen: LoadGenerator, since_s: float, until_s: float) -> tuple[float, int]:
    """p99/SLO of the requests ``gen`` sent in [since, until), and how many there were."""
    p99_ms, sent, _failed = gen.window(since_s, until_s)
    return p99_ms / SLO_MS, sent


@pytest.fixture
def cluster(kubeapi, kube_client):
    from kubeapi.objects import deployment, quota
    from kubernetes import client

    apps = client.AppsV1Api(kube_client)
    client.CoreV1Api(kube_client).create_namespaced_resource_quota(NS, quota("compute", {"requests.cpu": "2"},
                                                                             namespace=NS))
    for app, ray_deployment in APPS.items():
        ann = {"faro.dev/slo-latency-ms": str(SLO_MS), "faro.dev/slo-percentile": "99",
               "faro.dev/processing-time-ms": str(SERVICE_MS), "faro.dev/metrics-preset": "ray-serve",
               "faro.dev/ray-app": app, "faro.dev/ray-deployment": ray_deployment,
               "faro.dev/min-replicas": "1", "faro.dev/max-replicas": "4"}
        apps.create_namespaced_deployment(NS, deployment(app, namespace=NS, replicas=2, cpu="500m", annotations=ann))
    with ReadySync(kubeapi):
        yield kube_client


def test_faros_control_loop_beats_a_fixed_split_of_the_same_cpus_and_hpa_cpu_on_ray_serve(
    ray_cluster: RayCluster, prometheus_factory, cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    prometheus = prometheus_factory([ray_cluster.metrics_target])
    source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=10), window_s=RATE_WINDOW_S)
    metrics = CompressedMinutes(source)
    actuator = RayServeActuator(ray_cluster.dashboard_url, token_file=ray_cluster.token_file, timeout_s=30)
    generators = {app: LoadGenerator(f"{ray_cluster.http_url}/{app}", seed=i + 1).start()
                  for i, app in enumerate(APPS)}
    scores: dict[str, list[float]] = {}
    text_p99: dict[str, float] = {}
    planned: dict[str, list[tuple[int, ...]]] = {}
    # Per plan sample, the lowest vision load the loop measured in the wall seconds before it.
    measured_before_plan: dict[str, list[float]] = {}
    # Ray's own p99 of vision's requests inside the replicas (queueing + service, the preset's latency): what the
    # allocation changes, without the HTTP proxy's delays, which follow how busy the shared machine is.
    replica_side: dict[str, list[float]] = {}
    window_source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=10), window_s=MEASURE_S)
    vision_ref = DeploymentRef(NS, "vision", preset="ray-serve", app="vision", deployment="Classifier")
    replicas_seen: dict[str, list[dict[str, int]]] = {}
    try:
        for app, gen in generators.items():
            gen.rate_rps = LOAD_RPS[app]
        prometheus.wait_for('ray_serve_num_router_requests_total{application="vision"}', timeout_s=120)
        # The preset's series exist and read sensibly (metric names verified against this Ray).
        time.sleep(RATE_WINDOW_S)
        ref = DeploymentRef(NS, "vision", preset="ray-serve", app="vision", deployment="Classifier")
        seen = source.observe([ref], now_s=time.time(), history_minutes=1)[ref.key]
        assert isinstance(seen, JobMetrics), seen
        assert seen.rate_rps == pytest.approx(LOAD_RPS["vision"], rel=0.35), seen
        assert seen.processing_time_ms is not None and seen.processing_time_ms >= 0.8 * SERVICE_MS, seen

        for policy in ("faro-sum", "hpa-cpu", "fixed"):
            for gen in generators.values():
                gen.drain()
            set_replicas(actuator, {"vision": 2, "text": 2})
            service = None if policy == "fixed" else start_loop(policy, kube_client=cluster, metrics=metrics,
                                                                ray_cluster=ray_cluster, certs=tmp_path)
            seen_replicas: list[dict[str, int]] = []
            planned[policy] = []
            measured_before_plan[policy] = []
            replica_side[policy] = []
            bounds: list[tuple[float, float]] = []
            try:
                for app, gen in generators.items():
                    gen.rate_rps = LOAD_RPS[app]
                time.sleep(WARMUP_S)  # the policy converges (or, for fixed, the split settles)
                for _ in range(WINDOWS):
                    start = time.monotonic()
                    while time.monotonic() - start < MEASURE_S:
                        seen_replicas.append(running_replicas())
                        if service is not None and (plan := service.store.current()) is not None:
                            planned[policy].append(tuple(t.desired_replicas for t in plan.targets))
                            measured_before_plan[policy].append(lowest_recent_rate(metrics, "vision"))
                        time.sleep(1.0)
                    bounds.append((start, time.monotonic()))
                    time.sleep(2.5)  # Ray reports every second and Prometheus scrapes every second
                    inside = window_source.observe([vision_ref], now_s=time.time(), history_minutes=1)[vision_ref.key]
                    replica_side[policy].append(inside.latency_ms / SLO_MS if isinstance(inside, JobMetrics)
                                                and inside.latency_ms is not None else math.inf)
                for gen in generators.values():
                    gen.drain()  # every request of the windows has finished (or timed out) before scoring
            finally:
                if service is not None:
                    service.stop()
            windows = []
            for lo, hi in bounds:
                score, n = p99_over_slo(generators["vision"], lo, hi)
                assert n > 90, f"{policy}: only {n} vision requests in a window"
                windows.append(score)
            text_p99[policy], _ = p99_over_slo(generators["text"], bounds[0][0], bounds[-1][1])
            scores[policy], replicas_seen[policy] = windows, seen_replicas
    finally:
        for gen in generators.values():
            gen.stop()

    # Every allocation stayed inside the quota (4 replicas; +1 while one replica hands over).
    for policy, seen_list in replicas_seen.items():
        assert all(sum(r.values()) <= QUOTA_CPU / CPU_PER_REPLICA + 1 for r in seen_list), (policy, seen_list)
    faro_vs_fixed = statistics.median(f / x for f, x in zip(scores["faro-sum"], scores["fixed"], strict=True))
    faro_vs_hpa = statistics.median(f / h for f, h in zip(scores["faro-sum"], scores["hpa-cpu"], strict=True))
    inside_vs_fixed = statistics.median(
        f / x for f, x in zip(replica_side["faro-sum"], replica_side["fixed"], strict=True))
    inside_vs_hpa = statistics.median(
        f / h for f, h in zip(replica_side["faro-sum"], replica_side["hpa-cpu"], strict=True))
    inside = {k: [round(v, 2) for v in s] for k, s in replica_side.items()}
    summary = (f"replica-side vision p99/SLO per window {inside}; faro/fixed median {inside_vs_fixed:.2f}, "
               f"faro/hpa-cpu median {inside_vs_hpa:.2f}; "
               f"end-to-end vision p99/SLO per window {({k: [round(v, 2) for v in s] for k, s in scores.items()})}; "
               f"text p99/SLO {({k: round(v, 2) for k, v in text_p99.items()})}; "
               f"faro/fixed median {faro_vs_fixed:.2f}, faro/hpa-cpu median {faro_vs_hpa:.2f}; "
               f"replicas at the end {({k: v[-1] for k, v in replicas_seen.items()})}; "
               f"plans while measuring {({k: sorted(set(v)) for k, v in planned.items()})}; "
               f"lowest vision load the loop measured before a plan, req/s "
               f"{({k: round(min(v, default=math.nan), 2) for k, v in measured_before_plan.items()})}; "
               f"test body {time.monotonic() - started:.0f} s")
    print("\nray e2e:", summary)
    # Faro moves the quota to where the load is, at every plan while measuring: 3 replicas for vision, 1 for text
    # (2 for vision only once it forecasts <= 7.3 req/s: `faro plan` on this problem). A plan may differ only
    # when the loop measured vision's load near that boundary (a low 20 s window, or a stall of the shared
    # machine delaying requests): the plan then follows what the loop measured, which is no evidence against it.
    unexplained = [(plan, round(rate, 2)) for plan, rate in zip(planned["faro-sum"], measured_before_plan["faro-sum"],
                                                                 strict=True)
                   if plan != (1, 3) and rate >= 7.3 * 1.1]
    assert not unexplained, (unexplained, summary)
    assert sum(plan == (1, 3) for plan in planned["faro-sum"]) >= 0.75 * len(planned["faro-sum"]), summary
    assert replicas_seen["faro-sum"][-1] == {"vision": 3, "text": 1}, summary
    # The even split cannot keep up with vision (its queue grows all along), so Faro's p99 is a fraction of it.
    # Judged on Ray's replica-side p99: the end-to-end one also carries the HTTP proxy's delays, which follow how
    # busy the shared 2-core machine is (end-to-end Faro/fixed medians measured 0.17 on a quiet machine and 1.27
    # under a load average of ~25 from other jobs). Replica-side medians measured 0.18-0.50 on a quiet machine
    # (0.50 in a clean CI run: Faro's windows at 0.88-0.97 of the SLO, the split's at 1.66-1.97) and 0.66-0.92
    # under a load average of 7-14, all at 9 req/s; at 10 req/s the split saturates (0.10 on a quiet machine):
    # Faro must cut the split's p99 by at least 30%.
    assert inside_vs_fixed < 0.7, summary
    # hpa-cpu sees ~90% utilisation and also moves vision to 3 once the quota lets it (its scale-down of text
    # waits for the 5-minute stabilization window), so the two end close: Faro must not be worse, beyond the
    # noise between two runs of the same allocation (per-window values of one allocation spread up to 2x).
    assert replicas_seen["hpa-cpu"][-1]["vision"] == 3, summary
    assert inside_vs_hpa < 2.0, summary


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

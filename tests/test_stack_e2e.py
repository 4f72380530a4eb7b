"""Full stack, end to end, with the real components wherever they exist here.

1. Load → Prometheus → optimizer → plans (issue 5): annotated Deployments and a namespace ResourceQuota in
   the test Kubernetes API server (``tests/kubeapi``); traffic set in the test exporter (the generic
   preset's request counter and latency histogram, namespace/deployment labels) and scraped every second
   by the real Prometheus (Debian ``/usr/bin/prometheus``); the optimizer built from its flags by
   ``faro optimizer``'s own wiring (``build_service``: informers, real ``PrometheusSource``, policy,
   control loop, gRPC) with an accelerated clock. The exporter stamps its samples with that same
   clock, so Prometheus stores them on the optimizer's timeline and a one-minute forecast step takes
   six seconds of wall time. Plans are read from the real ``WatchPlans`` stream.
2. Plans → adapter → HPA (issue 6): ``faro optimizer`` and ``faro adapter`` as processes on the real
   clock (the adapter ages plans from their ``created`` time against wall time, so an accelerated
   optimizer would never look stale to it), real Prometheus with a backfilled per-minute history
   (promtool), the adapter's real HTTPS server with certificates from ``tests/pki.py`` and
   delegated auth against the test API server (the HPA comes through the aggregator's front-proxy
   certificate + SubjectAccessReview, kubectl with a bearer token + TokenReview), the HPA emulator
   reading ``faro_desired_replicas`` over HTTPS like the HPA controller (a failed read holds) and
   scaling the Deployment through the API, and ``kubectl get --raw`` once.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from faro.optimizer.commands import optimizer as command
from faro.optimizer.sim.hpa import HPABehavior, HPASpec
from faro.v1 import plan_pb2, plan_pb2_grpc
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client
from pki import CertificateAuthority, PlanAPICerts, plan_api_certs
from prom_fixture import TrafficExporter, free_port, openmetrics_counter
from prometheus_client import CollectorRegistry
from service_fakes import AcceleratedClock
from stack_helpers import (
    METRIC_PATH,
    FaroProcess,
    HPAController,
    PlanRecorder,
    TimestampedExporter,
    create_auth_configmap,
    desired,
    eventually,
    http_get,
    scrape_value,
)

NS = "team-a"
QUOTA_CPU = 8  # requests.cpu of the namespace quota; every replica requests 1 CPU
FAST = {0.05: 0.9, 0.1: 1.0}  # latency buckets: everything within 100 ms (SLO 300 ms, so no reactive steps)
LOW_RPS, HIGH_RPS = 1.0, 40.0  # 100 ms per request: ~1 replica each vs ~6 each (more than the quota allows)
ACCELERATION = 10.0  # optimizer (and sample) time runs 10x wall time: one minute = 6 s


def annotations(*, processing_annotated: bool) -> dict[str, str]:
    ann = {"faro.dev/slo-latency-ms": "300", "faro.dev/slo-percentile": "99"}
    if processing_annotated:
        ann["faro.dev/processing-time-ms"] = "100"
    return ann


@pytest.fixture
def team(kube_client):
    """Deployments a (processing time annotated) and b (processing time measured), their HPAs, and the quota."""
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    hpas = client.AutoscalingV2Api(kube_client)
    core.create_namespaced_resource_quota(NS, quota("compute", {"requests.cpu": str(QUOTA_CPU)}))
    for name in ("a", "b"):
        ann = annotations(processing_annotated=name == "a")
        apps.create_namespaced_deployment(NS, deployment(name, annotations=ann))
        hpas.create_namespaced_horizontal_pod_autoscaler(NS, hpa(name, max_replicas=40))
    return kube_client


def set_load(exporter: TimestampedExporter, rate_rps: float) -> None:
    for name in ("a", "b"):
        exporter.set_traffic(NS, name, rate_rps=rate_rps, latency_fractions=FAST, mean_latency_ms=40.0,
                             processing_ms=100.0)


def solve_with(predicate):
    return lambda plan: plan.kind == "solve" and len(plan.targets) == 2 and predicate(plan)


def planned(plan) -> bool:
    """Both Deployments planned from observations (none held)."""
    return all(not t.held_reason for t in plan.targets)


@pytest.mark.slow
def test_plans_follow_real_prometheus_load_within_the_quota_and_survive_a_prometheus_outage(
    team, prometheus_factory, tmp_path: Path
) -> None:
    clock = AcceleratedClock(start_s=time.time(), factor=ACCELERATION)
    certs = plan_api_certs(tmp_path)
    exporter = TimestampedExporter(clock=clock).start()
    service = recorder = None
    try:
        set_load(exporter, LOW_RPS)
        prom = prometheus_factory([exporter.target])
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        args = parser.parse_args([
            "--prometheus-url", prom.url, "--namespace", NS, "--no-leader-elect", "--identity", "stack-0",
            "--grpc-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
            "--interval-s", "30", "--reactive-interval-s", "1", "--history-minutes", "10", "--horizon", "3",
            *certs.server_flags(),
        ])
        # Everything from the flags as `faro optimizer` builds it (real PrometheusSource); only the clock
        # and the API client (the test API server) are injected.
        service = command.build_service(args, api_client=team, registry=CollectorRegistry(), clock=clock).start()
        recorder = PlanRecorder(f"127.0.0.1:{service.grpc_port}", certs.client_tls())
        metrics_url = f"http://127.0.0.1:{service.metrics_port}/metrics"

        low = recorder.wait(solve_with(lambda p: planned(p) and all(t.forecast_rps > 0 for t in p.targets)),
                            timeout_s=60, what="both Deployments planned from Prometheus at low load")
        assert max(desired(low).values()) <= 2, low
        assert all(t.slo_latency_ms == 300 and not t.stale for t in low.targets)

        # Load rises: the completed minutes in Prometheus carry it, the forecast follows, the quota binds.
        mark = recorder.mark()
        set_load(exporter, HIGH_RPS)
        high = recorder.wait(solve_with(lambda p: min(desired(p).values()) >= 3 and
                                        all(t.forecast_rps > 20 for t in p.targets)),
                             since=mark, timeout_s=60, what="desired replicas up with the load")
        assert sum(desired(high).values()) <= QUOTA_CPU
        assert all(t.expected_latency_ms > 0 and 90 <= t.observed_latency_ms <= 100 for t in high.targets), high

        # A full minute at the high load in the forecast: the reference for the outage.
        steady = recorder.wait(solve_with(lambda p: all(t.forecast_rps > 0.8 * HIGH_RPS for t in p.targets)),
                               since=recorder.mark(), timeout_s=60, what="a whole high minute in the forecast")

        # Prometheus stops: the loop keeps planning from the last good observations, marked stale.
        mark = recorder.mark()
        prom.stop()
        outage = recorder.wait(lambda p: len(p.targets) == 2 and all(t.stale for t in p.targets), since=mark,
                               timeout_s=30, what="targets marked stale while Prometheus is down")
        later = recorder.wait(lambda p: p.generation > outage.generation + 2 and all(
            t.stale and t.observations_age_s > 0 for t in p.targets), since=mark, timeout_s=30,
            what="stale plans ticking on")
        for plan in (outage, later):
            assert planned(plan) and min(desired(plan).values()) >= 3, plan  # the high plan holds, not a collapse
            for t, before in zip(plan.targets, steady.targets, strict=True):
                assert t.forecast_rps == pytest.approx(before.forecast_rps, rel=0.25)  # last good forecasts
        assert service._thread is not None and service._thread.is_alive()
        _, text = http_get(metrics_url)
        assert (scrape_value(text, "faro_optimizer_observations_age_seconds", namespace=NS, deployment="a") or 0) > 0
        assert (scrape_value(text, "faro_optimizer_metrics_errors_total") or 0) > 0
        assert scrape_value(text, "faro_optimizer_cycle_errors_total") == 0

        # Prometheus restarts on the same port and TSDB: fresh again, still at high load.
        mark = recorder.mark()
        prom.start()
        fresh = recorder.wait(lambda p: len(p.targets) == 2 and planned(p) and not any(t.stale for t in p.targets),
                              since=mark, timeout_s=60, what="fresh observations after Prometheus is back")
        assert all(t.observations_age_s == 0 for t in fresh.targets)
        _, text = http_get(metrics_url)
        assert scrape_value(text, "faro_optimizer_observations_age_seconds", namespace=NS, deployment="a") == 0

        # Load drops: the plan falls back.
        mark = recorder.mark()
        set_load(exporter, LOW_RPS)
        recorder.wait(solve_with(lambda p: planned(p) and max(desired(p).values()) <= 2), since=mark, timeout_s=60,
                      what="desired replicas back down after the load drops")

        # Every plan published over the whole run kept within the namespace quota.
        assert recorder.error is None
        over = [p.generation for p in recorder.plans if sum(desired(p).values()) > QUOTA_CPU]
        assert not over, f"plans over the {QUOTA_CPU}-CPU quota: {over}"
    finally:
        if recorder is not None:
            recorder.close()
        if service is not None:
            service.stop()
        exporter.close()




# ------------------------------------------------------------------------------------ plan → adapter → HPA

HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
KUBECTL_USER = "alice"
ADAPTER_TTL_S = 5.0  # the adapter stops serving a plan this old; the optimizer publishes one every second
CHAIN_RPS = 30.0  # deployment a: 30 req/s at 100 ms each, ~5 replicas wanted


def backfilled_history(now_s: float, *, minutes: int = 12) -> str:
    """``CHAIN_RPS`` for the ``minutes`` minutes up to ``now_s`` (15 s resolution): the history Prometheus would
    have scraped before this test; the live exporter (started just before) carries on from there."""
    start_s = now_s - minutes * 60
    points = [(start_s + i * 15.0, CHAIN_RPS * i * 15.0) for i in range(minutes * 4 + 1)]
    return openmetrics_counter("http_requests", {"namespace": NS, "deployment": "a"}, points)


@dataclass
class Chain:
    optimizer: FaroProcess
    adapter: FaroProcess
    hpa: HPAController
    grpc_address: str
    adapter_url: str
    serving_ca: bytes
    front_proxy: tuple[Path, Path]
    apps: client.AppsV1Api
    plan_certs: PlanAPICerts

    def plan(self):
        with self.plan_certs.client_tls().channel(self.grpc_address) as channel:
            return plan_pb2_grpc.PlanServiceStub(channel).GetPlan(plan_pb2.GetPlanRequest(), timeout=10)

    def planned_a(self) -> int | None:
        try:
            return desired(self.plan()).get("a")
        except grpc.RpcError:
            return None

    def hpa_sync(self) -> int:
        """One HPA controller sync; like the controller, it then scales the Deployment through the API."""
        before = self.hpa.replicas
        self.hpa.sync()
        if self.hpa.replicas != before:
            self.apps.patch_namespaced_deployment("a", NS, {"spec": {"replicas": self.hpa.replicas}})
        return self.hpa.replicas

    def follows_plan(self) -> bool:
        """Whether, after one sync, the HPA sits at what the optimizer currently plans."""
        self.optimizer.check_alive()
        self.adapter.check_alive()
        replicas = self.hpa_sync()
        return replicas == self.planned_a()


def optimizer_args(kubeconfig: Path, prom_url: str, grpc_port: int, certs: PlanAPICerts) -> list[str]:
    return ["--kubeconfig", str(kubeconfig), "--prometheus-url", prom_url, "--namespace", NS, "--no-leader-elect",
            "--identity", "chain-0", "--grpc-address", f"127.0.0.1:{grpc_port}",
            "--metrics-address", f"127.0.0.1:{free_port()}", "--interval-s", "5", "--reactive-interval-s", "1",
            "--history-minutes", "10", "--horizon", "3", *certs.server_flags()]


@pytest.fixture
def chain(kubeapi, kube_client, prometheus_factory, tmp_path: Path):
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    core.create_namespaced_resource_quota(NS, quota("compute", {"requests.cpu": "16"}))
    ann = annotations(processing_annotated=True)
    apps.create_namespaced_deployment(NS, deployment("a", replicas=2, annotations=ann))
    client.AutoscalingV2Api(kube_client).create_namespaced_horizontal_pod_autoscaler(
        NS, hpa("a", min_replicas=1, max_replicas=20))

    # Delegated auth of the aggregated API, answered by the test API server.
    serving, front = CertificateAuthority("serving-ca"), CertificateAuthority("front-proxy-ca")
    server_cert = serving.issue("faro-adapter", server=True).write(tmp_path, "server")
    front_proxy = front.issue("front-proxy-client").write(tmp_path, "front-proxy")
    create_auth_configmap(kube_client, front.cert_pem.decode())
    kubeapi.token_users["kubectl-token"] = {"username": KUBECTL_USER, "groups": ["system:authenticated"]}
    reader = "faro-external-metrics-reader"  # what the chart grants the HPA controller, plus the kubectl user
    kubeapi.load([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": reader},
         "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": reader},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}
                      for u in (HPA_USER, KUBECTL_USER)]},
    ])

    exporter = TrafficExporter().start()
    exporter.set_traffic(NS, "a", rate_rps=CHAIN_RPS, latency_fractions=FAST, mean_latency_ms=40.0)
    prom = prometheus_factory([exporter.target], backfill=backfilled_history(time.time()))
    kubeconfig = kubeapi.kubeconfig(tmp_path / "kubeconfig")
    grpc_port, secure_port = free_port(), free_port()
    plan_certs = plan_api_certs(tmp_path)  # the plan API's mTLS, as the chart sets it up
    optimizer = FaroProcess("optimizer", optimizer_args(kubeconfig, prom.url, grpc_port, plan_certs),
                            tmp_path / "optimizer.log")
    adapter = FaroProcess("adapter", [
        "--optimizer-address", f"127.0.0.1:{grpc_port}", *plan_certs.client_flags(),
        "--secure-address", f"127.0.0.1:{secure_port}",
        "--tls-cert-file", str(server_cert[0]), "--tls-private-key-file", str(server_cert[1]),
        "--plan-ttl-s", str(ADAPTER_TTL_S), "--metrics-address", f"127.0.0.1:{free_port()}",
        "--kubeconfig", str(kubeconfig),
    ], tmp_path / "adapter.log")
    # The HPA controller reaches the adapter through the aggregator: front-proxy certificate + X-Remote-User.
    hpa_ctx = ssl.create_default_context(cadata=serving.cert_pem.decode())
    hpa_ctx.load_cert_chain(str(front_proxy[0]), str(front_proxy[1]))
    adapter_url = f"https://127.0.0.1:{secure_port}"
    spec = HPASpec(min_replicas=1, max_replicas=20, behavior=HPABehavior.recommended_for_faro())
    controller = HPAController(adapter_url, hpa_ctx, NS, "a", replicas=2, spec=spec,
                               headers={"X-Remote-User": HPA_USER, "X-Remote-Group": "system:serviceaccounts"})
    try:
        optimizer.start()
        adapter.start()
        yield Chain(optimizer, adapter, controller, f"127.0.0.1:{grpc_port}", adapter_url, serving.cert_pem,
                    front_proxy, apps, plan_certs)
    finally:
        optimizer.stop()
        adapter.stop()
        exporter.close()


def kubectl_raw(chain: Chain, path: str, tmp_path: Path) -> dict:
    """``kubectl get --raw`` against the adapter, authenticated by a bearer token (a TokenReview)."""
    kubeconfig = tmp_path / "adapter-kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "adapter",
        "clusters": [{"name": "adapter", "cluster": {
            "server": chain.adapter_url, "certificate-authority-data": base64.b64encode(chain.serving_ca).decode()}}],
        "users": [{"name": "alice", "user": {"token": "kubectl-token"}}],
        "contexts": [{"name": "adapter", "context": {"cluster": "adapter", "user": "alice"}}],
    }))
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", path], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_hpa_replicas_follow_the_optimizers_plan_through_the_adapter_and_hold_when_it_is_gone(
    chain: Chain, kube_client, tmp_path: Path
) -> None:
    # Load from Prometheus (backfilled minutes + live exporter) → plan → adapter → HPA → Deployment scaled.
    eventually(chain.follows_plan, timeout_s=90, what="the HPA at the optimizer's plan")
    first = chain.hpa.replicas
    assert first >= 3, f"30 req/s at 100 ms each needs several replicas, HPA at {first}"
    deployment_replicas = lambda: client.AppsV1Api(kube_client).read_namespaced_deployment("a", NS).spec.replicas  # noqa: E731
    assert deployment_replicas() == first
    eventually(lambda: chain.plan().targets[0].current_replicas == first, timeout_s=30,
               what="the optimizer seeing the HPA's scale in spec.replicas")

    # The quota is cut to 2 CPUs: the next solve fits it, and the HPA follows down (no stabilization).
    core = client.CoreV1Api(kube_client)
    core.patch_namespaced_resource_quota("compute", NS, {"spec": {"hard": {"requests.cpu": "2"}}})
    core.patch_namespaced_resource_quota_status("compute", NS, {"status": {"hard": {"requests.cpu": "2"}}})
    eventually(lambda: chain.follows_plan() and chain.hpa.replicas <= 2, timeout_s=60,
               what="the HPA down to the 2-CPU quota")
    assert deployment_replicas() == chain.hpa.replicas

    # kubectl (when installed; CI installs it) reads the same value the HPA does.
    if shutil.which("kubectl"):
        path = METRIC_PATH.format(namespace=NS) + "?labelSelector=deployment%3Da"
        listing = kubectl_raw(chain, path, tmp_path)
        assert listing["kind"] == "ExternalMetricValueList" and len(listing["items"]) == 1
        assert listing["items"][0]["metricName"] == "faro_desired_replicas"
        assert int(listing["items"][0]["value"]) == chain.planned_a()

    # Bad requests get a Status with the right code, never a 500.
    for query, code in (("?labelSelector=deployment%20in%20(", 400), ("?labelSelector=deployment%3Dghost", 404)):
        status, body = http_get(chain.adapter_url + METRIC_PATH.format(namespace=NS) + query,
                                context=chain.hpa.context, headers=chain.hpa.headers)
        assert (status, body["kind"]) == (code, "Status"), (query, body)
    status, body = http_get(chain.adapter_url + f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/nope"
                            "?labelSelector=deployment%3Da", context=chain.hpa.context, headers=chain.hpa.headers)
    assert (status, body["kind"]) == (404, "Status")

    # The optimizer stops: after the TTL the adapter stops serving; the HPA holds what it has.
    assert chain.optimizer.stop() == 0
    held = chain.hpa.replicas
    eventually(lambda: chain.hpa_sync() is not None and chain.hpa.last_status == 503, timeout_s=ADAPTER_TTL_S + 30,
               what="the adapter refusing the expired plan")
    for _ in range(3):
        assert chain.hpa.sync() is None and chain.hpa.replicas == held
    status, body = http_get(chain.hpa.url, context=chain.hpa.context, headers=chain.hpa.headers)
    assert (status, body["kind"], body["reason"]) == (503, "Status", "ServiceUnavailable")
    # Still ready (the APIService stays available, the HPA sees "no metric" and holds); the unauthenticated
    # probe body reveals nothing but that.
    status, text = http_get(chain.adapter_url + "/readyz", context=chain.hpa.context)
    assert (status, text) == (200, "ok\n")

    # Restarted (same address): the adapter reconnects and the HPA follows the new plan again.
    chain.optimizer.start()
    eventually(lambda: chain.hpa.read_metric() is not None, timeout_s=90, what="the adapter serving again")
    eventually(chain.follows_plan, timeout_s=60, what="the HPA following the restarted optimizer")

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
   clock (the adapter's TTL is wall time), real Prometheus with a backfilled per-minute history
   (promtool), the adapter's real HTTPS server with certificates from ``faro.adapter.testing`` and
   delegated auth against the test API server, the HPA emulator reading ``faro_desired_replicas`` over
   HTTPS like the HPA controller (a failed read holds), and ``kubectl get --raw`` once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
from faro.optimizer.commands import optimizer as command
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client
from prometheus_client import CollectorRegistry
from service_fakes import AcceleratedClock
from stack_helpers import PlanRecorder, TimestampedExporter, desired, http_get, scrape_value

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
        ])
        # Everything from the flags as `faro optimizer` builds it (real PrometheusSource); only the clock
        # and the API client (the test API server) are injected.
        service = command.build_service(args, api_client=team, registry=CollectorRegistry(), clock=clock).start()
        recorder = PlanRecorder(f"127.0.0.1:{service.grpc_port}")
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
            for t, before in zip(plan.targets, high.targets, strict=True):
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



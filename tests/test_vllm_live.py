"""Faro planning real vLLM Deployments from their own metrics: vLLM servers, a real Prometheus, the optimizer.

Two vLLM servers (CPU build, tiny random Llama; ``chat-a``, ``chat-b``; one engine core each) share the
module; a Prometheus scrapes them every second with the ``namespace`` label a Kubernetes pod scrape
adds. Load replays slices of the bundled Azure LLM conversation trace (token counts scaled for the
tiny model). What the preset reads must exist in the *installed* vLLM's exposition (a renamed series
fails here). Then the optimizer as ``faro optimizer`` builds it (informers on the test Kubernetes API
server, the real ``PrometheusSource`` with the ``vllm`` preset, the policy, the control loop, gRPC)
plans the two Deployments — ``nvidia.com/gpu`` requests under a GPU ResourceQuota, TTFT/ITL SLOs —
through a load sweep on ``chat-a`` and the death of ``chat-b``'s server.
"""

from __future__ import annotations

import json
import time

import pytest
from faro.optimizer.metrics.base import JobMetrics
from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource
from kubeapi.objects import deployment
from prom_fixture import prometheus_servers
from vllm_fixture import (
    LoadGenerator,
    client_latency_ms,
    exported_series,
    model_latency_ms,
    preset_series,
    trace_requests,
    vllm_servers,
)

pytestmark = [pytest.mark.vllm, pytest.mark.prometheus, pytest.mark.slow]

NS = "llm"
SERVER = {"max_num_seqs": 8, "max_num_batched_tokens": 512, "num_gpu_blocks": 48}
WINDOW_S = 10.0


@pytest.fixture(scope="module")
def live():
    """(servers a and b, Prometheus URL); the servers are stopped at the end of the module."""
    configs = [{**SERVER, "served_model_name": "chat-a", "cpu_core": 0},
               {**SERVER, "served_model_name": "chat-b", "cpu_core": 1}]
    with vllm_servers(*configs) as servers, prometheus_servers() as start:
        scrape = {"job_name": "vllm", "static_configs": [{"targets": [s.target for s in servers],
                                                           "labels": {"namespace": NS}}]}
        prom = start([], extra_scrape_configs=[scrape])
        prom.wait_for('count(vllm:num_requests_running{namespace="llm"}) == 2', timeout_s=60)
        yield servers, prom


def test_the_installed_vllm_exports_every_series_the_preset_reads(live) -> None:
    servers, _ = live
    LoadGenerator(servers[0].url, "chat-a", trace_requests(rate_rps=2.0, duration_s=3.0)).run()
    exported = exported_series(servers[0].metrics_text())
    from faro.optimizer.metrics.vllm import DEPRECATED

    missing = sorted(preset_series() - set(DEPRECATED) - exported)
    assert not missing, f"the installed vLLM does not export (renamed?): {missing}"


# ------------------------------------------------------------------------------ the optimizer end to end

GPU_QUOTA = 3  # requests.nvidia.com/gpu in the namespace; every replica asks for one GPU
SLO = {"faro.dev/slo-ttft-ms": "1500", "faro.dev/slo-itl-ms": "150", "faro.dev/slo-percentile": "90"}
PHASES = (("low", 0.7), ("mid", 2.0), ("high", 10.0))  # chat-a's request rate; chat-b stays at 0.4 req/s
PHASE_S = 60.0
WARMUP_S = 15.0  # the first seconds of a phase carry the previous phase's tail: left out of the measurement
# Model vs measured ITL p50 at the low phase: the stated bound. On this shared 2-core machine the engine's
# step time moves with the neighbours' load (ITL p50 at 0.5-2 req/s measured 14-63 ms at load averages
# 14-31 in one bench run; predicted/measured 0.63 and 1.41 in two runs of this test), so the bound is a
# factor, not the 25 % target.
P50_FACTOR = 2.5


def llm_deployment(name: str) -> dict:
    annotations = {**SLO, "faro.dev/metrics-preset": "vllm", "faro.dev/model-name": name,
                   "faro.dev/llm-max-num-seqs": str(SERVER["max_num_seqs"]),
                   "faro.dev/llm-max-num-batched-tokens": str(SERVER["max_num_batched_tokens"]),
                   "faro.dev/llm-model-load-s": "60", "faro.dev/max-replicas": "4"}
    body = deployment(name, namespace=NS, annotations=annotations)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["requests"]["nvidia.com/gpu"] = "1"
    container["resources"]["limits"]["nvidia.com/gpu"] = "1"  # extended resources: limits = requests
    return body


def line(plan, name: str):
    return next(t for t in plan.targets if t.deployment == name)


def test_faro_plans_live_vllm_deployments_from_their_own_metrics(live, kube_client, tmp_path) -> None:
    import argparse

    from faro.optimizer.commands import optimizer as command
    from kubeapi.objects import quota
    from kubernetes import client
    from pki import plan_api_certs
    from prometheus_client import CollectorRegistry
    from stack_helpers import PlanRecorder, desired, http_get, scrape_value

    servers, prom = live
    a, b = servers
    certs = plan_api_certs(tmp_path)
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    core.create_namespaced_resource_quota(NS, quota("gpus", {"requests.nvidia.com/gpu": str(GPU_QUOTA)},
                                                    namespace=NS, used={"requests.nvidia.com/gpu": "2"}))
    for server in servers:
        apps.create_namespaced_deployment(NS, llm_deployment(server.served_model_name))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([
        "--prometheus-url", prom.url, "--namespace", NS, "--no-leader-elect", "--identity", "vllm-0",
        "--grpc-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--metrics-preset", "vllm",
        "--interval-s", "20", "--reactive-interval-s", "5", "--history-minutes", "10", "--horizon", "3",
        *certs.server_flags(),
    ])
    # The source `faro optimizer` builds, with windows short enough for a test of a few minutes.
    metrics_source = PrometheusSource(PrometheusClient(prom.url), window_s=30.0, calibration_span_s=180.0,
                                      calibration_step_s=WINDOW_S)
    service = command.build_service(args, api_client=kube_client, metrics_source=metrics_source,
                                    registry=CollectorRegistry()).start()
    recorder = PlanRecorder(f"127.0.0.1:{service.grpc_port}", certs.client_tls())
    background = LoadGenerator(b.url, "chat-b", trace_requests(rate_rps=0.4, duration_s=len(PHASES) * PHASE_S + 90,
                                                                offset=7000), seed=9).start()
    plans, comparison = {}, {}
    try:
        for i, (label, rate) in enumerate(PHASES):
            load = LoadGenerator(a.url, "chat-a", trace_requests(rate_rps=rate, duration_s=PHASE_S, offset=1000 * i),
                                 seed=i, max_in_flight=128).start()
            time.sleep(PHASE_S - 5.0)
            plans[label] = recorder.wait(lambda p: p.kind == "solve" and len(p.targets) == 2, since=recorder.mark(),
                                         timeout_s=60, what=f"a solve at the end of the {label} phase")
            observed = service.loop.last_good[(NS, "chat-a")].metrics
            if label == "low":
                # Every quantity of the preset came back for both, through the loop's own source.
                for server in servers:
                    metrics = service.loop.last_good[(NS, server.served_model_name)].metrics
                    assert isinstance(metrics, JobMetrics) and metrics.llm is not None, metrics
                    for name in ("ttft_ms", "itl_ms", "tpot_ms", "kv_cache_usage", "num_waiting", "num_running",
                                 "token_mix", "windows"):
                        assert getattr(metrics.llm, name) is not None, (server.served_model_name, name)
                    assert metrics.llm_profile is not None and metrics.llm_fit is not None and metrics.llm_fit.ok
                comparison = {"rate_rps": rate, "measured": client_latency_ms(load.results, since_s=WARMUP_S),
                              "predicted": model_latency_ms(observed.llm_profile, observed.llm.token_mix, rate),
                              "ttft_overhead_ms": observed.llm_fit.ttft_overhead_ms}
            load.stop()

        low, high = plans["low"], plans["high"]
        for plan in (low, high):
            for name in ("chat-a", "chat-b"):
                t = line(plan, name)
                assert not t.held_reason and not t.stale, t
                # The plan carries the profile calibrated from the server's own metrics, and its fit error.
                assert t.llm_profile_source == "calibrated" and t.llm_kv_cache_tokens == 48 * 128, t
                assert t.llm_step_base_ms > 0 and 0 < t.llm_profile_fit_error < 1.0, t
        # Desired replicas follow chat-a's load (10 req/s is beyond one CPU replica: its queue grows).
        assert desired(high)["chat-a"] > desired(low)["chat-a"], (desired(low), desired(high))
        assert desired(low)["chat-a"] == 1

        # Model vs measured at the low phase (see P50_FACTOR); the front-end overhead the engine model
        # does not contain is added to TTFT (reported as ttft_overhead_ms by the calibration).
        measured, predicted = comparison["measured"], comparison["predicted"]
        print("model vs measured at", comparison["rate_rps"], "req/s:", json.dumps(comparison))
        assert measured["requests"] >= 20
        itl_ratio = predicted["itl_p50_ms"] / measured["itl_p50_ms"]
        assert 1 / P50_FACTOR <= itl_ratio <= P50_FACTOR, comparison
        # TTFT: the client's includes loopback HTTP and SSE time in a CPU-starved API-server process that
        # neither vLLM's metrics nor the model see (measured 185-197 ms against 54-171 ms of model + front
        # end in two runs), so the model is held to be a lower bound that is not off by a factor above 8.
        ttft_ratio = (predicted["ttft_p50_ms"] + comparison["ttft_overhead_ms"]) / measured["ttft_p50_ms"]
        assert 1 / 8 <= ttft_ratio <= 1.5, comparison

        # chat-b's server dies: reported (its plan line is stale: Prometheus keeps its history, its present
        # is gone) and held at its count, while chat-a is still planned from fresh metrics.
        before = desired(recorder.plans[-1])["chat-b"]
        b.kill()
        dead = recorder.wait(lambda p: len(p.targets) == 2 and line(p, "chat-b").stale, since=recorder.mark(),
                             timeout_s=120, what="chat-b reported stale after its server died")
        later = recorder.wait(lambda p: p.generation > dead.generation + 2 and line(p, "chat-b").stale,
                              since=recorder.mark(), timeout_s=60, what="chat-b still reported cycles later")
        for plan in (dead, later):
            assert desired(plan)["chat-b"] == before, plan  # held where it was, not scaled on a dead server
            assert not line(plan, "chat-a").stale and not line(plan, "chat-a").held_reason, plan
        _, text = http_get(f"http://127.0.0.1:{service.metrics_port}/metrics")
        assert (scrape_value(text, "faro_optimizer_llm_profile_fit_error", namespace=NS, deployment="chat-a")
                or 0) > 0
        # Every plan published over the run kept within the GPU quota.
        assert recorder.error is None
        over = [p.generation for p in recorder.plans if sum(desired(p).values()) > GPU_QUOTA]
        assert not over, f"plans over the {GPU_QUOTA}-GPU quota: {over}"
    finally:
        background.stop()
        recorder.close()
        service.stop()

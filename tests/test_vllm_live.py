"""Faro planning real vLLM Deployments from their own metrics: vLLM servers, a real Prometheus, the optimizer.

Two vLLM servers (CPU build, tiny random Llama; ``chat-a``, ``chat-b``; one engine core each) share the
module; a Prometheus scrapes them every second with the ``namespace`` label a Kubernetes pod scrape
adds. Load replays slices of the bundled Azure LLM conversation trace (token counts scaled for the
tiny model). What the preset reads must exist in the *installed* vLLM's exposition (a renamed series
fails here). Then the optimizer as ``faro optimizer`` builds it (informers on the test Kubernetes API
server, the real ``PrometheusSource`` with the ``vllm`` preset, the policy, the control loop, gRPC)
plans the two Deployments — ``nvidia.com/gpu`` requests under a GPU ResourceQuota, TTFT/ITL SLOs —
through a light and a heavy phase on ``chat-a`` and the death of ``chat-b``'s server. The heavy rate
is derived from the light phase's measurement on the machine running the test (one replica's speed
differs severalfold between a quiet and a loaded 2-core box), and the heavy plan is taken only once the
loop's arrival history holds a whole minute of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
from faro.optimizer.metrics.base import JobMetrics
from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource
from faro.optimizer.model.llm_latency import capacity_rps
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

GPU_QUOTA = 4  # requests.nvidia.com/gpu in the namespace; every replica asks for one GPU
TTFT_SLO_MS, ITL_SLO_MS = 1500.0, 150.0
SLO = {"faro.dev/slo-ttft-ms": f"{TTFT_SLO_MS:g}", "faro.dev/slo-itl-ms": f"{ITL_SLO_MS:g}",
       "faro.dev/slo-percentile": "90"}
# chat-a's light phase (chat-b stays at BACKGROUND_RPS throughout), with prompts shortened to a twelfth of
# the trace's (mean ~60 tokens) and outputs to a quarter (~30): a tiny CPU replica is prefill-bound (a CI box
# calibrated 3.9 ms per prompt token), and at the default quarter-length prompts 0.7 req/s sat near its
# modelled capacity, where Faro rightly took 2-3 replicas for the upper forecast. Short prompts keep the
# load light on a slow box while the steps still hold enough prefill for the fit to tell the step base
# from the per-token cost (at 0.4-0.55 req/s with long prompts the mean ITL was nearly all prefill, and the
# fitted step base came out ~0).
LOW_RPS, LOW_S, LOW_PROMPT_SCALE = 0.7, 60.0, 1 / 12
BACKGROUND_RPS = 0.4
# The heavy phase overloads one replica *on the machine the test runs on*: a fixed rate (10 req/s) did on
# a loaded 2-core box and was within one replica's capacity on a quiet one (CI: desired stayed 1). Its
# rate is OVERLOAD x an upper bound on one replica's throughput measured in the light phase (capped for
# the client's sake), with enough requests in flight that vLLM's own queue shows the backlog.
OVERLOAD, MAX_HIGH_RPS, HIGH_IN_FLIGHT = 3.0, 40.0, 256
WARMUP_S = 15.0  # the first seconds of a phase carry the previous phase's tail: left out of the measurement
# Model vs measured ITL p50 at the light phase: the stated bound. On this shared 2-core machine the engine's
# step time moves with the neighbours' load (ITL p50 at 0.5-2 req/s measured 14-63 ms at load averages
# 14-31 in one bench run), so the bound is a factor, not the 25 % target; with the profile calibrated over
# both phases the ratio was 0.97 in the run that introduced it (0.33-2.45 with light-phase-only profiles).
P50_FACTOR = 2.5


def saturating_rate_rps(itl_p50_ms: float, requests) -> float:
    """A request rate that overloads one replica, from the light phase's measured ITL p50: a replica
    decodes at most ``max_num_seqs`` tokens per engine step, and a step with a full batch (and prefill
    chunks) takes no less than the light phase's nearly empty ones, so one replica finishes at most
    ``max_num_seqs / (mean output tokens x ITL)`` requests per second."""
    mean_output = sum(r.output_tokens for r in requests) / len(requests)
    bound_rps = SERVER["max_num_seqs"] / (mean_output * itl_p50_ms / 1000.0)
    return min(OVERLOAD * bound_rps, MAX_HIGH_RPS)


def profile_ms(metrics: JobMetrics) -> list[float]:
    """The calibrated step costs: base, per sequence, per prompt token (ms)."""
    p = metrics.llm_profile
    return [p.step_base_ms, p.decode_ms_per_seq, p.prefill_ms_per_token]


def num_waiting(server) -> float:
    """vLLM's own queue length (``vllm:num_requests_waiting``), read from the server's ``/metrics``."""
    return sum(float(x.rsplit(" ", 1)[1]) for x in server.metrics_text().splitlines()
               if x.startswith("vllm:num_requests_waiting{"))


def minute_end_s(plan) -> float:
    """End of the last whole minute of arrival history the plan's forecast saw (the loop's clock)."""
    return math.floor(plan.created.ToNanoseconds() / 1e9 / 60.0) * 60.0


def llm_deployment(name: str) -> dict:
    annotations = {**SLO, "faro.dev/metrics-preset": "vllm", "faro.dev/model-name": name,
                   "faro.dev/llm-max-num-seqs": str(SERVER["max_num_seqs"]),
                   "faro.dev/llm-max-num-batched-tokens": str(SERVER["max_num_batched_tokens"]),
                   "faro.dev/llm-model-load-s": "60",
                   # the quota headroom is chat-a's: chat-b (background load) stays at one replica
                   "faro.dev/max-replicas": "4" if name == "chat-a" else "1"}
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
    background = LoadGenerator(b.url, "chat-b", trace_requests(rate_rps=BACKGROUND_RPS, duration_s=900.0,
                                                                offset=7000, prompt_scale=LOW_PROMPT_SCALE),
                               seed=9).start()
    loads: list[LoadGenerator] = []
    try:
        # Light phase: one replica is plenty.
        load = LoadGenerator(a.url, "chat-a", trace_requests(rate_rps=LOW_RPS, duration_s=LOW_S,
                                                                  prompt_scale=LOW_PROMPT_SCALE), seed=0).start()
        loads.append(load)
        time.sleep(LOW_S - 5.0)
        low = recorder.wait(lambda p: p.kind == "solve" and len(p.targets) == 2, since=recorder.mark(),
                            timeout_s=60, what="a solve at the end of the light phase")
        observed = service.loop.last_good[(NS, "chat-a")].metrics
        # Every quantity of the preset came back for both, through the loop's own source.
        for server in servers:
            metrics = service.loop.last_good[(NS, server.served_model_name)].metrics
            assert isinstance(metrics, JobMetrics) and metrics.llm is not None, metrics
            for name in ("ttft_ms", "itl_ms", "tpot_ms", "kv_cache_usage", "num_waiting", "num_running",
                         "token_mix", "windows"):
                assert getattr(metrics.llm, name) is not None, (server.served_model_name, name)
            assert metrics.llm_profile is not None and metrics.llm_fit is not None and metrics.llm_fit.ok
        light = {"rate_rps": LOW_RPS, "measured": client_latency_ms(load.results, since_s=WARMUP_S),
                 "desired": desired(low), "forecast_rps": line(low, "chat-a").forecast_rps,
                 "load": LOW_RPS / capacity_rps(observed.llm_profile, observed.llm.token_mix),
                 "ttft_overhead_ms": observed.llm_profile.ttft_overhead_ms, "profile": profile_ms(observed)}
        light_mix = observed.llm.token_mix
        print("light phase:", json.dumps(light), observed.llm_fit.summary)
        load.stop()

        # Heavy phase: several times what one replica can serve here, until a solve has seen a whole
        # minute of it (the forecast is built from whole minutes of arrivals).
        high_rps = saturating_rate_rps(light["measured"]["itl_p50_ms"], load.requests)
        started_s = time.time()
        load = LoadGenerator(a.url, "chat-a", trace_requests(rate_rps=high_rps, duration_s=200.0, offset=1000),
                             seed=1, max_in_flight=HIGH_IN_FLIGHT, max_duration_s=200.0).start()
        loads.append(load)
        time.sleep(20.0)
        if num_waiting(a) < SERVER["max_num_seqs"]:  # not overloaded after all (the machine sped up): double it
            loads.append(LoadGenerator(a.url, "chat-a", trace_requests(rate_rps=high_rps, duration_s=200.0,
                                                                       offset=3000),
                                       seed=2, max_in_flight=HIGH_IN_FLIGHT, max_duration_s=200.0).start())
            high_rps, started_s = 2 * high_rps, time.time()
        high = recorder.wait(lambda p: p.kind == "solve" and len(p.targets) == 2 and minute_end_s(p) - 60.0
                             >= started_s, since=recorder.mark(), timeout_s=150,
                             what="a solve over a whole minute of the heavy phase")
        observed = service.loop.last_good[(NS, "chat-a")].metrics
        heavy = {"rate_rps": high_rps, "waiting": observed.llm.num_waiting, "running": observed.llm.num_running,
                 "observed_rps": observed.rate_rps, "forecast_rps": line(high, "chat-a").forecast_rps,
                 "profile": profile_ms(observed)}
        print("heavy phase:", json.dumps(heavy), observed.llm_fit.summary)
        # The light phase alone (batch ~1) cannot split a step's cost between its base and the batch
        # (profile_fit holds the per-sequence cost at 0 then); by now the calibration span holds both phases'
        # windows, batches of 1 to max_num_seqs. That profile's step costs, with the light phase's front-end
        # overhead (a CPU-starved API server inflates it under the heavy load), model the light phase.
        profile = dataclasses.replace(observed.llm_profile, ttft_overhead_ms=light["ttft_overhead_ms"])
        measured, predicted = light["measured"], model_latency_ms(profile, light_mix, LOW_RPS)
        print("model vs measured at the light phase:", json.dumps({"measured": measured, "predicted": predicted,
                                                                   "load": LOW_RPS / capacity_rps(profile, light_mix)}))
        for load in loads:
            load.stop()

        for plan in (low, high):
            for name in ("chat-a", "chat-b"):
                t = line(plan, name)
                assert not t.held_reason and not t.stale, t
                # The plan carries the profile calibrated from the server's own metrics, and its fit error.
                assert t.llm_profile_source == "calibrated" and t.llm_kv_cache_tokens == 48 * 128, t
                assert t.llm_step_base_ms > 0 and 0 < t.llm_profile_fit_error < 1.0, t
        # The heavy phase did overload the replica (vLLM's own queue), and desired replicas follow.
        assert heavy["waiting"] >= SERVER["max_num_seqs"], heavy
        assert desired(low)["chat-a"] <= 2, (desired(low), line(low, "chat-a"))
        assert desired(high)["chat-a"] > desired(low)["chat-a"], (desired(low), desired(high), heavy)

        # Model vs measured at the light phase, a ballpark check (the accuracy target is the model's against
        # the token-level simulator, and docs/vllm.md's calibration bench): on 2 shared cores the client
        # runs beside the engines. ITL p50 model/measured seen 0.33-2.45 over runs.
        assert measured["requests"] >= 20
        itl_ratio = predicted["itl_p50_ms"] / measured["itl_p50_ms"]
        assert 1 / 4 <= itl_ratio <= P50_FACTOR, (measured, predicted, profile)
        # TTFT: the client's includes loopback HTTP and SSE time in a CPU-starved API-server process that
        # neither vLLM's metrics nor the model see (measured 185-197 ms against 54-171 ms of model + front end
        # in two runs), so the model may fall short by up to 8x; above, it may exceed the client's by up to
        # 4x (seen 1.6-2.6x near the modelled capacity with long prompts).
        ttft_ratio = predicted["ttft_p50_ms"] / measured["ttft_p50_ms"]
        assert 1 / 8 <= ttft_ratio <= 4.0, (measured, predicted, profile)

        # chat-b's server dies: reported (its plan line is stale: Prometheus keeps its history, its present
        # is gone) and held at its count, while chat-a is still planned from fresh metrics. The heavy phase's
        # CPU contention on the shared cores can push chat-b over its SLOs (and the reactive step then adds
        # a replica, rightly): the server killed is a healthy one, once its window is within its SLOs again.
        def calm() -> bool:
            obs = service.loop.last_good[(NS, "chat-b")].metrics.llm
            return (obs.ttft_ms is not None and obs.itl_ms is not None and obs.ttft_ms <= TTFT_SLO_MS
                    and obs.itl_ms <= ITL_SLO_MS)

        deadline = time.monotonic() + 120.0
        while not calm():
            assert time.monotonic() < deadline, service.loop.last_good[(NS, "chat-b")].metrics.llm
            time.sleep(1.0)
        settled = recorder.wait(lambda p: len(p.targets) == 2, since=recorder.mark(), timeout_s=30,
                                what="a plan from chat-b's calm window")
        before = desired(settled)["chat-b"]
        killed_at = recorder.mark()
        b.kill()
        dead = recorder.wait(lambda p: len(p.targets) == 2 and line(p, "chat-b").stale, since=recorder.mark(),
                             timeout_s=120, what="chat-b reported stale after its server died")
        later = recorder.wait(lambda p: p.generation > dead.generation + 2 and line(p, "chat-b").stale,
                              since=recorder.mark(), timeout_s=60, what="chat-b still reported cycles later")
        trail = [(p.kind, desired(p), line(p, "chat-b").stale, round(line(p, "chat-b").observed_latency_ms),
                  round(line(p, "chat-a").observed_latency_ms)) for p in recorder.plans[killed_at - 3:]]
        for plan in (dead, later):
            # held where it was, not scaled on a dead server
            assert desired(plan)["chat-b"] == before, (before, trail)
            assert not line(plan, "chat-a").stale and not line(plan, "chat-a").held_reason, plan
        _, text = http_get(f"http://127.0.0.1:{service.metrics_port}/metrics")
        assert (scrape_value(text, "faro_optimizer_llm_profile_fit_error", namespace=NS, deployment="chat-a")
                or 0) > 0
        # Every plan published over the run kept within the GPU quota.
        assert recorder.error is None
        over = [p.generation for p in recorder.plans if sum(desired(p).values()) > GPU_QUOTA]
        assert not over, f"plans over the {GPU_QUOTA}-GPU quota: {over}"
    finally:
        for load in (*loads, background):
            load.stop()
        recorder.close()
        service.stop()

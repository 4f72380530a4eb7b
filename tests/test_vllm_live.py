"""Real vLLM servers (CPU build, tiny random Llama) scraped by a real Prometheus, read through the ``vllm`` preset.

Two servers (``chat-a``, ``chat-b``; one engine core each) share the module; a Prometheus scrapes them
every second with the ``namespace`` label a Kubernetes pod scrape adds. Load replays slices of the
bundled Azure LLM conversation trace (token counts scaled for the tiny model). What the preset reads
must exist in the *installed* vLLM's exposition (a renamed series fails here), every quantity must come
back from Prometheus, the engine profile must calibrate from the live windows, and a killed server
must be reported for its Deployment while the other one is still read.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from faro.optimizer.metrics.base import DeploymentRef, JobMetrics, MetricsError
from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource
from prom_fixture import prometheus_servers
from vllm_fixture import LoadGenerator, exported_series, preset_series, trace_requests, vllm_servers

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


def ref(server) -> DeploymentRef:
    return DeploymentRef(NS, server.served_model_name, preset="vllm", percentile=99, model=server.served_model_name,
                         max_num_batched_tokens=SERVER["max_num_batched_tokens"])


def source(prom_url: str) -> PrometheusSource:
    return PrometheusSource(PrometheusClient(prom_url), window_s=30.0, calibration_span_s=120.0,
                            calibration_step_s=WINDOW_S)


def test_the_installed_vllm_exports_every_series_the_preset_reads(live) -> None:
    servers, _ = live
    LoadGenerator(servers[0].url, "chat-a", trace_requests(rate_rps=2.0, duration_s=3.0)).run()
    exported = exported_series(servers[0].metrics_text())
    from faro.optimizer.metrics.vllm import DEPRECATED

    missing = sorted(preset_series() - set(DEPRECATED) - exported)
    assert not missing, f"the installed vLLM does not export (renamed?): {missing}"


def test_the_preset_reads_both_live_servers_and_calibrates_their_profiles(live) -> None:
    servers, prom = live
    loads = [LoadGenerator(s.url, s.served_model_name, trace_requests(rate_rps=rate, duration_s=70.0, offset=i * 500),
                           seed=i).start()
             for i, (s, rate) in enumerate(zip(servers, (2.0, 1.0), strict=True))]
    time.sleep(60.0)  # observed while the load runs, as the optimizer does: six windows of traffic
    results = source(prom.url).observe([ref(s) for s in servers], now_s=time.time(), history_minutes=3)
    for load in loads:
        load.join()
    for server, load in zip(servers, loads, strict=True):
        assert sum(r.ok for r in load.results) >= 0.95 * len(load.results), [r.error for r in load.results][:3]
        result = results[ref(server).key]
        assert isinstance(result, JobMetrics), result
        assert result.has_rate and not result.stale
        llm = result.llm
        assert llm is not None and llm.token_mix is not None and llm.windows is not None
        for name in ("ttft_ms", "itl_ms", "kv_cache_usage", "num_waiting", "num_running"):
            assert getattr(llm, name) is not None, name
        sent = np.mean([r.spec.prompt_tokens for r in load.results])
        assert llm.token_mix.mean_prompt_tokens == pytest.approx(sent, rel=0.5)  # requests of the last 30 s only
        fit = result.llm_fit
        assert fit is not None and fit.ok, fit
        assert result.llm_profile is not None
        assert result.llm_profile.kv_cache_tokens == SERVER["num_gpu_blocks"] * 128  # from vllm:cache_config_info
        assert result.llm_profile.max_num_batched_tokens == SERVER["max_num_batched_tokens"]


def test_a_killed_server_is_reported_while_the_other_is_read(live) -> None:
    servers, prom = live
    load = LoadGenerator(servers[0].url, "chat-a", trace_requests(rate_rps=1.0, duration_s=40.0, offset=2000)).start()
    servers[1].kill()
    # Prometheus marks the dead target's series stale on its next failed scrape.
    prom.wait_for('count(vllm:num_requests_running{namespace="llm"}) == 1', timeout_s=30)
    time.sleep(35.0)  # past the 30 s window: no finished requests of b in it
    results = source(prom.url).observe([ref(s) for s in servers], now_s=time.time(), history_minutes=3)
    load.join()
    alive, dead = results[ref(servers[0]).key], results[ref(servers[1]).key]
    assert isinstance(alive, JobMetrics) and not alive.stale and alive.llm is not None
    # b's history is still in Prometheus, its present is gone: stale, with no current LLM readings.
    assert isinstance(dead, JobMetrics | MetricsError)
    if isinstance(dead, JobMetrics):
        assert dead.stale and any("stale" in n for n in dead.notes), dead
        assert dead.llm is not None and dead.llm.num_running is None and dead.llm.kv_cache_usage is None

"""The ``vllm`` metrics preset against recorded real vLLM ``/metrics`` samples, through a real Prometheus.

The fixtures in ``tests/fixtures/vllm`` were recorded from a real vLLM 0.32.0 server (CPU build, tiny
random Llama, ``tests/vllm_record.py``) under a load sweep: one complete exposition
(``metrics-full.txt``) and a scrape every 2 s (``sweep.jsonl.gz``). The sweep is written into a real
Prometheus's TSDB with promtool (stamped with a ``namespace`` label as a Kubernetes scrape job adds
it) and read back through ``PrometheusSource`` with the preset, exactly as the optimizer does.
"""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pytest
from faro.optimizer.metrics import vllm
from faro.optimizer.metrics.base import DeploymentRef, JobMetrics, MetricsError
from faro.optimizer.metrics.presets import VLLM
from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource
from faro.optimizer.model.profile_fit import fit_step_profile
from prom_fixture import prometheus_servers
from vllm_fixture import FIXTURES, exported_series, openmetrics, preset_series, recorded_scrapes

NS, NS_B = "llm", "llm-b"
TINY = DeploymentRef(NS, "chat", preset="vllm", percentile=99, model="tiny")
TINY_B = DeploymentRef(NS_B, "chat", preset="vllm", percentile=99, model="tiny")
OTHER_SHIFT_S = 80.0  # the NS_B copy of the sweep runs this much earlier: two phases on at the same instant
SWEEP = json.loads((FIXTURES / "sweep.json").read_text())
WINDOW_S = 10.0


def test_every_series_the_preset_reads_is_in_a_real_vllm_exposition() -> None:
    exported = exported_series((FIXTURES / "metrics-full.txt").read_text())
    wanted = preset_series() - set(vllm.DEPRECATED)
    assert len(wanted) >= 12
    missing = sorted(wanted - exported)
    assert not missing, f"the vllm preset reads series a real vLLM 0.32 does not export (renamed?): {missing}"
    # The fallbacks are what older servers exported, not what this one does.
    assert not set(vllm.DEPRECATED) & exported
    assert re.search(r'vllm:cache_config_info\{[^}]*num_gpu_blocks="64"', (FIXTURES / "metrics-full.txt").read_text())


def test_the_name_check_fails_for_a_renamed_series() -> None:
    exported = exported_series((FIXTURES / "metrics-full.txt").read_text())
    renamed = VLLM.templates["running"].replace("vllm:num_requests_running", "vllm:num_requests_in_batch")
    names = {n for n in re.findall(r"vllm:[a-z_:]+", renamed)}
    assert names - exported == {"vllm:num_requests_in_batch"}


# ---------------------------------------------------------------------------------- through Prometheus


@pytest.fixture(scope="module")
def recorded():
    """A real Prometheus holding the recorded sweep, shifted to end 60 s ago, labelled as a Kubernetes pod
    scrape labels it (``namespace``; ``instance`` = the target); yields (url, shift_s). A second copy,
    ``OTHER_SHIFT_S`` earlier, is another server of the same model in namespace ``NS_B``."""
    scrapes = recorded_scrapes()
    shift_s = time.time() - 60.0 - scrapes[-1][0]
    with prometheus_servers() as start:
        labels = {"namespace": NS, "instance": "10.0.0.7:8000"}
        other = (shift_s - OTHER_SHIFT_S, {"namespace": NS_B, "instance": "10.0.0.8:8000"})
        server = start([], backfill=openmetrics(scrapes, shift_s=shift_s, labels=labels, copies=[other]))
        server.wait_for('count(vllm:num_requests_running{namespace="llm"})', timeout_s=60)
        yield server.url, shift_s


def phase_time(index: int, shift_s: float, *, into_s: float) -> float:
    """Wall time (shifted) ``into_s`` seconds into the recorded sweep's phase ``index``."""
    return SWEEP["started_s"] + SWEEP["phases"][index]["start_s"] + into_s + shift_s


def source(url: str, **options) -> PrometheusSource:
    return PrometheusSource(PrometheusClient(url), window_s=WINDOW_S, calibration_span_s=0.0, **options)


def test_the_preset_reads_every_quantity_of_a_busy_vllm(recorded) -> None:
    url, shift_s = recorded
    phase = SWEEP["phases"][2]  # 2 req/s, 64 prompt tokens, 48 output tokens
    now_s = phase_time(2, shift_s, into_s=28.0)
    result = source(url).observe([TINY], now_s=now_s, history_minutes=3)[TINY.key]
    assert isinstance(result, JobMetrics), result
    assert not result.stale and not result.notes, result.notes
    # Finished requests in a 10 s window: the engine on a shared CPU finishes them in bursts.
    assert result.rate_rps == pytest.approx(phase["rate_rps"], rel=0.5)
    assert result.latency_ms is not None and result.latency_ms > 0  # p99 TTFT
    assert result.mean_latency_ms is not None and 0 < result.mean_latency_ms <= result.latency_ms
    llm = result.llm
    assert llm is not None
    assert llm.ttft_ms == result.latency_ms
    assert llm.itl_ms is not None and llm.itl_ms > 0
    assert llm.kv_cache_usage is not None and 0 <= llm.kv_cache_usage <= 1
    assert llm.num_running is not None and llm.num_waiting is not None
    mix = llm.token_mix
    assert mix is not None
    assert mix.mean_prompt_tokens == pytest.approx(phase["prompt_tokens"], rel=0.05)
    assert mix.mean_output_tokens == pytest.approx(phase["output_tokens"], rel=0.05)
    # The quantile samples stay inside the buckets the requests fell in (50 < 64 ≤ 100, 20 < 48 ≤ 50).
    assert mix.prompt_tokens.min() >= 30 and mix.prompt_tokens.max() <= 110
    observation = result.to_observation()
    assert observation.llm is llm


def test_the_token_mix_follows_the_requests_of_the_window(recorded) -> None:
    url, shift_s = recorded
    phase = SWEEP["phases"][5]  # long prompts: 900 tokens, 16 out
    result = source(url).observe([TINY], now_s=phase_time(5, shift_s, into_s=25.0), history_minutes=1)[TINY.key]
    assert isinstance(result, JobMetrics) and result.llm is not None and result.llm.token_mix is not None
    assert result.llm.token_mix.mean_prompt_tokens == pytest.approx(phase["prompt_tokens"], rel=0.05)
    assert result.llm.token_mix.mean_output_tokens == pytest.approx(phase["output_tokens"], rel=0.05)


def test_a_saturated_server_shows_its_queue_and_full_batch(recorded) -> None:
    url, shift_s = recorded
    last = len(SWEEP["phases"]) - 1  # 8 req/s: about twice what 8 sequences decode
    result = source(url).observe([TINY], now_s=phase_time(last, shift_s, into_s=19.0), history_minutes=1)[TINY.key]
    assert isinstance(result, JobMetrics) and result.llm is not None
    assert result.llm.num_waiting is not None and result.llm.num_waiting >= 5
    assert result.llm.num_running is not None and 1 <= result.llm.num_running <= SWEEP["server"]["max_num_seqs"]
    assert result.llm.ttft_ms is not None and result.llm.ttft_ms > 1000  # seconds in the queue


def test_a_model_without_series_is_missing_while_the_others_are_read(recorded) -> None:
    url, shift_s = recorded
    absent = DeploymentRef(NS, "other", preset="vllm", model="no-such-model")
    wrong_namespace = DeploymentRef("elsewhere", "chat", preset="vllm", model="tiny")
    results = source(url, batch_min=0).observe([TINY, absent, wrong_namespace],
                                               now_s=phase_time(3, shift_s, into_s=20.0), history_minutes=2)
    assert isinstance(results[TINY.key], JobMetrics)
    for ref in (absent, wrong_namespace):
        error = results[ref.key]
        assert isinstance(error, MetricsError) and error.kind == "missing" and error.quantity == "rate", error
        assert ref.name in error.reason and "vllm:request_success_total" in error.query


def test_a_server_that_stopped_exporting_is_reported_stale(recorded) -> None:
    url, shift_s = recorded
    end_s = recorded_scrapes()[-1][0] + shift_s
    result = source(url).observe([TINY], now_s=end_s + 40.0, history_minutes=3)[TINY.key]
    assert isinstance(result, JobMetrics) and result.stale, result
    assert any("stale" in note for note in result.notes)


def test_the_calibration_windows_come_from_the_same_series(recorded) -> None:
    url, shift_s = recorded
    scrapes = recorded_scrapes()
    span_s = math.floor((scrapes[-1][0] - scrapes[0][0]) / WINDOW_S) * WINDOW_S
    calibrating = PrometheusSource(PrometheusClient(url), window_s=WINDOW_S, calibration_span_s=span_s,
                                   calibration_step_s=WINDOW_S)
    result = calibrating.observe([TINY], now_s=scrapes[-1][0] + shift_s, history_minutes=1)[TINY.key]
    assert isinstance(result, JobMetrics) and result.llm is not None
    windows = result.llm.windows
    assert windows is not None and windows.size == span_s / WINDOW_S
    assert windows.kv_cache_tokens == 64 * 128  # --num-gpu-blocks-override 64, block size 128 on CPU
    for name in vllm.CALIBRATION_SERIES:
        values = getattr(windows, name)
        assert np.isfinite(values).sum() >= windows.size // 2, f"{name}: {values}"
    assert np.nanmax(windows.batch) == pytest.approx(SWEEP["server"]["max_num_seqs"], rel=0.05)
    assert np.nanmax(windows.prompt_tokens) == pytest.approx(900, rel=0.02)

    fit = fit_step_profile(windows, max_num_batched_tokens=SWEEP["server"]["max_num_batched_tokens"])
    assert fit.ok, fit
    assert fit.itl_rows >= 20 and fit.prefill_rows >= 20
    # Plausible for this model on one CPU core (measured ≈ 18 ms alone, ≈ 0.1-0.3 ms per prompt token);
    # the recording was made on a machine shared with other jobs, hence the loose error bound.
    assert 3.0 <= fit.step_base_ms <= 60.0
    assert 0.0 < fit.decode_ms_per_seq <= 15.0
    assert 0.02 <= fit.prefill_ms_per_token <= 1.0
    assert fit.error < 0.5
    assert fit.kv_cache_tokens == 8192
    assert 0.0 <= fit.ttft_overhead_ms < 200.0

    # The source calibrates from the same windows: the profile the view pins annotations over.
    assert result.llm_profile is not None and result.llm_fit is not None and result.llm_fit.ok
    assert result.llm_profile.kv_cache_tokens == 8192
    assert result.llm_profile.step_base_ms == pytest.approx(result.llm_fit.step_base_ms)


def counting_client(url: str) -> PrometheusClient:
    """A client whose ``asked`` lists every query it sent."""
    from urllib.parse import parse_qs

    from faro.optimizer.http import urllib_post

    asked: list[str] = []

    def transport(endpoint, body, headers, timeout_s):
        asked.append(parse_qs(body.decode())["query"][0])
        return urllib_post(endpoint, body, headers, timeout_s)

    client = PrometheusClient(url, timeout_s=10, transport=transport)
    client.asked = asked  # type: ignore[attr-defined]
    return client


def test_vllm_deployments_get_from_fleet_wide_queries_what_their_own_queries_give(recorded) -> None:
    url, shift_s = recorded
    absent = DeploymentRef(NS, "other", preset="vllm", model="no-such-model")
    refs = [TINY, TINY_B, absent]
    now_s = phase_time(4, shift_s, into_s=25.0)  # NS_B's copy is then in phase 6
    results, asked = {}, {}
    for name, batch_min in (("batched", 2), ("alone", 0)):
        client = counting_client(url)
        source = PrometheusSource(client, window_s=WINDOW_S, calibration_span_s=240.0, calibration_step_s=WINDOW_S,
                                  batch_min=batch_min)
        results[name], asked[name] = source.observe(refs, now_s=now_s, history_minutes=3), client.asked
    for ref in (TINY, TINY_B):
        a, b = results["batched"][ref.key], results["alone"][ref.key]
        assert isinstance(a, JobMetrics) and isinstance(b, JobMetrics), (a, b)
        assert a.llm is not None and b.llm is not None and a.llm.windows is not None
        for quantity in ("rate_rps", "latency_ms", "mean_latency_ms", "queue_length"):
            assert getattr(a, quantity) == pytest.approx(getattr(b, quantity), rel=1e-9, nan_ok=True), quantity
        assert a.rate_history_rpm == pytest.approx(b.rate_history_rpm, rel=1e-9, nan_ok=True)
        for quantity in ("ttft_ms", "itl_ms", "tpot_ms", "kv_cache_usage", "num_waiting", "num_running"):
            alone = getattr(b.llm, quantity)  # None where the recording has no such series (TPOT: vLLM 0.32)
            assert getattr(a.llm, quantity) == (None if alone is None else pytest.approx(alone, rel=1e-9)), quantity
        assert a.llm.token_mix.mean_prompt_tokens == pytest.approx(b.llm.token_mix.mean_prompt_tokens, rel=1e-9)
        for field in ("itl_ms", "batch", "prefill_per_step", "prefill_ms", "prompt_tokens", "ttft_ms", "queue_ms"):
            np.testing.assert_allclose(getattr(a.llm.windows, field), getattr(b.llm.windows, field), rtol=1e-9,
                                       err_msg=field)
        assert a.llm.windows.kv_cache_tokens == b.llm.windows.kv_cache_tokens == 64 * 128
        assert a.llm_profile == b.llm_profile and a.llm_profile is not None
    # Split by Deployment: the two servers are in different phases of the sweep at this instant.
    mine, other = results["batched"][TINY.key], results["batched"][TINY_B.key]
    assert mine.llm.token_mix.mean_prompt_tokens == pytest.approx(SWEEP["phases"][4]["prompt_tokens"], rel=0.05)
    assert other.llm.token_mix.mean_prompt_tokens == pytest.approx(SWEEP["phases"][6]["prompt_tokens"], rel=0.05)
    for name in ("batched", "alone"):
        error = results[name][absent.key]
        assert isinstance(error, MetricsError) and error.kind == "missing", error
    # One query per quantity for the fleet, not one per Deployment: the instant quantities (latency and
    # ttft are the same query), the per-minute history, the calibration range and the KV size.
    assert len(asked["alone"]) >= 3 * (len(VLLM.templates) + 1)
    assert len(asked["batched"]) == len(VLLM.templates) - 1 + 3, asked["batched"]
    assert all('namespace=~"' in q for q in asked["batched"]), asked["batched"]


def test_faro_optimizer_takes_the_vllm_preset_as_its_default() -> None:
    import argparse

    from faro.optimizer.commands import optimizer as command
    from faro.optimizer.service.config import ServiceConfig

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--metrics-preset", "vllm", "--prometheus-url", "http://127.0.0.1:9090"])
    assert ServiceConfig(metrics_preset=args.metrics_preset).metrics_preset == "vllm"
    with pytest.raises(Exception, match="must be one of"):
        ServiceConfig(metrics_preset="tgi")


def test_faro_optimizer_flags_set_the_calibration_span_and_window(monkeypatch) -> None:
    import argparse

    from faro.optimizer.cli import HelpFormatter
    from faro.optimizer.commands import optimizer as command
    from faro.optimizer.errors import InvalidInputError

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    command.add_arguments(parser)
    base = ["--metrics-preset", "vllm", "--prometheus-url", "http://127.0.0.1:9090"]
    default = command._metrics_source(parser.parse_args(base))
    assert (default.calibration_span_s, default.calibration_step_s) == (900.0, 30.0)
    chosen = command._metrics_source(parser.parse_args([*base, "--calibration-span-s", "600",
                                                        "--calibration-window-s", "15"]))
    assert (chosen.calibration_span_s, chosen.calibration_step_s) == (600.0, 15.0)
    monkeypatch.setenv("FARO_CALIBRATION_SPAN_S", "0")  # the chart's env form; 0 turns calibration off
    fresh = argparse.ArgumentParser()
    command.add_arguments(fresh)
    assert command._metrics_source(fresh.parse_args(base)).calibration_span_s == 0.0
    for flags, named in ((["--calibration-window-s", "0"], "--calibration-window-s"),
                         (["--calibration-span-s", "-5"], "--calibration-span-s"),
                         (["--calibration-span-s", "40000", "--calibration-window-s", "30"], "--calibration-span-s")):
        with pytest.raises(InvalidInputError) as error:
            command._metrics_source(parser.parse_args([*base, *flags]))
        assert error.value.where == named
    span = next(a for a in parser._actions if "--calibration-span-s" in a.option_strings)
    assert parser._get_formatter()._get_help_string(span).endswith("; default: 900)")  # the shared formatter

"""The Prometheus metrics source against a real Prometheus scraping a test exporter (and a fake transport
for answers a real Prometheus will not give on demand)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.metrics import (
    DeploymentRef,
    JobMetrics,
    MetricsError,
    PrometheusClient,
    PrometheusSource,
)
from faro.optimizer.metrics.presets import GENERIC, RAY_SERVE, Preset, render
from prom_fixture import (
    PrometheusServer,
    TrafficExporter,
    free_port,
    openmetrics_counter,
    prometheus_servers,
    running_exporter,
)

WINDOW_S = 5.0  # short windows: the exporter has only seconds of history in these tests

# ---------------------------------------------------------------------------------- real Prometheus

RESNET = DeploymentRef("team-a", "resnet", percentile=99)
BERT = DeploymentRef("team-b", "bert", percentile=90)


@dataclass(frozen=True)
class Scraped:
    prometheus: PrometheusServer
    exporter: TrafficExporter

    def source(self, **options) -> PrometheusSource:
        return PrometheusSource(PrometheusClient(self.prometheus.url, timeout_s=10), window_s=WINDOW_S, **options)


@pytest.fixture(scope="module")
def scraped() -> Iterator[Scraped]:
    """One Prometheus scraping one exporter for the whole module (startup and a full window cost seconds);
    every test uses its own Deployments, so they do not disturb each other."""
    with running_exporter() as exporter, prometheus_servers() as start:
        # RESNET: half the requests within 50 ms, 90% within 100 ms, all within 250 ms: p99 interpolates
        # to 100 + 150 × (0.99 − 0.9)/0.1 = 235 ms.
        exporter.set_traffic(
            "team-a",
            "resnet",
            rate_rps=20.0,
            latency_fractions={0.05: 0.5, 0.1: 0.9, 0.25: 1.0},
            mean_latency_ms=80.0,
            processing_ms=30.0,
            queue_length=3,
        )
        exporter.set_traffic("team-b", "bert", rate_rps=4.0, latency_fractions={0.01: 1.0}, processing_ms=5.0)
        exporter.set_traffic("team-c", "going-away", rate_rps=10.0)
        prometheus = start([exporter.target])
        # Wait until Prometheus holds more than a full window of samples.
        prometheus.wait_for(
            f'count_over_time(http_requests_total{{deployment="resnet"}}[{WINDOW_S + 3:g}s]) >= {WINDOW_S + 2:g}',
            timeout_s=90,
        )
        yield Scraped(prometheus, exporter)


@pytest.mark.prometheus
def test_rate_latency_quantile_processing_time_and_queue_match_the_driven_traffic(scraped: Scraped) -> None:
    result = scraped.source().observe([RESNET, BERT], now_s=time.time(), history_minutes=3)

    a, b = result[RESNET.key], result[BERT.key]
    assert isinstance(a, JobMetrics), a
    assert isinstance(b, JobMetrics), b
    assert a.rate_rps == pytest.approx(20.0, rel=0.1)
    assert a.latency_ms == pytest.approx(235.0, rel=0.02)
    assert a.mean_latency_ms == pytest.approx(80.0, rel=0.02)
    assert a.processing_time_ms == pytest.approx(30.0, rel=0.02)
    assert a.queue_length == 3
    assert a.cpu_utilization is None  # no cAdvisor here: optional, not an error
    assert not a.stale
    assert len(a.rate_history_rpm) == 3
    assert b.rate_rps == pytest.approx(4.0, rel=0.1)
    assert b.latency_ms == pytest.approx(9.5, rel=0.02)  # all in (5 ms, 10 ms]: p90 at 5 + 0.9 × 5
    assert b.processing_time_ms == pytest.approx(5.0, rel=0.02)


@pytest.mark.prometheus
def test_a_deployment_without_series_gets_an_error_and_the_others_are_still_observed(scraped: Scraped) -> None:
    absent = DeploymentRef("team-a", "no-such-model")

    result = scraped.source().observe([absent, RESNET], now_s=time.time(), history_minutes=2)

    assert isinstance(result[RESNET.key], JobMetrics)
    error = result[absent.key]
    assert isinstance(error, MetricsError)
    assert error.kind == "missing" and error.quantity == "rate"
    assert "team-a/no-such-model" in error.reason and "http_requests_total" in error.reason


@pytest.mark.prometheus
def test_a_series_that_disappears_is_reported_not_raised(scraped: Scraped) -> None:
    ref = DeploymentRef("team-c", "going-away")
    scraped.exporter.remove("team-c", "going-away")
    # Prometheus writes staleness markers on the next scrape; then the window empties.
    scraped.prometheus.wait_for('http_requests_total{deployment="going-away"}', predicate=lambda r: not r, timeout_s=60)
    time.sleep(WINDOW_S + 1)

    result = scraped.source().observe([ref, RESNET], now_s=time.time(), history_minutes=2)

    # If a minute boundary fell inside the traffic, the history has data and the job is stale;
    # otherwise nothing is left at all and it is missing. Either way: reported, never raised.
    gone = result[ref.key]
    if isinstance(gone, JobMetrics):
        assert gone.stale and gone.rate_rps is None and gone.latency_ms is None
    else:
        assert isinstance(gone, MetricsError) and gone.kind == "missing"
    assert isinstance(result[RESNET.key], JobMetrics)


@pytest.mark.prometheus
def test_an_override_annotation_replaces_the_preset_query(scraped: Scraped) -> None:
    ref = DeploymentRef.from_annotations(
        "team-a",
        "resnet",
        {
            "faro.dev/promql-queue": 'sum(model_queue_length{deployment="${deployment}"}) * 10',
            "faro.dev/promql-latency": "vector(42)",
        },
    )

    result = scraped.source().observe([ref], now_s=time.time(), history_minutes=1)[ref.key]

    assert isinstance(result, JobMetrics), result
    assert result.queue_length == 30
    assert result.latency_ms == 42


@pytest.mark.prometheus
def test_a_bad_override_is_an_invalid_query_error_for_that_deployment_only(scraped: Scraped) -> None:
    bad = DeploymentRef("team-b", "bert", overrides={"rate": "sum(rate(http_requests_total[5s]"})

    result = scraped.source(max_workers=1).observe([RESNET, bad], now_s=time.time(), history_minutes=1)

    assert isinstance(result[RESNET.key], JobMetrics)
    error = result[bad.key]
    assert isinstance(error, MetricsError) and error.kind == "invalid_query" and not error.transient


@pytest.mark.prometheus
def test_per_minute_history_is_the_increase_of_each_completed_minute_and_stops_being_fresh(
    prometheus_factory,
) -> None:
    # Backfill 8 minutes of a counter (15 s samples) ending two minutes before the current minute.
    minute_s = 60.0
    now_s = time.time()
    last_minute_end_s = math.floor(now_s / minute_s) * minute_s
    counts_per_minute = [120.0, 240.0, 60.0, 0.0, 300.0, 180.0, 90.0, 30.0]  # oldest first
    first_s = last_minute_end_s - minute_s * (len(counts_per_minute) + 2)
    points, total = [(first_s, 0.0)], 0.0
    for i, count in enumerate(counts_per_minute):
        for quarter in range(1, 5):
            points.append((first_s + i * minute_s + quarter * 15, total + count * quarter / 4))
        total += count
    labels = {"namespace": "hist", "deployment": "model"}
    prometheus = prometheus_factory([], backfill=openmetrics_counter("http_requests", labels, points))
    ref = DeploymentRef("hist", "model")

    result = PrometheusSource(PrometheusClient(prometheus.url), window_s=WINDOW_S).observe(
        [ref], now_s=now_s, history_minutes=6
    )[ref.key]

    assert isinstance(result, JobMetrics), result
    # Minutes ending 5..0 minutes before the last whole minute: the last four backfilled, then two empty.
    assert result.rate_history_rpm[:4] == pytest.approx(counts_per_minute[-4:], abs=1e-6)
    assert all(math.isnan(v) for v in result.rate_history_rpm[4:])
    assert result.stale and result.rate_rps is None
    assert result.to_observation().rate_history_rpm == result.rate_history_rpm


@pytest.mark.prometheus
def test_prometheus_stopped_gives_unavailable_errors_for_every_deployment_without_raising(prometheus_factory) -> None:
    prometheus = prometheus_factory([])
    refs = [DeploymentRef("team-a", "resnet"), DeploymentRef("team-b", "bert", preset="ray-serve")]
    source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=2), window_s=WINDOW_S)
    prometheus.stop()

    result = source.observe(refs, now_s=time.time(), history_minutes=3)

    assert set(result) == {r.key for r in refs}
    for ref in refs:
        error = result[ref.key]
        assert isinstance(error, MetricsError) and error.kind == "unavailable" and error.transient
        assert f"{ref.namespace}/{ref.name}" in error.reason


# ------------------------------------------------------------------------------- fake transport


def fake_transport(answers: dict[str, tuple[int, dict]]):
    """Answers by API path; records the queries it was asked."""
    asked: list[tuple[str, str]] = []

    def transport(url, body, headers, timeout_s):
        from urllib.parse import parse_qs

        path = url.split("127.0.0.1:9", 1)[1]
        asked.append((path, parse_qs(body.decode())["query"][0]))
        status, answer = answers[path]
        return status, json.dumps(answer).encode()

    transport.asked = asked
    return transport


def vector(*values: float) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"i": str(i)}, "value": [0, str(v)]} for i, v in enumerate(values)],
        },
    }


def matrix(points: list[tuple[float, float]]) -> dict:
    result = [{"metric": {}, "values": [[t, str(v)] for t, v in points]}] if points else []
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_history_has_one_value_per_completed_minute_with_nan_for_minutes_prometheus_has_no_point_for() -> None:
    now_s = 6000.0 + 17  # 17 s into a minute: the last completed minute ends at 6000
    transport = fake_transport(
        {
            "/api/v1/query_range": (200, matrix([(5820.0, 1.0), (5940.0, 2.5), (6000.0, 0.5)])),
            "/api/v1/query": (200, vector(3.0)),
        }
    )
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport), max_workers=1)

    result = source.observe([DeploymentRef("ns", "m")], now_s=now_s, history_minutes=4)[("ns", "m")]

    assert isinstance(result, JobMetrics)
    assert result.rate_history_rpm[0] == 60.0 and math.isnan(result.rate_history_rpm[1])
    assert result.rate_history_rpm[2:] == (150.0, 30.0)
    assert "increase(http_requests_total" in transport.asked[0][1] and "[60s]" in transport.asked[0][1]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        pytest.param(400, "invalid_query", id="bad-promql-400"),
        pytest.param(422, "invalid_query", id="unprocessable-422"),
        pytest.param(503, "unavailable", id="overloaded-503"),
    ],
)
def test_http_errors_become_per_deployment_errors_of_the_right_kind(status: int, kind: str) -> None:
    answer = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    transport = fake_transport({"/api/v1/query_range": (status, answer), "/api/v1/query": (status, answer)})
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport))

    result = source.observe([DeploymentRef("ns", "m")], now_s=100.0, history_minutes=1)[("ns", "m")]

    assert isinstance(result, MetricsError) and result.kind == kind


def test_several_series_from_the_rate_query_is_a_bad_result_not_a_silent_sum() -> None:
    transport = fake_transport(
        {"/api/v1/query_range": (200, matrix([(60.0, 1.0)])), "/api/v1/query": (200, vector(1.0, 2.0))}
    )
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport))

    result = source.observe([DeploymentRef("ns", "m")], now_s=61.0, history_minutes=1)[("ns", "m")]

    assert isinstance(result, MetricsError) and result.kind == "bad_result" and "sum" in result.reason


def test_an_unreachable_port_is_unavailable_within_the_timeout() -> None:
    source = PrometheusSource(PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout_s=2))
    started = time.monotonic()
    result = source.observe([DeploymentRef("ns", "m")], now_s=time.time(), history_minutes=1)[("ns", "m")]
    assert isinstance(result, MetricsError) and result.kind == "unavailable"
    # A refused connection fails at once; 30 s (15x the client timeout) only catches a hang, never the load
    # of a shared 2-core machine.
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- presets and annotations


def test_annotations_select_preset_overrides_and_ray_names() -> None:
    ref = DeploymentRef.from_annotations(
        "team-a",
        "resnet",
        {
            "faro.dev/metrics-preset": "ray-serve",
            "faro.dev/ray-app": "vision",
            "faro.dev/ray-deployment": "ResNet",
            "faro.dev/promql-processing-time": "vector(12)",
        },
        percentile=95,
    )
    assert (ref.preset, ref.app_label, ref.deployment_label) == ("ray-serve", "vision", "ResNet")
    assert ref.overrides == {"processing_time": "vector(12)"}
    rate = render(RAY_SERVE.templates["rate"], ref, window_s=30)
    assert rate == (
        'sum(increase(ray_serve_num_router_requests_total{application="vision",deployment="ResNet"}[30s])) / 30'
    )
    assert "histogram_quantile(0.95," in render(RAY_SERVE.templates["latency"], ref, window_s=30)


def test_without_ray_annotations_namespace_is_the_app_and_name_the_deployment() -> None:
    ref = DeploymentRef("shop", "ranker", preset="ray-serve")
    assert 'application="shop",deployment="ranker"' in render(RAY_SERVE.templates["queue"], ref, window_s=60)


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        pytest.param({"faro.dev/metrics-preset": "datadog"}, "faro.dev/metrics-preset", id="unknown-preset"),
        pytest.param({"faro.dev/promql-rate": "  "}, "faro.dev/promql-rate", id="empty-override"),
    ],
)
def test_bad_annotations_name_the_deployment_and_the_annotation(annotations: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        DeploymentRef.from_annotations("team-a", "resnet", annotations)
    assert "team-a/resnet" in str(caught.value) and field in str(caught.value)


def test_label_values_are_escaped_for_promql_strings() -> None:
    ref = DeploymentRef('we"ird', "a.b")
    text = render(GENERIC.templates["cpu"], ref, window_s=60)
    assert 'namespace="we\\"ird"' in text and 'pod=~"a\\\\.b-' in text


def test_a_preset_with_an_unknown_template_variable_is_rejected_at_construction() -> None:
    with pytest.raises(InvalidInputError, match="bad template variable"):
        Preset(name="broken", templates={"rate": 'sum(rate(x{pod="${pod}"}[1m]))'})


# ------------------------------------------------------------------------------------- batched path


def counting(transport):
    """Wrap a transport to record every query it sends."""
    asked: list[str] = []

    def wrapped(url, body, headers, timeout_s):
        from urllib.parse import parse_qs

        asked.append(parse_qs(body.decode())["query"][0])
        return transport(url, body, headers, timeout_s)

    wrapped.asked = asked
    return wrapped


@pytest.mark.prometheus
def test_deployments_sharing_a_preset_get_from_one_query_per_quantity_what_their_own_queries_give(
    scraped: Scraped,
) -> None:
    from faro.optimizer.http import urllib_post as urllib_transport

    absent = DeploymentRef("team-a", "no-such-model")
    override = DeploymentRef.from_annotations(
        "team-a", "resnet-x10", {"faro.dev/promql-rate": 'sum(rate(http_requests_total{deployment="resnet"}[5s])) * 10'}
    )
    refs = [RESNET, BERT, absent, override]
    now_s = time.time() - 1.0
    # Both sources evaluate this instant: wait until Prometheus has ingested a scrape after it, or one
    # source could see a sample the other did not.
    scraped.prometheus.wait_for(f'timestamp(http_requests_total{{deployment="resnet"}}) > {now_s + 0.5}', timeout_s=30)
    sources = {}
    for name, batch_min in (("batched", 2), ("alone", 0)):
        transport = counting(urllib_transport)
        client = PrometheusClient(scraped.prometheus.url, timeout_s=10, transport=transport)
        sources[name] = (PrometheusSource(client, window_s=WINDOW_S, batch_min=batch_min), transport)
    batched = sources["batched"][0].observe(refs, now_s=now_s, history_minutes=3)
    alone = sources["alone"][0].observe(refs, now_s=now_s, history_minutes=3)

    for ref in (RESNET, BERT, override):
        a, b = batched[ref.key], alone[ref.key]
        assert isinstance(a, JobMetrics) and isinstance(b, JobMetrics), (a, b)
        for quantity in ("rate_rps", "latency_ms", "mean_latency_ms", "processing_time_ms", "queue_length"):
            mine, theirs = getattr(a, quantity), getattr(b, quantity)
            if theirs is None:  # a quantity without a series is None both ways
                assert mine is None, (ref, quantity, mine)
            else:
                assert mine == pytest.approx(theirs, rel=1e-9, nan_ok=True), (ref, quantity)
        assert a.rate_history_rpm == pytest.approx(b.rate_history_rpm, rel=1e-9, nan_ok=True)
    assert batched[RESNET.key].rate_rps == pytest.approx(20.0, rel=0.1)
    assert batched[override.key].rate_rps == pytest.approx(200.0, rel=0.1)  # its own query, not the batch
    error = batched[absent.key]
    assert isinstance(error, MetricsError) and error.kind == "missing" and "team-a/no-such-model" in error.reason
    asked_batched, asked_alone = sources["batched"][1].asked, sources["alone"][1].asked
    assert sum("sum by (namespace, deployment)" in q for q in asked_batched) >= 5
    assert len(asked_batched) < len(asked_alone) / 2


@pytest.mark.prometheus
def test_a_stopped_prometheus_is_each_batched_deployments_unavailable_error(prometheus_factory) -> None:
    prometheus = prometheus_factory([])
    refs = [DeploymentRef("team-a", f"model-{i}") for i in range(5)]
    source = PrometheusSource(PrometheusClient(prometheus.url, timeout_s=2), window_s=WINDOW_S)
    prometheus.stop()

    result = source.observe(refs, now_s=time.time(), history_minutes=3)

    for ref in refs:
        error = result[ref.key]
        assert isinstance(error, MetricsError) and error.kind == "unavailable" and error.transient
        assert f"{ref.namespace}/{ref.name}" in error.reason


def test_batched_answers_are_split_by_the_presets_labels_and_scoped_to_the_deployments() -> None:
    asked: list[tuple[str, str]] = []

    def transport(url, body, headers, timeout_s):
        from urllib.parse import parse_qs

        query = parse_qs(body.decode())["query"][0]
        asked.append((url.rsplit("/", 1)[1], query))
        if url.endswith("query_range"):
            result = [{"metric": {"application": app, "deployment": dep}, "values": [[60.0, str(v)]]}
                      for app, dep, v in (("shop", "ranker", 1.0), ("shop", "embedder", 2.0))]
            return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        result = [{"metric": {"application": app, "deployment": dep}, "value": [0, str(v)]}
                  for app, dep, v in (("shop", "ranker", 5.0), ("shop", "embedder", 7.0), ("other", "x", 9.0))]
        return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()

    refs = [
        DeploymentRef.from_annotations("ns1", "a", {"faro.dev/metrics-preset": "ray-serve", "faro.dev/ray-app": "shop",
                                                    "faro.dev/ray-deployment": "ranker"}),
        DeploymentRef.from_annotations("ns2", "b", {"faro.dev/metrics-preset": "ray-serve", "faro.dev/ray-app": "shop",
                                                    "faro.dev/ray-deployment": "embedder"}),
    ]
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport), max_workers=1)

    result = source.observe(refs, now_s=61.0, history_minutes=1)

    a, b = result[("ns1", "a")], result[("ns2", "b")]
    assert isinstance(a, JobMetrics) and isinstance(b, JobMetrics)
    assert (a.rate_rps, b.rate_rps) == (5.0, 7.0)
    assert (a.rate_history_rpm, b.rate_history_rpm) == ((60.0,), (120.0,))
    # history, rate, latency (same percentile), mean latency = processing time (the same query), queue
    assert len(asked) == 5
    assert all('application=~"shop"' in q and "sum by (application, deployment" in q for _, q in asked)


def test_a_batch_prometheus_rejects_falls_back_to_each_deployments_own_query() -> None:
    asked: list[str] = []

    def transport(url, body, headers, timeout_s):
        from urllib.parse import parse_qs

        query = parse_qs(body.decode())["query"][0]
        asked.append(query)
        if "sum by" in query:
            return 400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
        if url.endswith("query_range"):
            return 200, json.dumps(matrix([(60.0, 1.0)])).encode()
        return 200, json.dumps(vector(4.0)).encode()

    refs = [DeploymentRef("ns", "m1"), DeploymentRef("ns", "m2")]
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport), max_workers=1)

    result = source.observe(refs, now_s=61.0, history_minutes=1)

    for ref in refs:
        value = result[ref.key]
        assert isinstance(value, JobMetrics) and value.rate_rps == 4.0 and value.rate_history_rpm == (60.0,)
    assert any(f'deployment="{ref.name}"' in q for q in asked for ref in refs)  # each asked on its own


def test_batch_min_must_not_be_negative() -> None:
    with pytest.raises(InvalidInputError, match="batch_min"):
        PrometheusSource(PrometheusClient("http://127.0.0.1:9"), batch_min=-1)


def test_a_batched_history_longer_than_max_range_points_is_asked_in_contiguous_pieces_and_joined() -> None:
    from urllib.parse import parse_qs

    ranges: list[tuple[float, float]] = []

    def transport(url, body, headers, timeout_s):
        params = parse_qs(body.decode())
        if url.endswith("query_range"):
            start, end, step = (float(params[k][0]) for k in ("start", "end", "step"))
            ranges.append((start, end))
            steps = [start + i * step for i in range(round((end - start) / step) + 1)]
            result = [{"metric": {"namespace": "ns", "deployment": dep},
                       "values": [[t, str(t / 60 + k)] for t in steps]} for k, dep in enumerate(("m1", "m2"))]
            return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        return 200, json.dumps(vector()).encode()

    refs = [DeploymentRef("ns", "m1"), DeploymentRef("ns", "m2")]
    source = PrometheusSource(PrometheusClient("http://127.0.0.1:9", transport=transport), max_workers=1,
                              max_range_points=100)

    result = source.observe(refs, now_s=60_000.0 + 5, history_minutes=250)

    assert ranges == [(45_060.0, 51_000.0), (51_060.0, 57_000.0), (57_060.0, 60_000.0)]  # 100 + 100 + 50 points
    for k, ref in enumerate(refs):
        value = result[ref.key]
        assert isinstance(value, JobMetrics)
        assert value.rate_history_rpm == tuple(60.0 * (minute + k) for minute in range(751, 1001))


def test_max_range_points_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="max_range_points"):
        PrometheusSource(PrometheusClient("http://127.0.0.1:9"), max_range_points=0)

"""The Prometheus HTTP API source: instant and range queries, one ``JobMetrics`` or ``MetricsError`` per Deployment.

``PrometheusClient`` is a small synchronous client for ``/api/v1/query`` and ``/api/v1/query_range``
(urllib, a timeout per request, headers such as a bearer token; the HTTP call itself is injectable
for tests). ``PrometheusSource`` implements ``MetricsSource``: the control loop calls ``observe``
once per cycle; each Deployment is queried with its preset's templates (or its override
annotations) and every failure stays that Deployment's ``MetricsError``.

Batching: at 1,000 Deployments one query per Deployment and quantity is ~6,000 HTTP requests a
cycle. Deployments that use a built-in preset's template for a quantity unchanged (no override)
share one ``sum by (<the preset's two labels>) (...)`` query per preset and quantity (and SLO
percentile, for the quantiles), scoped to their namespaces/applications; the answer is split by
those labels; quantities with the same query share it. The ``vllm`` preset's calibration range query
and KV-size query are batched the same way (``vllm.batch_template``), so a fleet of vLLM Deployments
costs 15 queries a cycle, not 15 per Deployment. What each Deployment gets is what its own query
would have given: a Deployment
absent from the answer has no series, a failed batch is each member's ``unavailable`` error, and a
batch Prometheus rejects falls back to per-Deployment queries. Overrides and custom presets are
always queried per Deployment.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from faro.optimizer.errors import InvalidInputError, PermanentError, TransientError
from faro.optimizer.http import Transport, urllib_post
from faro.optimizer.metrics import vllm
from faro.optimizer.metrics.base import (
    HISTOGRAM_QUANTITIES,
    LLM_QUANTITIES,
    DeploymentRef,
    JobMetrics,
    MetricsError,
)
from faro.optimizer.metrics.presets import GENERIC, PRESETS, RAY_SERVE, REQUIRED, VLLM, Preset, render
from faro.optimizer.model.llm_profile import LLMObservation
from faro.optimizer.model.profile_fit import StepWindows

HISTORY_STEP_S = 60.0
MAX_RANGE_POINTS = 11_000  # Prometheus rejects more points per series in one range query


class PrometheusUnavailable(TransientError):
    """Prometheus could not be reached, timed out, or answered 5xx."""


class PrometheusQueryError(PermanentError):
    """Prometheus rejected the query (HTTP 400/422: bad PromQL, bad parameters)."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix time s, value)




class PrometheusClient:
    """Instant and range queries against one Prometheus (or a compatible API: Thanos, Mimir, VictoriaMetrics)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        bearer_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport = urllib_post,
    ) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInputError("--prometheus-url", f"must be an http(s) URL, got {base_url!r}")
        if not timeout_s > 0:
            raise InvalidInputError("prometheus timeout_s", f"must be > 0, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if headers:
            self._headers.update(headers)
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._transport = transport

    def query(self, expr: str, *, time_s: float) -> list[Sample]:
        """Evaluate ``expr`` at ``time_s``; a scalar result comes back as one sample with no labels."""
        data = self._call("/api/v1/query", {"query": expr, "time": f"{time_s:.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [Sample(labels=item.get("metric", {}), value=_float(item["value"][1])) for item in result]
        if kind == "scalar":
            return [Sample(labels={}, value=_float(result[1]))]
        raise PrometheusQueryError(f"query {expr!r}: expected a vector or scalar, got {kind!r}")

    def query_range(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> list[Series]:
        """Evaluate ``expr`` at ``start_s, start_s + step_s, … end_s``."""
        params = {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
        data = self._call("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise PrometheusQueryError(f"query_range {expr!r}: expected a matrix, got {data.get('resultType')!r}")
        return [
            Series(
                labels=item.get("metric", {}),
                points=tuple((float(t), _float(v)) for t, v in item.get("values", ())),
            )
            for item in data["result"]
        ]

    def _call(self, path: str, params: Mapping[str, str]) -> dict:
        url = self.base_url + path
        body = urllib.parse.urlencode(params).encode()
        try:
            status, payload = self._transport(url, body, self._headers, self.timeout_s)
        except (OSError, TimeoutError) as exc:  # URLError, ConnectionRefused, socket.timeout
            raise PrometheusUnavailable(f"{url}: {exc}") from exc
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = {}
        if status in (400, 422):
            raise PrometheusQueryError(f"{answer.get('errorType', 'bad_data')}: {answer.get('error', payload[:200])}")
        if status != 200 or answer.get("status") != "success":
            raise PrometheusUnavailable(f"{url}: HTTP {status}: {answer.get('error', payload[:200])!r}")
        return answer["data"]


def _history_range(now_s: float, history_minutes: int) -> tuple[float, float]:
    """(end, start) of the per-minute history: the last ``history_minutes`` whole minutes up to now."""
    end_s = math.floor(now_s / HISTORY_STEP_S) * HISTORY_STEP_S
    return end_s, end_s - (history_minutes - 1) * HISTORY_STEP_S


def _float(text: str) -> float:
    return float(text)  # Prometheus encodes NaN/Inf as "NaN"/"+Inf"/"-Inf", which float() reads


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class BatchPreset:
    """Fleet-wide forms of a built-in preset's templates: ``templates[q]`` computes quantity q for every
    Deployment at once, ``by`` are the result labels naming a Deployment (the first one is also the
    ``${scope}`` label: ``by[0]=~"v1|v2|..."``), and ``labels(ref)`` their values for a Deployment.
    A quantity is batched for a Deployment only while its template is ``preset.templates[q]``."""

    preset: Preset
    by: tuple[str, str]
    labels: Callable[[DeploymentRef], tuple[str, str]]
    templates: Mapping[str, str] = field(default_factory=dict)


def _grouped(by: tuple[str, str], metric: str, *, rate: bool = True, extra: str = "") -> str:
    inner = f"rate({metric}{{${{scope}}{extra}}}[${{window}}])" if rate else f"{metric}{{${{scope}}{extra}}}"
    return f"sum by ({', '.join(by)}) ({inner})"


def _ratio(by: tuple[str, str], metric: str, scale: str = "") -> str:
    return f"{scale}{_grouped(by, metric + '_sum')} / {_grouped(by, metric + '_count')}"


_GEN_BY = ("namespace", "deployment")
_POD_TO_DEPLOYMENT = '"deployment", "$1", "pod", "(.+)-[a-z0-9]+-[a-z0-9]+"'  # the generic preset's pod pattern
_RAY_BY = ("application", "deployment")

BATCH_PRESETS: Mapping[str, BatchPreset] = {
    "generic": BatchPreset(
        preset=GENERIC,
        by=_GEN_BY,
        labels=lambda ref: (ref.namespace, ref.deployment_label),
        templates={
            "rate": "sum by (namespace, deployment) (increase(http_requests_total{${scope}}[${window}]))"
            " / ${window_s}",
            "latency": "1000 * histogram_quantile(${quantile}, sum by (namespace, deployment, le) "
            "(rate(http_request_duration_seconds_bucket{${scope}}[${window}])))",
            "mean_latency": _ratio(_GEN_BY, "http_request_duration_seconds", "1000 * "),
            "processing_time": _ratio(_GEN_BY, "model_inference_duration_seconds", "1000 * "),
            "queue": _grouped(_GEN_BY, "model_queue_length", rate=False),
            "cpu": (
                "sum by (namespace, deployment) (label_replace(rate(container_cpu_usage_seconds_total"
                f'{{${{scope}},container!="",container!="POD"}}[${{window}}]), {_POD_TO_DEPLOYMENT}))'
                " / sum by (namespace, deployment) (label_replace(kube_pod_container_resource_requests"
                f'{{${{scope}},resource="cpu"}}, {_POD_TO_DEPLOYMENT}))'
            ),
        },
    ),
    "ray-serve": BatchPreset(
        preset=RAY_SERVE,
        by=_RAY_BY,
        labels=lambda ref: (ref.app_label, ref.deployment_label),
        templates={
            "rate": "sum by (application, deployment) (increase(ray_serve_num_router_requests_total{${scope}}"
            "[${window}])) / ${window_s}",
            "latency": "histogram_quantile(${quantile}, sum by (application, deployment, le) "
            "(rate(ray_serve_deployment_processing_latency_ms_bucket{${scope}}[${window}])))",
            "mean_latency": _ratio(_RAY_BY, "ray_serve_deployment_processing_latency_ms"),
            "processing_time": _ratio(_RAY_BY, "ray_serve_deployment_processing_latency_ms"),
            "queue": _grouped(_RAY_BY, "ray_serve_deployment_queued_queries", rate=False),
        },
    ),
    "vllm": BatchPreset(
        preset=VLLM,
        by=vllm.BATCH_BY,
        labels=lambda ref: (ref.namespace, ref.model),
        templates={
            **{q: vllm.batch_template(text) for q, text in VLLM.templates.items()},
            # the calibration range query and the KV size, for every Deployment at once
            "calibration": vllm.calibration_expr({n: vllm.batch_template(t) for n, t in VLLM.calibration.items()}),
            "cache_config": vllm.BATCH_CACHE_CONFIG,
        },
    ),
}

HISTORY = "history"  # the batch key's quantity for the per-minute rate range query
CALIBRATION, CACHE_CONFIG = "calibration", "cache_config"  # the batch keys of the vllm calibration queries


def _regex_quote(value: str) -> str:
    """A label value as a literal inside a double-quoted PromQL regex."""
    return re.escape(value).replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class _Batch:
    """One batched query: its members, and after running either the answer by Deployment labels or
    the error it raised."""

    spec: BatchPreset
    quantity: str  # a quantity, or HISTORY, CALIBRATION, CACHE_CONFIG
    percentile: float
    refs: list[DeploymentRef] = field(default_factory=list)
    quantities: set[str] = field(default_factory=set)  # every quantity this query answers (same template)
    answer: dict[tuple[str, str], list] | None = None  # Deployment labels -> its samples or series
    error: Exception | None = None

    def expr(self, window_s: float) -> str:
        template = self.spec.templates["rate" if self.quantity == HISTORY else self.quantity]
        scope_values = sorted({self.spec.labels(ref)[0] for ref in self.refs})
        scope = f'{self.spec.by[0]}=~"{"|".join(_regex_quote(v) for v in scope_values)}"'
        return (template.replace("${scope}", scope).replace("${window_s}", f"{window_s:g}")
                .replace("${window}", f"{window_s:g}s").replace("${quantile}", f"{self.percentile / 100:.6g}"))


class PrometheusSource:
    """``MetricsSource`` over the Prometheus HTTP API.

    ``window_s`` is the window of instant queries (rate, latency, processing time, CPU); ``presets``
    maps a name to a ``Preset`` (default: the built-in registry); ``max_workers`` queries run
    concurrently; a quantity is batched (module docstring) once ``batch_min`` Deployments share its
    query (``0`` = never batch). A history longer than ``max_range_points`` minutes (a day-long
    backfill is 1,440; Prometheus allows 11,000 points per series) is asked in consecutive range
    queries of at most that many points and joined.

    Presets with calibration templates (``vllm``) also get, per Deployment and cycle, one range
    query over the last ``calibration_span_s`` at ``calibration_step_s`` steps (each step one
    window) and the KV-cache size from ``vllm:cache_config_info``: ``JobMetrics.llm.windows``
    (``calibration_span_s = 0`` turns it off). A failure there is a note, never the Deployment's error.
    """

    def __init__(
        self,
        client: PrometheusClient,
        *,
        window_s: float = 60.0,
        presets: Mapping[str, Preset] = PRESETS,
        max_workers: int = 4,
        batch_min: int = 2,
        max_range_points: int = MAX_RANGE_POINTS,
        calibration_span_s: float = 900.0,
        calibration_step_s: float = 30.0,
    ) -> None:
        if not window_s > 0:
            raise InvalidInputError("metrics window_s", f"must be > 0, got {window_s!r}")
        if max_workers < 1:
            raise InvalidInputError("metrics max_workers", f"must be >= 1, got {max_workers!r}")
        if batch_min < 0:
            raise InvalidInputError("metrics batch_min", f"must be >= 0, got {batch_min!r}")
        if max_range_points < 1:
            raise InvalidInputError("metrics max_range_points", f"must be >= 1, got {max_range_points!r}")
        if calibration_span_s < 0 or not calibration_step_s > 0 or calibration_span_s / calibration_step_s > 1000:
            raise InvalidInputError("metrics calibration", f"need span >= 0, step > 0 and at most 1000 windows, got "
                                    f"span {calibration_span_s!r} s, step {calibration_step_s!r} s")
        self.calibration_span_s = calibration_span_s
        self.calibrator = vllm.Calibrator()
        self.calibration_step_s = calibration_step_s
        self.max_range_points = max_range_points
        self.client = client
        self.window_s = window_s
        self.presets = presets
        self.max_workers = max_workers
        self.batch_min = batch_min

    def observe(
        self, deployments: Sequence[DeploymentRef], *, now_s: float, history_minutes: int
    ) -> dict[tuple[str, str], JobMetrics | MetricsError]:
        if history_minutes < 1:
            raise InvalidInputError("history_minutes", f"must be >= 1, got {history_minutes!r}")
        batches = self._plan_batches(deployments)
        end_s, start_s = _history_range(now_s, history_minutes)
        self._map(lambda batch: self._run_batch(batch, now_s=now_s, start_s=start_s, end_s=end_s), batches)
        lookup = {(ref.key, q): batch for batch in batches for q in batch.quantities for ref in batch.refs}
        results = self._map(lambda ref: self._observe_one(ref, now_s, history_minutes, lookup), deployments)
        self.calibrator.forget_except({ref.key for ref in deployments})
        return {ref.key: result for ref, result in zip(deployments, results, strict=True)}

    def _history(self, expr: str, *, start_s: float, end_s: float) -> list[Series]:
        """The per-minute range query from ``start_s`` to ``end_s``, in pieces of at most
        ``max_range_points`` points, each series' points joined in time order."""
        span = (self.max_range_points - 1) * HISTORY_STEP_S
        if end_s - start_s <= span:
            return self.client.query_range(expr, start_s=start_s, end_s=end_s, step_s=HISTORY_STEP_S)
        labels: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
        points: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        piece_start_s = start_s
        while piece_start_s <= end_s:
            piece_end_s = min(end_s, piece_start_s + span)
            for series in self.client.query_range(expr, start_s=piece_start_s, end_s=piece_end_s,
                                                  step_s=HISTORY_STEP_S):
                key = tuple(sorted(series.labels.items()))
                labels.setdefault(key, series.labels)
                points.setdefault(key, []).extend(series.points)
            piece_start_s = piece_end_s + HISTORY_STEP_S
        return [Series(labels=labels[key], points=tuple(found)) for key, found in points.items()]

    def _map(self, fn: Callable, items: Sequence) -> list:
        if len(items) <= 1 or self.max_workers == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------------------------------ batching
    def _plan_batches(self, deployments: Sequence[DeploymentRef]) -> list[_Batch]:
        """The batched queries for this cycle: (preset, quantity, percentile) groups of at least
        ``batch_min`` Deployments whose template for the quantity is the built-in preset's."""
        if self.batch_min == 0:
            return []
        groups: dict[tuple[str, str, str, float], _Batch] = {}

        def join(ref: DeploymentRef, spec: BatchPreset, quantity: str) -> None:
            text = spec.templates["rate" if quantity == HISTORY else quantity]
            pct = ref.percentile if "${quantile}" in text else 0.0
            # quantities with the same instant query (vllm's latency and ttft) share one batch
            kind = quantity if quantity in (HISTORY, CALIBRATION) else "instant"
            batch = groups.setdefault((ref.preset, kind, text, pct), _Batch(spec, quantity, pct))
            batch.quantities.add(quantity)
            if not batch.refs or batch.refs[-1] is not ref:
                batch.refs.append(ref)

        for ref in deployments:
            spec, preset = BATCH_PRESETS.get(ref.preset), self.presets.get(ref.preset)
            if spec is None or preset is None:
                continue
            templates = {**preset.templates, **ref.overrides}
            for quantity, text in templates.items():
                if quantity not in spec.templates or text != spec.preset.templates.get(quantity):
                    continue
                for q in (quantity, HISTORY) if quantity == "rate" else (quantity,):
                    join(ref, spec, q)
            if (CALIBRATION in spec.templates and self.calibration_span_s > 0 and preset.calibration
                    and preset.calibration == spec.preset.calibration):
                join(ref, spec, CALIBRATION)
                join(ref, spec, CACHE_CONFIG)
        return [batch for batch in groups.values() if len(batch.refs) >= max(self.batch_min, 1)]

    def _run_batch(self, batch: _Batch, *, now_s: float, start_s: float, end_s: float) -> None:
        by = batch.spec.by
        try:
            found: Sequence[Sample | Series]
            if batch.quantity == HISTORY:
                expr = batch.expr(HISTORY_STEP_S)
                found = self._history(expr, start_s=start_s, end_s=end_s)
            elif batch.quantity == CALIBRATION:
                cal_start_s, cal_end_s, _ = self._calibration_range(now_s)
                found = self.client.query_range(batch.expr(self.calibration_step_s), start_s=cal_start_s,
                                                end_s=cal_end_s, step_s=self.calibration_step_s)
            else:
                expr = batch.expr(self.window_s)
                found = self.client.query(expr, time_s=now_s)
            answer: dict[tuple[str, str], list] = {}
            for x in found:  # one sample or series per Deployment; per bucket (le) or series name for some
                answer.setdefault((x.labels.get(by[0], ""), x.labels.get(by[1], "")), []).append(x)
            batch.answer = answer
        except Exception as exc:  # kept for each member: unavailable, or a fall-back to its own query
            batch.error = exc

    def _batched(self, batch: _Batch | None, ref: DeploymentRef) -> list | None:
        """What ``ref``'s own query would have returned, from its batch; None = query it alone."""
        if batch is None:
            return None
        if batch.error is not None:
            if isinstance(batch.error, PrometheusUnavailable):
                raise batch.error
            return None  # rejected (or a surprise): this Deployment's own query decides
        return list(batch.answer.get(batch.spec.labels(ref), ())) if batch.answer is not None else []

    def _observe_one(
        self, ref: DeploymentRef, now_s: float, history_minutes: int,
        lookup: Mapping[tuple[tuple[str, str], str], _Batch] | None = None,
    ) -> JobMetrics | MetricsError:
        try:
            return self._observe(ref, now_s, history_minutes, lookup or {})
        except Exception as exc:  # one Deployment's surprise must never take the cycle down
            return MetricsError(f"Deployment {ref.namespace}/{ref.name}: unexpected error: {exc!r}", kind="bad_result")

    def _templates(self, ref: DeploymentRef) -> Mapping[str, str] | MetricsError:
        preset = self.presets.get(ref.preset)
        if preset is None:
            return MetricsError(
                f"Deployment {ref.namespace}/{ref.name}: unknown metrics preset {ref.preset!r}; "
                f"known: {sorted(self.presets)}",
                kind="invalid_query",
            )
        return {**preset.templates, **ref.overrides}

    def _observe(
        self, ref: DeploymentRef, now_s: float, history_minutes: int,
        lookup: Mapping[tuple[tuple[str, str], str], _Batch],
    ) -> JobMetrics | MetricsError:
        templates = self._templates(ref)
        if isinstance(templates, MetricsError):
            return templates
        who = f"Deployment {ref.namespace}/{ref.name}"

        def expr_for(quantity: str, window_s: float) -> str:
            return render(templates[quantity], ref, window_s=window_s, where=f"{who} {quantity} query")

        # Per-minute history: points at the last `history_minutes` whole minutes up to now; the
        # point at t is the increase over (t - 60 s, t], i.e. the minute ending at t.
        end_s, start_s = _history_range(now_s, history_minutes)
        try:
            history_expr = expr_for("rate", HISTORY_STEP_S)
        except InvalidInputError as exc:
            return MetricsError(str(exc), kind="invalid_query", quantity="rate")
        try:
            matrix = self._batched(lookup.get((ref.key, HISTORY)), ref)
            if matrix is None:
                matrix = self._history(history_expr, start_s=start_s, end_s=end_s)
        except PrometheusUnavailable as exc:
            return MetricsError(
                f"{who}: Prometheus unavailable: {exc}", kind="unavailable", quantity="rate", query=history_expr
            )
        except PrometheusQueryError as exc:
            return MetricsError(
                f"{who}: rate query rejected: {exc}", kind="invalid_query", quantity="rate", query=history_expr
            )
        if len(matrix) > 1:
            return MetricsError(
                f"{who}: rate query returned {len(matrix)} series, expected one (wrap it in sum())",
                kind="bad_result",
                quantity="rate",
                query=history_expr,
            )
        by_time = {round(t): v for t, v in matrix[0].points} if matrix else {}
        history = tuple(
            by_time.get(round(start_s + i * HISTORY_STEP_S), math.nan) * HISTORY_STEP_S for i in range(history_minutes)
        )

        values: dict[str, float | None] = {}
        histograms: dict[str, list[tuple[float, float]]] = {}
        notes: list[str] = []
        answers: dict[str, list[Sample]] = {}  # rendered PromQL -> samples: a query asked twice is sent once
        for quantity in templates:
            try:
                expr = expr_for(quantity, self.window_s)
            except InvalidInputError as exc:
                return MetricsError(str(exc), kind="invalid_query", quantity=quantity)
            try:
                samples = self._batched(lookup.get((ref.key, quantity)), ref)
                if samples is None:
                    samples = answers.get(expr)
                if samples is None:
                    samples = answers[expr] = self.client.query(expr, time_s=now_s)
            except PrometheusUnavailable as exc:
                return MetricsError(
                    f"{who}: Prometheus unavailable: {exc}", kind="unavailable", quantity=quantity, query=expr
                )
            except PrometheusQueryError as exc:
                if quantity in REQUIRED or quantity in ref.overrides:
                    return MetricsError(
                        f"{who}: {quantity} query rejected: {exc}", kind="invalid_query", quantity=quantity, query=expr
                    )
                notes.append(f"{quantity}: query rejected: {exc}")
                values[quantity] = None
                continue
            if quantity in HISTOGRAM_QUANTITIES:
                histograms[quantity] = _buckets(samples)
                continue
            if len(samples) > 1:
                reason = (
                    f"{quantity} query returned {len(samples)} series, expected one "
                    "(wrap it in sum(), max() or another aggregation)"
                )
                if quantity in REQUIRED or quantity in ref.overrides:
                    return MetricsError(f"{who}: {reason}", kind="bad_result", quantity=quantity, query=expr)
                notes.append(reason)
                values[quantity] = None
                continue
            values[quantity] = _finite_or_none(samples[0].value) if samples else None

        has_history = any(not math.isnan(v) for v in history)
        if values.get("rate") is None and not has_history:
            return MetricsError(
                f"{who}: no series for the arrival rate (preset {ref.preset}"
                f"{', override' if 'rate' in ref.overrides else ''}): {expr_for('rate', self.window_s)}",
                kind="missing",
                quantity="rate",
                query=expr_for("rate", self.window_s),
            )
        # The series exist (history) but nothing was scraped within the window: exporter or scrape stopped.
        stale = values.get("rate") is None
        if stale:
            notes.append("stale: no arrival-rate samples in the latest window")
        llm = profile = fit = None
        if any(q in templates for q in LLM_QUANTITIES):
            llm = self._llm(ref, now_s, values, histograms, notes, lookup)
            if llm.windows is not None:
                profile, fit = self.calibrator.update(ref, llm.windows)
                if profile is None and fit is not None:
                    notes.append(f"calibration: {fit.status}")
        return JobMetrics(
            llm=llm,
            llm_profile=profile,
            llm_fit=fit,
            rate_history_rpm=history,
            rate_rps=values.get("rate"),
            latency_ms=values.get("latency"),
            mean_latency_ms=values.get("mean_latency"),
            processing_time_ms=values.get("processing_time"),
            queue_length=values.get("queue"),
            cpu_utilization=values.get("cpu"),
            stale=stale,
            observed_at_s=now_s,
            notes=tuple(notes),
        )

    # ------------------------------------------------------------------------------------------ LLM
    def _llm(self, ref: DeploymentRef, now_s: float, values: Mapping[str, float | None],
             histograms: Mapping[str, list[tuple[float, float]]], notes: list[str],
             lookup: Mapping[tuple[tuple[str, str], str], _Batch]) -> LLMObservation:
        """The LLM quantities of one Deployment, plus its calibration windows when the preset has them."""
        mix = None
        if "prompt_tokens" in histograms and "output_tokens" in histograms:
            mix = vllm.token_mix(histograms["prompt_tokens"], histograms["output_tokens"],
                                 prompt_mean=values.get("prompt_tokens_mean"),
                                 output_mean=values.get("output_tokens_mean"))
        windows = None
        preset = self.presets.get(ref.preset)
        if preset is not None and preset.calibration and self.calibration_span_s > 0:
            try:
                windows = self._windows(ref, preset, now_s, lookup)
            except (PrometheusUnavailable, PrometheusQueryError, InvalidInputError) as exc:
                notes.append(f"calibration: {exc}")
        return LLMObservation(
            ttft_ms=values.get("ttft"), itl_ms=values.get("itl"), tpot_ms=values.get("tpot"),
            kv_cache_usage=values.get("kv_usage"),
            num_waiting=values.get("queue"), num_running=values.get("running"), token_mix=mix, windows=windows,
        )

    def _calibration_range(self, now_s: float) -> tuple[float, float, int]:
        """(start, end, windows) of the calibration range query: windows of ``calibration_step_s``
        ending at the last whole step."""
        step_s = self.calibration_step_s
        count = max(1, int(self.calibration_span_s // step_s))
        end_s = math.floor(now_s / step_s) * step_s
        return end_s - (count - 1) * step_s, end_s, count

    def _windows(self, ref: DeploymentRef, preset: Preset, now_s: float,
                 lookup: Mapping[tuple[tuple[str, str], str], _Batch]) -> StepWindows:
        """The calibration windows of one Deployment: from the fleet-wide queries, else its own."""
        step_s = self.calibration_step_s
        start_s, end_s, count = self._calibration_range(now_s)
        where = f"Deployment {ref.namespace}/{ref.name} calibration"
        found = self._batched(lookup.get((ref.key, CALIBRATION)), ref)
        if found is None:
            rendered = {name: render(text, ref, window_s=step_s, where=where)
                        for name, text in preset.calibration.items()}
            found = self.client.query_range(vllm.calibration_expr(rendered), start_s=start_s, end_s=end_s,
                                            step_s=step_s)
        config = self._batched(lookup.get((ref.key, CACHE_CONFIG)), ref)
        if config is None:
            config = self.client.query(render(vllm.CACHE_CONFIG, ref, window_s=step_s, where=where), time_s=now_s)
        return vllm.step_windows([(x.labels, x.points) for x in found], start_s=start_s, step_s=step_s, count=count,
                                 kv_cache_tokens=vllm.kv_cache_tokens([x.labels for x in config]))


def _buckets(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """(le, cumulative count) pairs of a histogram query's answer; samples without a numeric ``le`` are ignored."""
    out = []
    for sample in samples:
        try:
            out.append((float(sample.labels["le"]), sample.value))
        except (KeyError, ValueError):
            continue
    return out

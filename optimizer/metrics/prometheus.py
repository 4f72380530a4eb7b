"""The Prometheus HTTP API source: instant and range queries, one ``JobMetrics`` or ``MetricsError`` per Deployment.

``PrometheusClient`` is a small synchronous client for ``/api/v1/query`` and ``/api/v1/query_range``
(urllib, a timeout per request, headers such as a bearer token; the HTTP call itself is injectable
for tests). ``PrometheusSource`` implements ``MetricsSource``: the control loop calls ``observe``
once per cycle; each Deployment is queried with its preset's templates (or its override
annotations) and every failure stays that Deployment's ``MetricsError``.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from faro.optimizer.errors import InvalidInputError, PermanentError, TransientError
from faro.optimizer.metrics.base import DeploymentRef, JobMetrics, MetricsError
from faro.optimizer.metrics.presets import PRESETS, REQUIRED, Preset, render

HISTORY_STEP_S = 60.0


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


# (url, form-encoded body, headers, timeout_s) -> (HTTP status, body); raises OSError when unreachable.
Transport = Callable[[str, bytes, Mapping[str, str], float], tuple[int, bytes]]


def urllib_transport(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[int, bytes]:
    """POST ``body`` with urllib; HTTP errors come back as (status, body), network errors raise OSError."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class PrometheusClient:
    """Instant and range queries against one Prometheus (or a compatible API: Thanos, Mimir, VictoriaMetrics)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        bearer_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport = urllib_transport,
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


def _float(text: str) -> float:
    return float(text)  # Prometheus encodes NaN/Inf as "NaN"/"+Inf"/"-Inf", which float() reads


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class PrometheusSource:
    """``MetricsSource`` over the Prometheus HTTP API.

    ``window_s`` is the window of instant queries (rate, latency, processing time, CPU); ``presets``
    maps a name to a ``Preset`` (default: the built-in registry); ``max_workers`` Deployments are
    queried concurrently (each one's queries run in order).
    """

    def __init__(
        self,
        client: PrometheusClient,
        *,
        window_s: float = 60.0,
        presets: Mapping[str, Preset] = PRESETS,
        max_workers: int = 4,
    ) -> None:
        if not window_s > 0:
            raise InvalidInputError("metrics window_s", f"must be > 0, got {window_s!r}")
        if max_workers < 1:
            raise InvalidInputError("metrics max_workers", f"must be >= 1, got {max_workers!r}")
        self.client = client
        self.window_s = window_s
        self.presets = presets
        self.max_workers = max_workers

    def observe(
        self, deployments: Sequence[DeploymentRef], *, now_s: float, history_minutes: int
    ) -> dict[tuple[str, str], JobMetrics | MetricsError]:
        if history_minutes < 1:
            raise InvalidInputError("history_minutes", f"must be >= 1, got {history_minutes!r}")
        if len(deployments) <= 1 or self.max_workers == 1:
            results = [self._observe_one(ref, now_s, history_minutes) for ref in deployments]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(deployments))) as pool:
                results = list(pool.map(lambda ref: self._observe_one(ref, now_s, history_minutes), deployments))
        return {ref.key: result for ref, result in zip(deployments, results, strict=True)}

    def _observe_one(self, ref: DeploymentRef, now_s: float, history_minutes: int) -> JobMetrics | MetricsError:
        try:
            return self._observe(ref, now_s, history_minutes)
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

    def _observe(self, ref: DeploymentRef, now_s: float, history_minutes: int) -> JobMetrics | MetricsError:
        templates = self._templates(ref)
        if isinstance(templates, MetricsError):
            return templates
        who = f"Deployment {ref.namespace}/{ref.name}"

        def expr_for(quantity: str, window_s: float) -> str:
            return render(templates[quantity], ref, window_s=window_s, where=f"{who} {quantity} query")

        # Per-minute history: points at the last `history_minutes` whole minutes up to now; the
        # point at t is the increase over (t - 60 s, t], i.e. the minute ending at t.
        end_s = math.floor(now_s / HISTORY_STEP_S) * HISTORY_STEP_S
        start_s = end_s - (history_minutes - 1) * HISTORY_STEP_S
        try:
            history_expr = expr_for("rate", HISTORY_STEP_S)
        except InvalidInputError as exc:
            return MetricsError(str(exc), kind="invalid_query", quantity="rate")
        try:
            matrix = self.client.query_range(history_expr, start_s=start_s, end_s=end_s, step_s=HISTORY_STEP_S)
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
        notes: list[str] = []
        for quantity in templates:
            try:
                expr = expr_for(quantity, self.window_s)
            except InvalidInputError as exc:
                return MetricsError(str(exc), kind="invalid_query", quantity=quantity)
            try:
                samples = self.client.query(expr, time_s=now_s)
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
        return JobMetrics(
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

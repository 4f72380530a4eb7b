"""The ``external.metrics.k8s.io/v1beta1`` HTTPS surface: translate HTTP to ``PlanProvider`` calls and back.

Built by ``adapter/app.py`` (``build_api_app``, ``build_metrics_app``). No metric logic lives here: discovery
documents, the ``ExternalMetricValueList`` of one value, and domain errors turned into ``metav1.Status`` (the only
place that knows HTTP codes). ``/healthz``, ``/livez`` and ``/readyz`` skip authentication; everything else goes
through the ``Authenticator``/``Authorizer`` unless auth is disabled. Unexpected exceptions are a bug: logged and
answered with a 500 InternalError Status (the fuzz test makes sure none happen).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from faro.adapter.auth import EXTERNAL_METRICS_GROUP, EXTERNAL_METRICS_VERSION, Authenticator, Authorizer
from faro.adapter.auth import request_attributes as _request_attributes
from faro.adapter.errors import ForbiddenError, NoFreshPlanError, NotFoundError, UnauthenticatedError
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import PlanProvider
from faro.adapter.selector import parse as parse_selector
from faro.optimizer.errors import InvalidInputError, TransientError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("faro.adapter.server")

GROUP_VERSION = f"{EXTERNAL_METRICS_GROUP}/{EXTERNAL_METRICS_VERSION}"
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
_JSON = "application/json"
_GV = {"groupVersion": GROUP_VERSION, "version": EXTERNAL_METRICS_VERSION}
_API_GROUP = {
    "name": EXTERNAL_METRICS_GROUP,
    "versions": [_GV],
    "preferredVersion": _GV,
}


def status_body(code: int, reason: str, message: str, *, kind: str = "", name: str = "") -> dict[str, Any]:
    """A ``metav1.Status`` failure, as the Kubernetes API server writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if kind or name:
        body["details"] = {"name": name, "group": EXTERNAL_METRICS_GROUP, "kind": kind}
    return body


def status_response(code: int, reason: str, message: str, **details: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="kubernetes-master"'} if code == 401 else None
    return web.Response(
        status=code, text=json.dumps(status_body(code, reason, message, **details)), content_type=_JSON, headers=headers
    )


def error_response(exc: Exception) -> web.Response:
    """The one mapping from domain errors to HTTP (see ``adapter/errors.py``)."""
    if isinstance(exc, NotFoundError):
        return status_response(404, "NotFound", str(exc), kind=exc.kind, name=exc.name)
    if isinstance(exc, InvalidInputError):
        return status_response(400, "BadRequest", str(exc))
    if isinstance(exc, NoFreshPlanError | TransientError):
        return status_response(503, "ServiceUnavailable", str(exc))
    if isinstance(exc, UnauthenticatedError):
        return status_response(401, "Unauthorized", "Unauthorized")
    if isinstance(exc, ForbiddenError):
        return status_response(403, "Forbidden", f"{exc}")
    log.exception("internal error", exc_info=exc)
    return status_response(500, "InternalError", f"internal error: {type(exc).__name__}")


def rfc3339(ts_s: float) -> str:
    return dt.datetime.fromtimestamp(int(ts_s), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Selectors are immutable and each HPA repeats its own: parse each distinct string once (bounded).
_parse_cached = functools.lru_cache(maxsize=4096)(parse_selector)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth_middleware(authn: Authenticator, authz: Authorizer) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS:
            return await handler(request)
        try:
            ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
            der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            user = await authn.authenticate(peer_cert_der=der, headers=request.headers)
            refused = _encoded_slash(request)  # authenticated first (401 stays 401), reviewed never
            if refused is not None:
                return refused
            # The attributes of what the router matched: the handler serves exactly what was authorised.
            await authz.authorize(user, _request_attributes(request.method, request.path, route=request.match_info))
        except (UnauthenticatedError, ForbiddenError, TransientError) as exc:
            if isinstance(exc, UnauthenticatedError):
                log.info("401 %s %s: %s", request.method, request.path, exc)
            return error_response(exc)
        return await handler(request)

    return middleware


def _encoded_slash(request: web.Request) -> web.Response | None:
    """A 404 for a percent-encoded ``/`` in the path. Decoded, such a path has other segments than the router's
    parameters (``namespaces/default%2Fx/...``), so an access review of it would judge another request than the
    one served; and no namespace, metric or Deployment name contains a slash, so nothing is there to find."""
    if "%2f" in request.rel_url.raw_path.lower():
        return status_response(404, "NotFound", "the server could not find the requested resource (the path "
                               "contains an encoded slash, %2F)")
    return None


@web.middleware
async def _encoded_slash_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``_encoded_slash`` when auth is disabled (with auth, ``_auth_middleware`` checks it before the review)."""
    return _encoded_slash(request) or await handler(request)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return status_response(404, "NotFound", f"the server could not find the requested resource ({request.path})")
    except web.HTTPMethodNotAllowed:
        return status_response(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")
    except web.HTTPException as exc:
        return status_response(exc.status, exc.reason or "Failure", exc.text or exc.reason or "")
    except Exception as exc:
        return error_response(exc)


class ExternalMetricsAPI:
    """The handlers; one instance per server."""

    def __init__(self, provider: PlanProvider, *, metrics: AdapterMetrics, clock: Callable[[], float]) -> None:
        self._provider = provider
        self._metrics = metrics
        self._clock = clock
        self._ok = metrics.requests.labels("http", "metric", "200")  # bound once: the hot path
        self._seconds = metrics.request_seconds.labels("http")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once a plan was received; unauthenticated, so the body says nothing else (why a plan is not
        served is in the log and in ``faro_adapter_plan_fresh``/``faro_adapter_plan_age_seconds``)."""
        if not self._provider.freshness().has_plan:
            return web.Response(status=503, text="not ready\n")
        return web.Response(text="ok\n")

    async def apis(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [_API_GROUP]})

    async def api_group(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **_API_GROUP})

    async def resources(self, request: web.Request) -> web.Response:
        resources = [
            {"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
            for name in self._provider.metric_names()
        ]
        return web.json_response(
            {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}
        )

    async def metric(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        code = "200"
        try:
            namespace = request.match_info["namespace"]
            metric_name = request.match_info["metric"]
            selector = _parse_cached(request.query.get("labelSelector", ""))
            value = self._provider.get_external_metric(namespace, metric_name, selector)
        except Exception as exc:
            response = error_response(exc)
            code = str(response.status)
            if isinstance(exc, NoFreshPlanError):
                self._metrics.stale_responses.labels("http").inc()
        else:
            body = {
                "kind": "ExternalMetricValueList",
                "apiVersion": GROUP_VERSION,
                "metadata": {},
                "items": [
                    {
                        "metricName": value.metric_name,
                        "metricLabels": value.labels,
                        "timestamp": rfc3339(value.timestamp_s),
                        "value": str(value.value),
                    }
                ],
            }
            response = web.Response(text=json.dumps(body), content_type=_JSON)
        (self._ok if code == "200" else self._metrics.requests.labels("http", "metric", code)).inc()
        self._seconds.observe(time.perf_counter() - start)
        return response


class RequestErrorLog(logging.LoggerAdapter):
    """The logger aiohttp's server reports request errors to (``AppRunner(logger=...)`` in ``adapter/app.py``).

    A request aiohttp's HTTP parser refuses (a request line or header over its limit, not HTTP, bad framing) is
    the client's doing: aiohttp answers a plain ``400`` and would log a traceback for each, a log any client can
    fill. Here each is counted (``faro_adapter_requests_total{handler="unparsed"}``) and logged as one line, at
    most one per ``min_interval_s`` (the next line says how many were held back). Anything else, such as an
    exception from a handler, is a bug and keeps its traceback.
    """

    def __init__(self, logger: logging.Logger, *, metrics: AdapterMetrics, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logger, {})
        self._metrics, self._min_interval_s, self._clock = metrics, min_interval_s, clock
        self._next_line_s = float("-inf")
        self._held_back = 0

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if not self._unparsed(args, exc_info):
            super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._unparsed(args, kwargs.get("exc_info")):
            super().debug(msg, *args, **kwargs)

    def _unparsed(self, args: tuple[object, ...], exc: object) -> bool:
        """Count and (rate-limited) log a parser refusal; False for anything else."""
        if not isinstance(exc, HttpProcessingError):
            return False
        code = exc.code or 400
        self._metrics.requests.labels("http", "unparsed", str(code)).inc()
        now = self._clock()
        if now < self._next_line_s:
            self._held_back += 1
            return True
        self._next_line_s = now + self._min_interval_s
        held, self._held_back = self._held_back, 0
        remote = args[0] if args else "?"
        self.logger.warning("refused a request from %s that does not parse as HTTP: %d %s: %r%s", remote, code,
                            type(exc).__name__, exc.message[:100],
                            f" (and {held} more since the last such line)" if held else "")
        return True


def build_api_app(
    provider: PlanProvider,
    *,
    metrics: AdapterMetrics,
    clock: Callable[[], float],
    authenticator: Authenticator | None,
    authorizer: Authorizer | None,
) -> web.Application:
    """The HTTPS application; ``authenticator``/``authorizer`` both None means auth is disabled."""
    if (authenticator is None) != (authorizer is None):
        raise ValueError("give both an authenticator and an authorizer, or neither (auth disabled)")
    middlewares: list[Any] = [_error_middleware]
    if authenticator is not None and authorizer is not None:
        middlewares.append(_auth_middleware(authenticator, authorizer))
    else:
        middlewares.append(_encoded_slash_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    api = ExternalMetricsAPI(provider, metrics=metrics, clock=clock)
    base = f"/apis/{GROUP_VERSION}"
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/livez", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/apis", api.apis)
    app.router.add_get(f"/apis/{EXTERNAL_METRICS_GROUP}", api.api_group)
    app.router.add_get(base, api.resources)
    app.router.add_get(base + "/namespaces/{namespace}/{metric}", api.metric)
    return app


def build_metrics_app(
    provider: PlanProvider, *, metrics: AdapterMetrics, clock: Callable[[], float]
) -> web.Application:
    """Plain-HTTP ``/metrics`` (plus the health endpoints, handy for probes)."""
    api = ExternalMetricsAPI(provider, metrics=metrics, clock=clock)

    async def scrape(request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/livez", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    return app

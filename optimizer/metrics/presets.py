"""PromQL templates per quantity, grouped into presets (``generic``, ``ray-serve``); one explicit registry.

``PrometheusSource`` renders a preset's template for each Deployment, replacing a template by the
Deployment's override annotation where one is given. Templates are ``string.Template`` strings (PromQL
uses braces, so variables are ``${name}``); the variables are:

==============  =====================================================================
``namespace``   Kubernetes namespace of the Deployment
``name``        Kubernetes name of the Deployment
``name_regex``  the name with regex metacharacters escaped, for ``pod=~"${name_regex}-..."``
``app``         application label value (``faro.dev/ray-app``, default: the namespace)
``deployment``  deployment label value (``faro.dev/ray-deployment``, default: the name)
``window``      range of the window, e.g. ``60s``
``window_s``    the same in seconds, e.g. ``60``
``quantile``    SLO percentile as a fraction, e.g. ``0.99``
==============  =====================================================================

Units of each quantity's result: ``rate`` requests/s; ``latency``, ``mean_latency`` and
``processing_time`` milliseconds; ``queue`` requests; ``cpu`` busy fraction 0..1. The per-minute
arrival history evaluates the ``rate`` template with ``window = 60s`` as a range query at 60 s steps
and multiplies by 60, i.e. ``increase(...[1m])`` per completed minute.

Ray Serve names were checked against the Ray 2.60.0 source (``ray/serve/_private/replica.py``,
``router.py``, ``request_ingress_metrics.py``, ``ray/serve/metrics.py``): Ray prefixes every metric
with ``ray_`` and counters get ``_total`` on export; replica metrics carry ``deployment``,
``replica``, ``application`` (and ``route``), router metrics ``deployment``, ``application``,
``handle``, ``actor_id``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.metrics.base import QUANTITIES, DeploymentRef

REQUIRED = ("rate",)
"""Quantities without which a Deployment is reported as a ``MetricsError``; the others may be None."""


@dataclass(frozen=True)
class Preset:
    """A named set of PromQL templates, one per quantity (a missing quantity is never queried)."""

    name: str
    templates: Mapping[str, str]
    description: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.templates) - set(QUANTITIES))
        if unknown:
            raise InvalidInputError(f"preset {self.name}", f"unknown quantities {unknown}")
        for quantity in REQUIRED:
            if quantity not in self.templates:
                raise InvalidInputError(f"preset {self.name}", f"needs a {quantity!r} template")
        for quantity, text in self.templates.items():
            _check_template(f"preset {self.name} {quantity}", text)


def _check_template(where: str, text: str) -> None:
    try:
        string.Template(text).substitute(_EXAMPLE_VARS)
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(where, f"bad template variable {exc}; known: {sorted(_EXAMPLE_VARS)}") from None


_EXAMPLE_VARS = {
    "namespace": "ns",
    "name": "n",
    "name_regex": "n",
    "app": "a",
    "deployment": "d",
    "window": "60s",
    "window_s": "60",
    "quantile": "0.99",
}


def _quote(value: str) -> str:
    """Escape a value for a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def template_vars(ref: DeploymentRef, *, window_s: float) -> dict[str, str]:
    """The variables a template sees for ``ref`` (values escaped for PromQL strings)."""
    window = f"{window_s:g}s"
    return {
        "namespace": _quote(ref.namespace),
        "name": _quote(ref.name),
        "name_regex": _quote(re.escape(ref.name)),
        "app": _quote(ref.app_label),
        "deployment": _quote(ref.deployment_label),
        "window": window,
        "window_s": f"{window_s:g}",
        "quantile": f"{ref.percentile / 100:.6g}",
    }


def render(text: str, ref: DeploymentRef, *, window_s: float, where: str = "") -> str:
    """Render one template for ``ref``; ``InvalidInputError`` names ``where`` on a bad variable."""
    try:
        return string.Template(text).substitute(template_vars(ref, window_s=window_s))
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(
            where or f"Deployment {ref.namespace}/{ref.name}",
            f"bad template variable {exc}; known: {sorted(_EXAMPLE_VARS)}",
        ) from None


_GENERIC_SEL = 'namespace="${namespace}",deployment="${deployment}"'
_GENERIC_POD_SEL = 'namespace="${namespace}",pod=~"${name_regex}-[a-z0-9]+-[a-z0-9]+"'

GENERIC = Preset(
    name="generic",
    description=(
        "A model server exporting http_requests_total, http_request_duration_seconds (histogram) and "
        "optionally model_inference_duration_seconds (histogram) and model_queue_length (gauge), "
        "labelled namespace and deployment; CPU from cAdvisor and kube-state-metrics."
    ),
    templates={
        "rate": f"sum(increase(http_requests_total{{{_GENERIC_SEL}}}[${{window}}])) / ${{window_s}}",
        "latency": (
            "1000 * histogram_quantile(${quantile}, sum by (le) "
            f"(rate(http_request_duration_seconds_bucket{{{_GENERIC_SEL}}}[${{window}}])))"
        ),
        "mean_latency": (
            f"1000 * sum(rate(http_request_duration_seconds_sum{{{_GENERIC_SEL}}}[${{window}}]))"
            f" / sum(rate(http_request_duration_seconds_count{{{_GENERIC_SEL}}}[${{window}}]))"
        ),
        "processing_time": (
            f"1000 * sum(rate(model_inference_duration_seconds_sum{{{_GENERIC_SEL}}}[${{window}}]))"
            f" / sum(rate(model_inference_duration_seconds_count{{{_GENERIC_SEL}}}[${{window}}]))"
        ),
        "queue": f"sum(model_queue_length{{{_GENERIC_SEL}}})",
        "cpu": (
            f'sum(rate(container_cpu_usage_seconds_total{{{_GENERIC_POD_SEL},container!="",container!="POD"}}'
            "[${window}]))"
            f' / sum(kube_pod_container_resource_requests{{{_GENERIC_POD_SEL},resource="cpu"}})'
        ),
    },
)

_RAY_SEL = 'application="${app}",deployment="${deployment}"'

RAY_SERVE = Preset(
    name="ray-serve",
    description=(
        "Ray Serve's own metrics (Ray 2.60): arrivals from the router counter, processing latency "
        "from the replica histogram, queue from the router gauge; no CPU template (see below)."
    ),
    templates={
        # Counted by the router when a request is assigned, i.e. arrivals (queued ones included).
        "rate": f"sum(increase(ray_serve_num_router_requests_total{{{_RAY_SEL}}}[${{window}}])) / ${{window_s}}",
        # Replica-side processing latency: per deployment (the HTTP latency is only per application/route).
        "latency": (
            "histogram_quantile(${quantile}, sum by (le) "
            f"(rate(ray_serve_deployment_processing_latency_ms_bucket{{{_RAY_SEL}}}[${{window}}])))"
        ),
        "mean_latency": (
            f"sum(rate(ray_serve_deployment_processing_latency_ms_sum{{{_RAY_SEL}}}[${{window}}]))"
            f" / sum(rate(ray_serve_deployment_processing_latency_ms_count{{{_RAY_SEL}}}[${{window}}]))"
        ),
        "processing_time": (
            f"sum(rate(ray_serve_deployment_processing_latency_ms_sum{{{_RAY_SEL}}}[${{window}}]))"
            f" / sum(rate(ray_serve_deployment_processing_latency_ms_count{{{_RAY_SEL}}}[${{window}}]))"
        ),
        "queue": f"sum(ray_serve_deployment_queued_queries{{{_RAY_SEL}}})",
        # No "cpu": ray_serve_replica_utilization_percent is normalised by max_ongoing_requests and did
        # not read as a busy fraction on Ray 2.60 (tests/test_ray_serve_e2e.py); use faro.dev/promql-cpu.
    },
)

PRESETS: Mapping[str, Preset] = {p.name: p for p in (GENERIC, RAY_SERVE)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError("metrics preset", f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None

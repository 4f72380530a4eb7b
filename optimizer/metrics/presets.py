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
``model``       served model name, the ``model_name`` label (``faro.dev/model-name``, default: the name)
``window``      range of the window, e.g. ``60s``
``window_s``    the same in seconds, e.g. ``60``
``quantile``    SLO percentile as a fraction, e.g. ``0.99``
==============  =====================================================================

Units of each quantity's result: ``rate`` requests/s; ``latency``, ``mean_latency`` and
``processing_time`` milliseconds; ``queue`` requests; ``cpu`` busy fraction 0..1; ``ttft``, ``itl`` (single
gaps) and ``tpot`` (requests' mean gaps) milliseconds at the SLO percentile; ``kv_usage`` fraction 0..1
(mean over replicas); ``running``
requests (sum over replicas); ``prompt_tokens``/``output_tokens`` request counts per bucket ``le``
over the window (cumulative, as ``_bucket`` series are); ``*_tokens_mean`` tokens. The per-minute
arrival history evaluates the ``rate`` template with ``window = 60s`` as a range query at 60 s steps
and multiplies by 60, i.e. ``increase(...[1m])`` per completed minute.

Ray Serve names were checked against the Ray 2.60.0 source (``ray/serve/_private/replica.py``,
``router.py``, ``request_ingress_metrics.py``, ``ray/serve/metrics.py``): Ray prefixes every metric
with ``ray_`` and counters get ``_total`` on export; replica metrics carry ``deployment``,
``replica``, ``application`` (and ``route``), router metrics ``deployment``, ``application``,
``handle``, ``actor_id``.

vLLM names were checked against vLLM 0.32.0 (``vllm/v1/metrics/loggers.py``; every series carries
``model_name`` and ``engine``) and against a real server's ``/metrics`` (``tests/fixtures/vllm``).
Older servers exported inter-token latency as ``vllm:time_per_output_token_seconds`` and KV use as
``vllm:gpu_cache_usage_perc``; the templates fall back to them with ``or`` (PromQL matches ``or`` on
labels without the metric name, so a server exporting both counts once).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.metrics import vllm
from faro.optimizer.metrics.base import QUANTITIES, DeploymentRef

REQUIRED = ("rate",)
"""Quantities without which a Deployment is reported as a ``MetricsError``; the others may be None."""


@dataclass(frozen=True)
class Preset:
    """A named set of PromQL templates, one per quantity (a missing quantity is never queried)."""

    name: str
    templates: Mapping[str, str]
    description: str = ""
    calibration: Mapping[str, str] = field(default_factory=dict)  # StepWindows field -> per-window template

    def __post_init__(self) -> None:
        unknown = sorted(set(self.templates) - set(QUANTITIES))
        if unknown:
            raise InvalidInputError(f"preset {self.name}", f"unknown quantities {unknown}")
        for quantity in REQUIRED:
            if quantity not in self.templates:
                raise InvalidInputError(f"preset {self.name}", f"needs a {quantity!r} template")
        for quantity, text in self.templates.items():
            _check_template(f"preset {self.name} {quantity}", text)
        for series, text in self.calibration.items():
            _check_template(f"preset {self.name} calibration {series}", text)


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
    "model": "m",
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
        "model": _quote(ref.model_label),
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

_VLLM_SEL = vllm.SELECTOR


def _vllm_quantile(metric: str, old: str | None = None) -> str:
    buckets = f"rate({metric}_bucket{{{_VLLM_SEL}}}[${{window}}])"
    if old is not None:
        buckets += f" or rate({old}_bucket{{{_VLLM_SEL}}}[${{window}}])"
    return f"1000 * histogram_quantile(${{quantile}}, sum by (le) ({buckets}))"


def _vllm_mean(metric: str, *, scale: str = "") -> str:
    return (f"{scale}sum(increase({metric}_sum{{{_VLLM_SEL}}}[${{window}}]))"
            f" / sum(increase({metric}_count{{{_VLLM_SEL}}}[${{window}}]))")


VLLM = Preset(
    name="vllm",
    description=(
        "vLLM's own metrics (V1 engine, checked on 0.32.0), selected by namespace and model_name: arrivals "
        "from finished requests, TTFT/ITL histograms, queue, batch and KV-cache gauges, token-mix histograms."
    ),
    templates={
        # Finished requests of every finished_reason; in steady state the arrival rate. (vLLM counts no
        # arrivals; the queue gauge shows what has arrived and not yet run.)
        "rate": f"sum(increase(vllm:request_success_total{{{_VLLM_SEL}}}[${{window}}])) / ${{window_s}}",
        # An LLM job's "latency" is its time to first token (queueing + prefill), the SLO the queue hurts.
        "latency": _vllm_quantile("vllm:time_to_first_token_seconds"),
        "mean_latency": _vllm_mean("vllm:time_to_first_token_seconds", scale="1000 * "),
        "queue": f"sum(vllm:num_requests_waiting{{{_VLLM_SEL}}})",
        "ttft": _vllm_quantile("vllm:time_to_first_token_seconds"),
        "itl": _vllm_quantile("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        # Per request: (last token - first token) / (output tokens - 1), what an ITL SLO is held against.
        "tpot": _vllm_quantile("vllm:request_time_per_output_token_seconds"),
        "kv_usage": f"avg(vllm:kv_cache_usage_perc{{{_VLLM_SEL}}} or vllm:gpu_cache_usage_perc{{{_VLLM_SEL}}})",
        "running": f"sum(vllm:num_requests_running{{{_VLLM_SEL}}})",
        "prompt_tokens": f"sum by (le) (increase(vllm:request_prompt_tokens_bucket{{{_VLLM_SEL}}}[${{window}}]))",
        "output_tokens": (
            f"sum by (le) (increase(vllm:request_generation_tokens_bucket{{{_VLLM_SEL}}}[${{window}}]))"
        ),
        "prompt_tokens_mean": _vllm_mean("vllm:request_prompt_tokens"),
        "output_tokens_mean": _vllm_mean("vllm:request_generation_tokens"),
    },
    calibration=vllm.CALIBRATION_SERIES,
)

PRESETS: Mapping[str, Preset] = {p.name: p for p in (GENERIC, RAY_SERVE, VLLM)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError("metrics preset", f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None

"""Prometheus metrics source for the live controller (``faro optimizer``).

``PrometheusSource(PrometheusClient(url)).observe(refs, now_s=..., history_minutes=...)`` returns one
``JobMetrics`` (rate history, tail/mean latency, processing time, queue, CPU) or ``MetricsError`` per
Deployment. PromQL comes from a preset (``generic``, ``ray-serve``; ``presets.py``) or the
Deployment's override annotations. See docs/metrics.md.
"""

from faro.optimizer.metrics.base import DeploymentRef, JobMetrics, MetricsError, MetricsSource
from faro.optimizer.metrics.presets import PRESETS, Preset, get_preset
from faro.optimizer.metrics.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusSource,
    PrometheusUnavailable,
)

__all__ = [
    "PRESETS",
    "DeploymentRef",
    "JobMetrics",
    "MetricsError",
    "MetricsSource",
    "Preset",
    "PrometheusClient",
    "PrometheusQueryError",
    "PrometheusSource",
    "PrometheusUnavailable",
    "get_preset",
]

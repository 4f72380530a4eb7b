"""What the metrics source is asked and what it answers: ``DeploymentRef`` in, ``JobMetrics`` or
``MetricsError`` out, per Deployment.

The control loop (``optimizer/service``) builds one ``DeploymentRef`` per Faro-enabled Deployment
(``DeploymentRef.from_annotations``) and calls ``MetricsSource.observe`` once per cycle. A source
never raises for one Deployment's trouble: missing series, stale series, a bad PromQL override or an
unreachable Prometheus come back as a ``MetricsError`` value for that Deployment.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import EngineProfile, LLMObservation
from faro.optimizer.model.profile_fit import StepFit
from faro.optimizer.policy.base import JobObservation

QUANTITIES = ("rate", "latency", "mean_latency", "processing_time", "queue", "cpu",
              "ttft", "itl", "tpot", "kv_usage", "running", "prompt_tokens", "output_tokens",
              "prompt_tokens_mean", "output_tokens_mean")
"""Quantities a preset defines a PromQL template for (see ``presets.py``); the second line are LLM
serving quantities (the ``vllm`` preset), which fill ``JobMetrics.llm``."""

HISTOGRAM_QUANTITIES = ("prompt_tokens", "output_tokens")
"""Quantities whose query returns a histogram: one sample per bucket, labelled ``le`` (cumulative counts)."""

LLM_QUANTITIES = ("ttft", "itl", "tpot", "kv_usage", "running", "prompt_tokens", "output_tokens",
                  "prompt_tokens_mean", "output_tokens_mean")

ANNOTATION_PRESET = "faro.dev/metrics-preset"
ANNOTATION_RAY_APP = "faro.dev/ray-app"
ANNOTATION_RAY_DEPLOYMENT = "faro.dev/ray-deployment"
ANNOTATION_MODEL_NAME = "faro.dev/model-name"  # the served model's name (vLLM's model_name label)
ANNOTATION_LLM_BATCHED_TOKENS = "faro.dev/llm-max-num-batched-tokens"  # also an engine-profile annotation
OVERRIDE_ANNOTATIONS = {
    "faro.dev/promql-rate": "rate",
    "faro.dev/promql-latency": "latency",
    "faro.dev/promql-mean-latency": "mean_latency",
    "faro.dev/promql-processing-time": "processing_time",
    "faro.dev/promql-queue": "queue",
    "faro.dev/promql-cpu": "cpu",
    "faro.dev/promql-ttft": "ttft",
    "faro.dev/promql-itl": "itl",
    "faro.dev/promql-tpot": "tpot",
    "faro.dev/promql-kv-usage": "kv_usage",
    "faro.dev/promql-running": "running",
}
"""Per-Deployment PromQL overrides: annotation -> quantity (same units and template variables as
the preset's template it replaces; see docs/metrics.md)."""


@dataclass(frozen=True)
class DeploymentRef:
    """One Deployment to observe.

    ``app``/``deployment`` are the label values the preset's series carry for this Deployment: by
    default the Kubernetes namespace and name (the generic preset's ``namespace``/``deployment``
    labels, and the Ray Serve convention "namespace = application, name = deployment" in direct
    mode); the ``faro.dev/ray-app`` / ``faro.dev/ray-deployment`` annotations set them otherwise.
    ``overrides`` maps a quantity (``QUANTITIES``) to a PromQL template replacing the preset's.
    ``model`` is the ``model_name`` label value of an LLM server's series (vLLM's
    ``--served-model-name``; default: the Deployment's name; annotation ``faro.dev/model-name``).
    ``max_num_batched_tokens``: the engine's per-step token budget when annotated (the calibration
    counts a long prompt's chunked prefill steps with it; default 8192, vLLM's).
    """

    namespace: str
    name: str
    preset: str = "generic"
    percentile: float = 99.0
    overrides: Mapping[str, str] = field(default_factory=dict)
    app: str = ""
    deployment: str = ""
    model: str = ""
    max_num_batched_tokens: int | None = None

    def __post_init__(self) -> None:
        where = f"Deployment {self.namespace}/{self.name}"
        if not self.name:
            raise InvalidInputError("DeploymentRef.name", "must not be empty")
        if not 0 < self.percentile < 100:
            raise InvalidInputError(f"{where} percentile", f"must be in (0, 100), got {self.percentile!r}")
        unknown = sorted(set(self.overrides) - set(QUANTITIES))
        if unknown:
            raise InvalidInputError(f"{where} overrides", f"unknown quantities {unknown}; known: {list(QUANTITIES)}")

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def app_label(self) -> str:
        return self.app or self.namespace

    @property
    def deployment_label(self) -> str:
        return self.deployment or self.name

    @property
    def model_label(self) -> str:
        return self.model or self.name

    @classmethod
    def from_annotations(
        cls,
        namespace: str,
        name: str,
        annotations: Mapping[str, str],
        *,
        default_preset: str = "generic",
        percentile: float = 99.0,
    ) -> DeploymentRef:
        """Read the metrics-related annotations of a Deployment (preset, overrides, Ray names).

        Raises ``InvalidInputError`` naming the Deployment and annotation for an unknown preset or an
        empty override, so the caller can emit its Warning Event and hold the Deployment.
        """
        from faro.optimizer.metrics.presets import PRESETS  # presets import this module

        where = f"Deployment {namespace}/{name} annotation"
        preset = annotations.get(ANNOTATION_PRESET, default_preset).strip()
        if preset not in PRESETS:
            raise InvalidInputError(
                f"{where} {ANNOTATION_PRESET}", f"unknown preset {preset!r}; known: {sorted(PRESETS)}"
            )
        overrides: dict[str, str] = {}
        for annotation, quantity in OVERRIDE_ANNOTATIONS.items():
            if annotation in annotations:
                expr = annotations[annotation].strip()
                if not expr:
                    raise InvalidInputError(f"{where} {annotation}", "must be a PromQL expression, got an empty value")
                overrides[quantity] = expr
        budget = None
        with contextlib.suppress(ValueError):  # a bad value: the annotation parser reports it
            budget = int(annotations.get(ANNOTATION_LLM_BATCHED_TOKENS, "").strip()) or None
        return cls(
            max_num_batched_tokens=budget if budget is None or budget > 0 else None,
            namespace=namespace,
            name=name,
            preset=preset,
            percentile=percentile,
            overrides=overrides,
            app=annotations.get(ANNOTATION_RAY_APP, "").strip(),
            deployment=annotations.get(ANNOTATION_RAY_DEPLOYMENT, "").strip(),
            model=annotations.get(ANNOTATION_MODEL_NAME, "").strip(),
        )


@dataclass(frozen=True)
class JobMetrics:
    """What Prometheus said about one Deployment at ``observed_at_s``.

    ``rate_history_rpm``: requests per completed minute, oldest first, exactly ``history_minutes``
    long; NaN marks a minute with no data. ``latency_ms``: observed SLO-percentile latency over the
    last window; ``mean_latency_ms`` the mean over the same window; ``processing_time_ms`` the
    measured mean service time; ``queue_length`` requests waiting; ``cpu_utilization`` busy fraction
    (0..1) of the replicas. Each is None when the series is absent or there was no traffic.
    ``stale``: the series exist but the most recent completed minute has no data (the exporter or
    scrape stopped); the numbers are the last ones Prometheus had.
    ``notes``: why optional quantities are None (e.g. a query error), for logs.
    ``llm``: TTFT/ITL, KV-cache use, queue, batch, token mix and the step windows the engine profile
    is calibrated from, for presets with LLM quantities (``vllm``); None otherwise.
    ``llm_profile``: the engine profile calibrated from those windows (the view pins annotated fields
    over it); ``llm_fit``: that fit and its error (None = not calibrated).
    """

    rate_history_rpm: tuple[float, ...]
    rate_rps: float | None = None
    latency_ms: float | None = None
    mean_latency_ms: float | None = None
    processing_time_ms: float | None = None
    queue_length: float | None = None
    cpu_utilization: float | None = None
    stale: bool = False
    observed_at_s: float = 0.0
    notes: tuple[str, ...] = ()
    llm: LLMObservation | None = None
    llm_profile: EngineProfile | None = None
    llm_fit: StepFit | None = None

    def to_observation(self) -> JobObservation:
        """The policy-facing view of these measurements."""
        return JobObservation(
            rate_history_rpm=self.rate_history_rpm,
            latency_ms=self.latency_ms,
            mean_latency_ms=self.mean_latency_ms,
            cpu_utilization=self.cpu_utilization,
            queue_length=self.queue_length,
            llm=self.llm,
            arrival_rate_rps=self.rate_rps,
        )

    @property
    def has_rate(self) -> bool:
        return any(not math.isnan(v) for v in self.rate_history_rpm)


@dataclass(frozen=True)
class MetricsError:
    """Why one Deployment could not be observed.

    ``kind``: ``"missing"`` (no series matched the query), ``"unavailable"`` (Prometheus could not be
    reached or answered 5xx; retry next cycle), ``"invalid_query"`` (Prometheus rejected the PromQL,
    usually a bad override annotation; retrying will not help), ``"bad_result"`` (the query returned
    something other than one number, e.g. several series from an override without ``sum``).
    """

    reason: str
    kind: str = "missing"
    quantity: str = ""
    query: str = ""

    @property
    def transient(self) -> bool:
        return self.kind in ("unavailable", "missing")

    def __str__(self) -> str:
        return self.reason


class MetricsSource(Protocol):
    """Observes Deployments; never raises for one Deployment's failure."""

    def observe(
        self, deployments: Sequence[DeploymentRef], *, now_s: float, history_minutes: int
    ) -> Mapping[tuple[str, str], JobMetrics | MetricsError]: ...

"""The ``faro.dev/*`` annotation schema of a managed Deployment, parsed and validated in one place.

Called by ``faro.optimizer.kube.jobs`` once per control cycle for every Deployment labelled
``faro.dev/enabled=true``. Parsing never raises: every problem comes back as an
``AnnotationProblem`` naming the annotation and why, which the service turns into a Warning Event
(reason ``FaroInvalidSLO``), a metric, and a Deployment held at its current replicas.
See ``docs/annotations.md`` for the user-facing reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.metrics.base import (
    ANNOTATION_MODEL_NAME,
    ANNOTATION_PRESET,
    ANNOTATION_RAY_APP,
    ANNOTATION_RAY_DEPLOYMENT,
    OVERRIDE_ANNOTATIONS,
    DeploymentRef,
)

PREFIX = "faro.dev/"
ENABLED_LABEL = "faro.dev/enabled"
SLO_LATENCY_MS = "faro.dev/slo-latency-ms"
SLO_PERCENTILE = "faro.dev/slo-percentile"
PROCESSING_TIME_MS = "faro.dev/processing-time-ms"
WEIGHT = "faro.dev/weight"
MIN_REPLICAS = "faro.dev/min-replicas"
MAX_REPLICAS = "faro.dev/max-replicas"
METRICS_PRESET = ANNOTATION_PRESET  # these and the PromQL overrides are the metrics source's schema
PROMQL = OVERRIDE_ANNOTATIONS  # annotation -> quantity (rate, latency, ...)
KNOWN = {SLO_LATENCY_MS, SLO_PERCENTILE, PROCESSING_TIME_MS, WEIGHT, MIN_REPLICAS, MAX_REPLICAS, METRICS_PRESET,
         ANNOTATION_RAY_APP, ANNOTATION_RAY_DEPLOYMENT, ANNOTATION_MODEL_NAME, *PROMQL}


@dataclass(frozen=True)
class AnnotationProblem:
    annotation: str
    reason: str

    def __str__(self) -> str:
        return f"invalid annotation {self.annotation}: {self.reason}"


@dataclass(frozen=True)
class FaroAnnotations:
    """Validated settings; ``None`` means "not set" (measured / taken from the HPA / flag default)."""

    slo_latency_ms: float
    slo_percentile: float = 99.0
    processing_time_ms: float | None = None
    weight: float = 1.0
    min_replicas: int | None = None
    max_replicas: int | None = None
    metrics_preset: str | None = None
    promql: Mapping[str, str] = field(default_factory=dict)
    ref: DeploymentRef | None = None  # what the metrics source is asked (preset, overrides, Ray names)


def _number(annotations: Mapping[str, str], key: str, problems: list[AnnotationProblem], *,
            low: float, low_open: bool = False, high: float | None = None, high_open: bool = False,
            integer: bool = False) -> float | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = float(text) if not integer else float(int(text))
    except ValueError:
        kind = "an integer" if integer else "a number"
        problems.append(AnnotationProblem(key, f"{raw!r} is not {kind}"))
        return None
    if not math.isfinite(value):
        problems.append(AnnotationProblem(key, f"{raw!r} is not a finite number"))
        return None
    if value < low or (low_open and value == low):
        problems.append(AnnotationProblem(key, f"{raw!r} must be {'>' if low_open else '>='} {low:g}"))
        return None
    if high is not None and (value > high or (high_open and value == high)):
        problems.append(AnnotationProblem(key, f"{raw!r} must be {'<' if high_open else '<='} {high:g}"))
        return None
    return value


def parse_annotations(annotations: Mapping[str, str] | None, *, namespace: str = "default", name: str = "?",
                      default_preset: str = "generic") -> tuple[FaroAnnotations | None, list[AnnotationProblem]]:
    """Parse a Deployment's annotations; returns the settings (None when unusable) and every problem.

    The metrics part (preset, PromQL overrides, Ray names) is read by the metrics source's own
    ``DeploymentRef.from_annotations``, so both agree on one schema.

    A problem in an optional annotation still makes the settings unusable: a Deployment whose owner
    asked for something Faro cannot honour is held rather than planned on a guess.
    """
    annotations = annotations or {}
    problems: list[AnnotationProblem] = []
    if SLO_LATENCY_MS not in annotations:
        problems.append(AnnotationProblem(SLO_LATENCY_MS, "is required (the latency SLO in milliseconds)"))
    latency = _number(annotations, SLO_LATENCY_MS, problems, low=0.0, low_open=True)
    percentile = _number(annotations, SLO_PERCENTILE, problems, low=0.0, low_open=True, high=100.0, high_open=True)
    processing = _number(annotations, PROCESSING_TIME_MS, problems, low=0.0, low_open=True)
    weight = _number(annotations, WEIGHT, problems, low=0.0)
    low = _number(annotations, MIN_REPLICAS, problems, low=0.0, integer=True)
    high = _number(annotations, MAX_REPLICAS, problems, low=1.0, integer=True)
    if low is not None and high is not None and high < low:
        problems.append(AnnotationProblem(MAX_REPLICAS, f"{int(high)} is below {MIN_REPLICAS} {int(low)}"))
    ref = None
    try:
        ref = DeploymentRef.from_annotations(namespace, name, annotations, default_preset=default_preset,
                                             percentile=99.0 if percentile is None else percentile)
    except InvalidInputError as exc:
        annotation = next((k for k in (METRICS_PRESET, *PROMQL) if k in exc.where), METRICS_PRESET)
        problems.append(AnnotationProblem(annotation, exc.reason))
    if problems or latency is None or ref is None:
        return None, problems
    return FaroAnnotations(
        slo_latency_ms=latency,
        slo_percentile=99.0 if percentile is None else percentile,
        processing_time_ms=processing,
        weight=1.0 if weight is None else weight,
        min_replicas=None if low is None else int(low),
        max_replicas=None if high is None else int(high),
        metrics_preset=ref.preset,
        promql=dict(ref.overrides),
        ref=ref,
    ), []

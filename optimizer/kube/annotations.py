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
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile

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
SLO_TTFT_MS = "faro.dev/slo-ttft-ms"
SLO_ITL_MS = "faro.dev/slo-itl-ms"
LLM_PROFILE = {
    # annotation: (EngineProfile field, integer, lowest value, lowest excluded)
    "faro.dev/llm-step-base-ms": ("step_base_ms", False, 0.0, True),
    "faro.dev/llm-decode-ms-per-seq": ("decode_ms_per_seq", False, 0.0, False),
    "faro.dev/llm-prefill-ms-per-token": ("prefill_ms_per_token", False, 0.0, False),
    "faro.dev/llm-context-ms-per-token": ("context_ms_per_token", False, 0.0, False),
    "faro.dev/llm-max-num-seqs": ("max_num_seqs", True, 1.0, False),
    "faro.dev/llm-max-num-batched-tokens": ("max_num_batched_tokens", True, 1.0, False),
    "faro.dev/llm-kv-cache-tokens": ("kv_cache_tokens", True, 1.0, False),
    "faro.dev/llm-block-size-tokens": ("block_size_tokens", True, 1.0, False),
    "faro.dev/llm-model-load-s": ("model_load_s", False, 0.0, False),
    "faro.dev/llm-ttft-overhead-ms": ("ttft_overhead_ms", False, 0.0, False),
}
"""LLM engine-profile annotations (``EngineProfile`` fields); each pins its field over a calibrated profile."""
LLM_REQUIRED = ("step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "kv_cache_tokens")
"""Profile fields with no default: annotated or calibrated from the engine's metrics."""
KNOWN = {SLO_LATENCY_MS, SLO_PERCENTILE, PROCESSING_TIME_MS, WEIGHT, MIN_REPLICAS, MAX_REPLICAS, METRICS_PRESET,
         ANNOTATION_RAY_APP, ANNOTATION_RAY_DEPLOYMENT, ANNOTATION_MODEL_NAME, SLO_TTFT_MS, SLO_ITL_MS,
         *LLM_PROFILE, *PROMQL}


@dataclass(frozen=True)
class AnnotationProblem:
    annotation: str
    reason: str

    def __str__(self) -> str:
        return f"invalid annotation {self.annotation}: {self.reason}"


@dataclass(frozen=True)
class FaroAnnotations:
    """Validated settings; ``None`` means "not set" (measured / taken from the HPA / flag default).

    An LLM Deployment (``faro.dev/slo-ttft-ms`` and/or ``faro.dev/slo-itl-ms``) has ``llm_slo`` set,
    ``slo_latency_ms`` then holds its primary SLO (TTFT, else ITL) for display, and ``llm_profile`` the
    pinned ``EngineProfile`` fields (the rest comes from calibration, see ``llm_profile``).
    """

    slo_latency_ms: float
    slo_percentile: float = 99.0
    processing_time_ms: float | None = None
    weight: float = 1.0
    min_replicas: int | None = None
    max_replicas: int | None = None
    metrics_preset: str | None = None
    promql: Mapping[str, str] = field(default_factory=dict)
    ref: DeploymentRef | None = None  # what the metrics source is asked (preset, overrides, Ray names)
    llm_slo: LLMSLO | None = None
    llm_profile: Mapping[str, float] = field(default_factory=dict)


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
    is_llm = SLO_TTFT_MS in annotations or SLO_ITL_MS in annotations
    percentile = _number(annotations, SLO_PERCENTILE, problems, low=0.0, low_open=True, high=100.0, high_open=True)
    llm_slo, pinned = None, {}
    if is_llm:
        llm_slo, pinned = _llm(annotations, problems, 99.0 if percentile is None else percentile)
        latency = None if llm_slo is None else (llm_slo.ttft_ms if llm_slo.ttft_ms is not None else llm_slo.itl_ms)
    else:
        if SLO_LATENCY_MS not in annotations:
            problems.append(AnnotationProblem(SLO_LATENCY_MS, "is required (the latency SLO in milliseconds; "
                                                              f"LLM Deployments set {SLO_TTFT_MS}/{SLO_ITL_MS})"))
        latency = _number(annotations, SLO_LATENCY_MS, problems, low=0.0, low_open=True)
        for key in LLM_PROFILE:
            if key in annotations:
                problems.append(AnnotationProblem(key, f"is an LLM engine setting: set {SLO_TTFT_MS} and/or "
                                                       f"{SLO_ITL_MS} to plan this Deployment as an LLM job"))
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
        llm_slo=llm_slo,
        llm_profile=pinned,
    ), []


def _llm(annotations: Mapping[str, str], problems: list[AnnotationProblem],
         percentile: float) -> tuple[LLMSLO | None, dict[str, float]]:
    """The TTFT/ITL SLOs and the pinned engine-profile fields of an LLM Deployment."""
    if SLO_LATENCY_MS in annotations:
        problems.append(AnnotationProblem(SLO_LATENCY_MS, f"does not apply to an LLM Deployment ({SLO_TTFT_MS}/"
                                                          f"{SLO_ITL_MS} are its SLOs); remove it"))
    ttft = _number(annotations, SLO_TTFT_MS, problems, low=0.0, low_open=True)
    itl = _number(annotations, SLO_ITL_MS, problems, low=0.0, low_open=True)
    pinned: dict[str, float] = {}
    for key, (name, integer, low, low_open) in LLM_PROFILE.items():
        value = _number(annotations, key, problems, low=low, low_open=low_open, integer=integer)
        if value is not None:
            pinned[name] = int(value) if integer else value
    seqs, tokens = pinned.get("max_num_seqs"), pinned.get("max_num_batched_tokens")
    if seqs is not None and tokens is not None and tokens < seqs:
        problems.append(AnnotationProblem("faro.dev/llm-max-num-batched-tokens",
                                          f"{int(tokens)} is below faro.dev/llm-max-num-seqs {int(seqs)}: a full "
                                          "batch could not decode"))
    if ttft is None and itl is None:
        return None, pinned
    return LLMSLO(ttft_ms=ttft, itl_ms=itl, percentile=percentile), pinned


_ANNOTATION_OF = {name: key for key, (name, *_rest) in LLM_PROFILE.items()}


def llm_profile(settings: FaroAnnotations, *, gpus: float,
                calibrated: EngineProfile | None = None) -> tuple[EngineProfile | None, str]:
    """An LLM Deployment's engine profile: the pinned annotations over the calibrated profile, with
    ``gpus`` from the pod template's ``nvidia.com/gpu`` requests. Returns (profile, "") or (None, why)."""
    fields: dict[str, float] = {}
    if calibrated is not None:
        fields.update({name: getattr(calibrated, name) for name in _ANNOTATION_OF})
    fields.update(settings.llm_profile)
    fields["gpus"] = float(gpus)
    missing = [_ANNOTATION_OF[name] for name in LLM_REQUIRED if name not in fields]
    if missing:
        return None, (f"no engine profile: set {', '.join(missing)} (or use a metrics preset that calibrates "
                      "the profile)")
    try:
        return EngineProfile(**fields), ""  # type: ignore[arg-type]
    except InvalidInputError as exc:
        name = exc.where.removeprefix("profile.")
        return None, f"invalid engine profile: {_ANNOTATION_OF.get(name, exc.where)}: {exc.reason}"

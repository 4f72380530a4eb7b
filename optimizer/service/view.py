"""Builds the policy's ``ClusterView`` from cluster state and metrics, and says who is held and why.

Called by the control loop once per tick. Pure apart from reading its inputs: no I/O here, so the
benchmark (``bench/loop.py``) and tests call it directly. A Deployment is *held* (kept at its
current replicas, listed in the plan with ``held_reason``) when its annotations are invalid, when
it has no metrics at all yet, or when its processing time is neither annotated nor measured;
everything else goes to the policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.kube.annotations import AnnotationProblem, FaroAnnotations, llm_profile, parse_annotations
from faro.optimizer.kube.state import DeploymentInfo, HpaInfo, KubeSnapshot
from faro.optimizer.metrics.base import DeploymentRef
from faro.optimizer.model.llm_latency import DEFAULT_TOKEN_MIX
from faro.optimizer.model.llm_profile import LLMSpec
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView


@dataclass(frozen=True)
class Observed:
    """The last good observation of a Deployment and when it was made."""

    metrics: Any  # a JobMetrics of faro.optimizer.metrics (duck-typed: rate_history_rpm, latency_ms, ...)
    observed_s: float


@dataclass(frozen=True)
class Held:
    info: DeploymentInfo
    reason: str
    annotations: FaroAnnotations | None = None


@dataclass(frozen=True)
class Cycle:
    """Everything one tick decided before the policy ran."""

    view: ClusterView
    held: tuple[Held, ...]
    problems: Mapping[tuple[str, str], tuple[AnnotationProblem, ...]]
    missing_hpa: tuple[DeploymentInfo, ...]  # planned but no HPA uses faro_desired_replicas
    stale_age_s: Mapping[tuple[str, str], float]  # planned from old observations: age
    settings: Mapping[tuple[str, str], FaroAnnotations]
    infos: Mapping[tuple[str, str], DeploymentInfo]


Parsed = Mapping[tuple[str, str], tuple[FaroAnnotations | None, list[AnnotationProblem]]]


def parse_all(snapshot: KubeSnapshot, *, default_preset: str = "generic") -> Parsed:
    return {d.key: parse_annotations(d.annotations, namespace=d.namespace, name=d.name, default_preset=default_preset)
            for d in snapshot.deployments}


def refs_for(snapshot: KubeSnapshot, parsed: Parsed) -> list[DeploymentRef]:
    """What to ask the metrics source: every Deployment with usable annotations."""
    return [settings.ref for settings, _ in (parsed[d.key] for d in snapshot.deployments)
            if settings is not None and settings.ref is not None]


def is_metrics(value: Any) -> bool:
    return hasattr(value, "rate_history_rpm")


def _bounds(settings: FaroAnnotations, hpa: HpaInfo | None, default_max: int) -> tuple[int, int]:
    low = settings.min_replicas if settings.min_replicas is not None else (hpa.min_replicas if hpa else 1)
    high = settings.max_replicas if settings.max_replicas is not None else (hpa.max_replicas if hpa else default_max)
    return low, high


def _demand(info: DeploymentInfo, key: str) -> float:
    if key == "pods":
        return 1.0
    if key.startswith("limits."):
        name = key.removeprefix("limits.")
        return float(info.limits.get(name, info.requests.get(name, 0.0)))
    return float(info.requests.get(key.removeprefix("requests."), 0.0))


def build_cycle(snapshot: KubeSnapshot, observations: Mapping[tuple[str, str], Observed], *, now_s: float,
                parsed: Parsed | None = None,
                errors: Mapping[tuple[str, str], str] | None = None, cluster_cap: Mapping[str, float] | None = None,
                default_max_replicas: int = 100, stale_after_s: float = 60.0,
                asked: Mapping[tuple[str, str], int] | None = None) -> Cycle:
    """Jobs for the policy from Deployments with valid annotations and usable observations.

    ``observations`` holds the last good metrics per Deployment (the loop keeps them across a
    metrics outage); ``errors`` this tick's metrics failures (reported when nothing good is known).
    Quotas get ``used`` = what the quota reports minus what the planned Deployments take now, so
    the policy's constraint is over the planned Deployments alone.

    ``asked`` are the replicas the previous plan asked for: with HPA actuation ``spec.replicas``
    lags the plan, so the policy's "current" (what is asked for now) is the last desired count,
    else its reactive steps would hold — and re-publish — the old ``spec.replicas``.
    """
    asked = asked or {}
    parsed = parsed if parsed is not None else parse_all(snapshot)
    errors = errors or {}
    jobs: list[JobView] = []
    held: list[Held] = []
    problems: dict[tuple[str, str], tuple[AnnotationProblem, ...]] = {}
    missing_hpa: list[DeploymentInfo] = []
    stale: dict[tuple[str, str], float] = {}
    settings_by_key: dict[tuple[str, str], FaroAnnotations] = {}
    planned: list[DeploymentInfo] = []
    for info in snapshot.deployments:
        settings, found = parsed[info.key]
        if settings is None:
            problems[info.key] = tuple(found)
            held.append(Held(info, "; ".join(map(str, found))))
            continue
        settings_by_key[info.key] = settings
        hpa = snapshot.hpa_for(info.namespace, info.name)
        observed = observations.get(info.key)
        if observed is None:
            held.append(Held(info, f"no metrics: {errors.get(info.key, 'not observed yet')}", settings))
            continue
        metrics = observed.metrics
        llm = None
        if settings.llm_slo is not None:
            # LLM Deployment: the engine profile (pinned annotations over the calibrated one) replaces
            # the processing time; GPUs per replica from the pod template
            profile, why = llm_profile(settings, gpus=float(info.requests.get("nvidia.com/gpu", 0.0)),
                                       calibrated=getattr(metrics, "llm_profile", None))
            if profile is None:
                held.append(Held(info, why, settings))
                continue
            llm = LLMSpec(slo=settings.llm_slo, profile=profile)
            observed_mix = getattr(getattr(metrics, "llm", None), "token_mix", None)
            mean_prompt = (observed_mix or DEFAULT_TOKEN_MIX).mean_prompt_tokens
            processing_ms = float(profile.step_ms(0, mean_prompt))  # descriptive: unloaded prefill time
        else:
            processing_ms = settings.processing_time_ms or getattr(metrics, "processing_time_ms", None)
        if not processing_ms or not math.isfinite(processing_ms) or processing_ms <= 0:
            held.append(Held(info, "no processing time: set faro.dev/processing-time-ms or export a service-time "
                                   "metric", settings))
            continue
        low, high = _bounds(settings, hpa, default_max_replicas)
        try:
            spec = JobSpec(name=info.name, namespace=info.namespace,
                           slo=SLO(settings.slo_latency_ms, settings.slo_percentile),
                           processing_time_ms=float(processing_ms), resources=dict(info.requests),
                           limits=dict(info.limits), weight=settings.weight, min_replicas=low, max_replicas=high,
                           llm=llm)
            if high < low:
                source = "annotation" if settings.max_replicas is not None else "HPA"
                raise InvalidInputError("max replicas", f"{high} (from the {source}) is below min replicas {low}")
        except InvalidInputError as exc:
            held.append(Held(info, f"invalid settings: {exc}", settings))
            continue
        age_s = now_s - observed.observed_s
        if info.key in errors or age_s > stale_after_s or getattr(metrics, "stale", False):
            stale[info.key] = max(0.0, age_s)
        history = metrics.rate_history_rpm
        observation = JobObservation(
            # the loop hands over a tuple already (copying a day of minutes per Deployment cost ≈ 55 ms
            # per cycle at 1,000 Deployments); policies read it as float arrays either way
            rate_history_rpm=history if isinstance(history, tuple) else tuple(map(float, history)),
            latency_ms=getattr(metrics, "latency_ms", None),
            cpu_utilization=getattr(metrics, "cpu_utilization", None),
            queue_length=getattr(metrics, "queue_length", None),
            mean_latency_ms=getattr(metrics, "mean_latency_ms", None),
            llm=getattr(metrics, "llm", None),  # LLMObservation from an LLM metrics preset
            arrival_rate_rps=getattr(metrics, "rate_rps", None),
        )
        jobs.append(JobView(spec=spec, observation=observation, current_replicas=asked.get(info.key, info.replicas),
                            ready_replicas=info.ready_replicas))
        planned.append(info)
        if hpa is None or not hpa.uses_faro_metric:
            missing_hpa.append(info)
    quotas = []
    for quota in snapshot.quotas:
        mine = [i for i in planned if i.namespace == quota.namespace]
        used = {k: max(0.0, quota.used.get(k, 0.0) - sum(i.replicas * _demand(i, k) for i in mine)) for k in quota.hard}
        quotas.append(Quota(name=f"{quota.namespace}/{quota.name}", hard=dict(quota.hard), used=used,
                            namespace=quota.namespace))
    if cluster_cap:
        quotas.append(Quota(name="cluster-cap", hard=dict(cluster_cap)))
    return Cycle(view=ClusterView(now_s=now_s, jobs=tuple(jobs), quotas=tuple(quotas)), held=tuple(held),
                 problems=problems, missing_hpa=tuple(missing_hpa), stale_age_s=stale, settings=settings_by_key,
                 infos={i.key: i for i in snapshot.deployments})

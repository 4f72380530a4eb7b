"""The allocation problem as frozen values: jobs, quotas, model settings, and its constraint matrix.

Built by the problem-file loader (``faro plan``), by policies from a ``ClusterView`` and by the
live controller; consumed by every solver. Quantities are plain floats in canonical units: CPU in
cores, memory in bytes, GPUs and pods as counts; rates in requests per second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import LLMSpec, TokenMix
from numpy.typing import NDArray

OBJECTIVES = ("sum", "fair", "fairsum", "penaltysum", "penaltyfairsum")
"""Objective names (design §3): Faro-Sum, Faro-Fair, Faro-FairSum and the Penalty variants."""


@dataclass(frozen=True)
class SLO:
    """A latency objective: the ``percentile``-th latency must stay at or below ``latency_ms``."""

    latency_ms: float
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not (self.latency_ms > 0 and math.isfinite(self.latency_ms)):
            raise InvalidInputError("slo.latency_ms", f"must be a positive number, got {self.latency_ms!r}")
        if not 0 < self.percentile < 100:
            raise InvalidInputError("slo.percentile", f"must be in (0, 100), got {self.percentile!r}")


@dataclass(frozen=True)
class Job:
    """One inference Deployment as the optimizer sees it.

    ``rate_rps`` is the (forecast) arrival rate per horizon step; ``resources`` the per-replica
    requests keyed like a pod spec (``cpu``, ``memory``, ``nvidia.com/gpu``); ``limits`` optional
    per-replica limits for ``limits.*`` quotas (default: the requests).

    An LLM job (``llm`` set, built with ``Job.for_llm``) is modelled by the continuous-batching model
    (``llm_latency.py``) from its TTFT/ITL SLOs, engine profile and ``token_mix``; its ``slo`` and
    ``processing_time_ms`` are then only descriptive (the primary SLO and the unloaded prefill time of
    the mean prompt) and its replicas request ``profile.gpus`` ``nvidia.com/gpu`` unless ``resources``
    says so itself.
    """

    name: str
    slo: SLO
    processing_time_ms: float
    rate_rps: tuple[float, ...]
    namespace: str = "default"
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1.0})
    limits: Mapping[str, float] = field(default_factory=dict)
    weight: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 100
    current_replicas: int = 1
    llm: LLMSpec | None = None
    token_mix: TokenMix | None = None  # LLM jobs: the prompt/output lengths to plan for
    rate_spread_rps: tuple[tuple[float, ...], ...] = ()  # LLM jobs: scenario offsets (S × H) to average over

    def __post_init__(self) -> None:
        where = f"job {self.namespace}/{self.name}"
        if self.llm is not None:
            if self.token_mix is None:
                raise InvalidInputError(f"{where}.token_mix", "an LLM job needs a token mix to plan for")
            gpus = float(self.llm.profile.gpus)
            if "nvidia.com/gpu" not in self.resources:
                if gpus > 0:
                    object.__setattr__(self, "resources", {**self.resources, "nvidia.com/gpu": gpus})
            elif float(self.resources["nvidia.com/gpu"]) != gpus:
                raise InvalidInputError(
                    f"{where}.resources.nvidia.com/gpu",
                    f"{self.resources['nvidia.com/gpu']:g} differs from the profile's gpus {gpus:g}",
                )
        if not self.name:
            raise InvalidInputError("job.name", "must not be empty")
        if not (self.processing_time_ms > 0 and math.isfinite(self.processing_time_ms)):
            raise InvalidInputError(f"{where}.processing_time_ms", "must be a positive number")
        if not self.rate_rps:
            raise InvalidInputError(f"{where}.rate_rps", "needs at least one horizon step")
        if any(not (r >= 0 and math.isfinite(r)) for r in self.rate_rps):
            raise InvalidInputError(f"{where}.rate_rps", "rates must be finite and >= 0")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise InvalidInputError(f"{where}.weight", "must be a finite number >= 0")
        if self.min_replicas < 0:
            raise InvalidInputError(f"{where}.min_replicas", "must be >= 0")
        if self.max_replicas < self.min_replicas:
            raise InvalidInputError(
                f"{where}.max_replicas",
                f"{self.max_replicas} is below min_replicas {self.min_replicas}",
            )
        if self.current_replicas < 0:
            raise InvalidInputError(f"{where}.current_replicas", "must be >= 0")
        for key, value in self.resources.items():
            if not (value >= 0 and math.isfinite(value)):
                raise InvalidInputError(f"{where}.resources.{key}", "must be a finite quantity >= 0")

    @classmethod
    def for_llm(
        cls, name: str, *, llm: LLMSpec, token_mix: TokenMix, rate_rps: tuple[float, ...], **fields: object
    ) -> Job:
        """An LLM job; ``slo``/``processing_time_ms`` are filled from the LLM spec (descriptive only)."""
        slo = llm.slo
        primary = slo.ttft_ms if slo.ttft_ms is not None else slo.itl_ms
        assert primary is not None  # LLMSLO guarantees one
        unloaded_ms = float(llm.profile.step_ms(0, token_mix.mean_prompt_tokens))
        fields.setdefault("resources", {})  # an LLM replica asks for its GPUs (added from the profile)
        return cls(
            name=name, slo=SLO(primary, slo.percentile), processing_time_ms=unloaded_ms, rate_rps=rate_rps,
            llm=llm, token_mix=token_mix, **fields,  # type: ignore[arg-type]
        )

    def demand(self, quota_resource: str) -> float:
        """Per-replica use of a quota resource name (``cpu``, ``requests.cpu``, ``limits.memory``,
        ``pods``, ``requests.nvidia.com/gpu`` …), as ResourceQuota accounting counts it."""
        if quota_resource == "pods":
            return 1.0
        if quota_resource.startswith("limits."):
            key = quota_resource.removeprefix("limits.")
            return float(self.limits.get(key, self.resources.get(key, 0.0)))
        key = quota_resource.removeprefix("requests.")
        return float(self.resources.get(key, 0.0))


@dataclass(frozen=True)
class Quota:
    """A ResourceQuota (``namespace`` set) or the cluster cap (``namespace`` None).

    ``hard`` are the limits; ``used`` is what pods Faro does not manage already take.
    """

    name: str
    hard: Mapping[str, float]
    used: Mapping[str, float] = field(default_factory=dict)
    namespace: str | None = None

    def applies_to(self, job: Job) -> bool:
        return self.namespace is None or self.namespace == job.namespace

    def free(self, resource: str) -> float:
        return float(self.hard[resource]) - float(self.used.get(resource, 0.0))


@dataclass(frozen=True)
class ModelConfig:
    """Latency/utility model settings (design §3).

    ``step_s`` is the length of one horizon step; ``cold_start_s`` the time a new replica needs to
    serve, so a growing job keeps its old count for ``ceil(cold_start_s/step_s)`` steps.
    """

    rho_max: float = 0.95
    alpha: float = 1.0
    step_s: float = 60.0
    cold_start_s: float = 35.0

    def __post_init__(self) -> None:
        if not 0 < self.rho_max < 1:
            raise InvalidInputError("model.rho_max", "must be in (0, 1)")
        if not self.alpha > 0:
            raise InvalidInputError("model.alpha", "must be > 0")
        if not self.step_s > 0:
            raise InvalidInputError("model.step_s", "must be > 0")
        if not self.cold_start_s >= 0:
            raise InvalidInputError("model.cold_start_s", "must be >= 0")

    @property
    def cold_start_steps(self) -> int:
        return math.ceil(self.cold_start_s / self.step_s)

    def startup_steps(self, job: Job) -> int:
        """Horizon steps before a new replica of ``job`` serves: its model load (LLM jobs), else the cold start."""
        if job.llm is not None:
            return math.ceil(job.llm.profile.model_load_s / self.step_s)
        return self.cold_start_steps


def serving_horizon(jobs: Sequence[Job], config: ModelConfig) -> int:
    """The fewest horizon steps in which a new replica of every job serves in at least one.

    A plan is judged by its mean utility over the horizon, and a growing job keeps its current count
    until its new replicas start; on a shorter horizon adding a replica changes nothing the objective
    sees, so no plan would ever scale up."""
    return 1 + max((config.startup_steps(job) for job in jobs), default=0)


@dataclass(frozen=True)
class Problem:
    """Jobs, the quotas that bound them, the objective to maximise and the model settings."""

    jobs: tuple[Job, ...]
    quotas: tuple[Quota, ...] = ()
    objective: str = "sum"
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InvalidInputError("objective", f"must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        seen: set[tuple[str, str]] = set()
        for job in self.jobs:
            key = (job.namespace, job.name)
            if key in seen:
                raise InvalidInputError(f"job {job.namespace}/{job.name}", "appears twice")
            seen.add(key)

    def constraints(self) -> Constraints:
        """Linear resource constraints ``A @ replicas <= b`` over every quota and resource.

        Built column-wise (each job's demand per quota resource looked up once), so thousands of
        jobs cost milliseconds. Rows whose quota covers none of the jobs are left out.
        """
        namespaces = np.array([job.namespace for job in self.jobs], dtype=object)
        demand: dict[str, NDArray[np.float64]] = {}
        rows: list[NDArray[np.float64]] = []
        bounds: list[float] = []
        labels: list[str] = []
        for quota in self.quotas:
            member = np.ones(len(self.jobs), dtype=bool) if quota.namespace is None else namespaces == quota.namespace
            for resource in quota.hard:
                if resource not in demand:
                    demand[resource] = np.array([job.demand(resource) for job in self.jobs], dtype=float)
                row = np.where(member, demand[resource], 0.0)
                if not row.any():
                    continue
                rows.append(row)
                bounds.append(quota.free(resource))
                labels.append(f"{quota.name}:{resource}")
        matrix = np.vstack(rows) if rows else np.zeros((0, len(self.jobs)))
        return Constraints(matrix=matrix, bound=np.array(bounds, dtype=float), labels=tuple(labels))


@dataclass(frozen=True)
class Constraints:
    """``matrix[k, i]`` is job i's per-replica use of constraint k; ``bound[k]`` what is free."""

    matrix: NDArray[np.float64]
    bound: NDArray[np.float64]
    labels: tuple[str, ...]

    def usage(self, replicas: NDArray) -> NDArray[np.float64]:
        return self.matrix @ np.asarray(replicas, dtype=float)

    def satisfied(self, replicas: NDArray, *, tol: float = 1e-9) -> bool:
        return bool(np.all(self.usage(replicas) <= self.bound + tol * np.maximum(1.0, np.abs(self.bound))))

"""What a policy sees and returns: ``ClusterView`` in, ``Decision`` (a ``Plan`` and new state) out.

The simulator (``optimizer/sim``) and the live controller (``optimizer/service``) build the same
``ClusterView`` and call the same ``Policy.decide``; policies never read a clock (``view.now_s`` is the
time) and never do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from faro.optimizer.model.llm_profile import LLMObservation, LLMSpec
from faro.optimizer.model.problem import SLO, Quota


@dataclass(frozen=True)
class JobSpec:
    """The declared side of a job: what its Deployment's annotations and pod template say."""

    name: str
    slo: SLO
    processing_time_ms: float
    namespace: str = "default"
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1.0})
    limits: Mapping[str, float] = field(default_factory=dict)
    weight: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 100
    llm: LLMSpec | None = None  # set for LLM jobs (TTFT/ITL SLOs, engine profile); ``slo`` then unused

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class JobObservation:
    """What was measured of a job up to ``ClusterView.now_s``.

    ``rate_history_rpm``: requests per completed minute, oldest first (NaN = missing minute).
    ``latency_ms``: observed SLO-percentile latency over the last reactive window (None = no data).
    ``mean_latency_ms``: observed mean latency over the same window (the Faro artifact's reactive and
    AIAD/Oneshot rules compare the 30 s *mean* with the SLO; None = not measured, policies then fall
    back to ``latency_ms``).
    ``cpu_utilization``: busy fraction of the ready replicas over that window (None = no data).
    ``future_rate_rpm``: the true coming minutes — only the simulator's Oracle gets it.
    ``llm``: TTFT/ITL, KV-cache use, queue and token mix of an LLM job (None for other jobs).
    ``arrival_rate_rps``: requests per second that arrived over the last window (queued and dropped ones
    included; None = not measured) — what the reactive step sizes a burst from before its minute completes.
    """

    rate_history_rpm: tuple[float, ...] = ()
    latency_ms: float | None = None
    cpu_utilization: float | None = None
    queue_length: float | None = None
    future_rate_rpm: tuple[float, ...] | None = None
    mean_latency_ms: float | None = None
    llm: LLMObservation | None = None
    arrival_rate_rps: float | None = None


@dataclass(frozen=True)
class JobView:
    spec: JobSpec
    observation: JobObservation
    current_replicas: int  # replicas asked for now (the Deployment's spec.replicas)
    ready_replicas: int


@dataclass(frozen=True)
class ClusterView:
    now_s: float
    jobs: tuple[JobView, ...]
    quotas: tuple[Quota, ...] = ()


@dataclass(frozen=True)
class Target:
    """One job's line of a plan: the one type for a policy's answer and for a published plan's line
    (``faro.v1.Target`` on the wire, where ``name`` is called ``deployment``).

    Policies fill the fields up to ``admission``; the live loop adds what it observed when it publishes
    (the SLO, the observed latency and how stale the observations are).
    """

    namespace: str
    name: str
    desired_replicas: int
    current_replicas: int
    forecast_rps: float = 0.0
    expected_latency_ms: float = 0.0
    expected_utility: float = 0.0
    held_reason: str = ""
    admission: float = 1.0  # fraction of requests to admit (Penalty objectives); 1 = admit all
    slo_latency_ms: float = 0.0
    slo_percentile: float = 0.0
    observed_latency_ms: float = 0.0
    stale: bool = False  # observations not fresh: planned from the last good ones, observations_age_s old
    observations_age_s: float = 0.0
    # Why this count, added by the live loop for `faro status` (optimizer/service/explain.py); 0/"" = unknown.
    ready_replicas: int = 0
    forecast_quantile: float = 0.0
    latency_one_fewer_ms: float = 0.0  # steady-state, at forecast_rps, with desired - 1 / desired / desired + 1
    steady_latency_ms: float = 0.0
    latency_one_more_ms: float = 0.0
    binding_quota: str = ""  # what stops one more replica ("" = it would fit)
    # The engine profile an LLM job was planned with (0/"" for other jobs), added by the live loop.
    llm_step_base_ms: float = 0.0
    llm_decode_ms_per_seq: float = 0.0
    llm_prefill_ms_per_token: float = 0.0
    llm_kv_cache_tokens: int = 0
    llm_profile_source: str = ""  # "calibrated", "calibrated+pinned" or "declared"
    llm_profile_fit_error: float = 0.0  # the calibration's weighted mean relative error (0 = not calibrated)
    llm_ttft_overhead_ms: float = 0.0  # front-end time outside the engine added to every TTFT


@dataclass(frozen=True)
class Plan:
    """Desired replicas for every job of the view, and how it was made."""

    targets: tuple[Target, ...]
    objective_value: float | None = None
    solver_status: str = ""
    solve_ms: float = 0.0
    kind: str = "hold"  # "solve" (long-horizon), "reactive", "hold", "baseline"

    def desired(self) -> dict[tuple[str, str], int]:
        return {(t.namespace, t.name): t.desired_replicas for t in self.targets}


StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Decision(Generic[StateT]):
    plan: Plan
    state: StateT


class Policy(Protocol[StateT]):
    """A scaling policy: a pure function of the view and its own previous state."""

    name: str
    needs_future: bool  # True only for the Oracle: the simulator then fills ``future_rate_rpm``

    def initial_state(self) -> StateT: ...

    def decide(self, view: ClusterView, state: StateT) -> Decision[StateT]: ...


PolicyFactory = Any  # callable(**options) -> Policy; see registry.py

"""Knative's Pod Autoscaler (KPA) on request concurrency, as a baseline for LLM jobs (KServe's default).

Follows ``pkg/autoscaler/scaling/autoscaler.go`` of knative/serving with its defaults: every tick (2 s)
the in-flight requests of a model (vLLM's waiting + running; Knative's queue-proxies count the same)
are sampled; the *stable* value is their mean over the last ``stable_window_s`` (60 s), the *panic* value
over ``panic_window_s`` (6 s, 10% of it). With ``target`` = ``container_concurrency_target`` (100) ×
``target_utilization`` (0.7) per replica: desired_stable = ⌈stable / target⌉, desired_panic =
⌈panic / target⌉. Panic mode starts when desired_panic / ready ≥ ``panic_threshold`` (2.0) and ends a
stable window after the last time it held; in panic the count never goes down (the largest desired_panic
seen). Rates: at most ×1000 up, ÷2 down per decision (``max-scale-up-rate``, ``max-scale-down-rate``).
The KPA knows no quota: pods beyond it stay pending. Registered as ``kpa``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import Key, clip_to_quota, current_replicas, make_plan, quota_order_of


@dataclass(frozen=True)
class KPAJobState:
    samples: tuple[tuple[float, float], ...] = ()  # (time_s, in-flight requests)
    panic_since_s: float | None = None  # when the panic threshold was last exceeded (None: not panicking)
    panic_desired: int = 0


@dataclass(frozen=True)
class KPAState:
    jobs: Mapping[Key, KPAJobState] = field(default_factory=dict)


class KnativeKPAPolicy:
    name = "kpa"
    needs_future = False

    def __init__(
        self,
        *,
        container_concurrency_target: float = 100.0,
        target_utilization: float = 0.7,
        stable_window_s: float = 60.0,
        panic_window_s: float = 6.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        interval_s: float = 2.0,
        quota_order: str = "none",
    ) -> None:
        if not (container_concurrency_target > 0 and 0 < target_utilization <= 1):
            raise ValueError("kpa: need container_concurrency_target > 0 and 0 < target_utilization <= 1")
        if not (0 < panic_window_s <= stable_window_s and interval_s > 0):
            raise ValueError("kpa: need 0 < panic_window_s <= stable_window_s and interval_s > 0")
        if not (panic_threshold > 1 and max_scale_up_rate > 1 and max_scale_down_rate > 1):
            raise ValueError("kpa: panic_threshold, max_scale_up_rate and max_scale_down_rate must be > 1")
        self.target = float(container_concurrency_target) * float(target_utilization)
        self.stable_s = float(stable_window_s)
        self.panic_s = float(panic_window_s)
        self.panic_threshold = float(panic_threshold)
        self.up_rate = float(max_scale_up_rate)
        self.down_rate = float(max_scale_down_rate)
        self.interval_s = float(interval_s)
        self.quota_order = quota_order_of("kpa", quota_order)

    def initial_state(self) -> KPAState:
        return KPAState()

    def _one(
        self, now_s: float, current: int, ready: int, in_flight: float | None, st: KPAJobState
    ) -> tuple[int, KPAJobState]:
        samples = st.samples
        if in_flight is not None:
            samples = (*samples, (now_s, in_flight))
        samples = tuple(s for s in samples if s[0] > now_s - self.stable_s)
        if not samples:
            return current, KPAJobState(samples=(), panic_since_s=st.panic_since_s, panic_desired=st.panic_desired)
        stable = sum(v for _, v in samples) / len(samples)
        recent = [v for t, v in samples if t > now_s - self.panic_s]
        panic = sum(recent) / len(recent) if recent else stable
        want_stable = math.ceil(stable / self.target - 1e-9)
        want_panic = math.ceil(panic / self.target - 1e-9)
        pods = max(ready, 1)
        lo, hi = math.floor(pods / self.down_rate), math.ceil(pods * self.up_rate)
        want_stable = min(max(want_stable, lo), hi)
        want_panic = min(max(want_panic, lo), hi)
        panic_since, panic_desired = st.panic_since_s, st.panic_desired
        if want_panic / pods >= self.panic_threshold:
            panic_since = now_s  # (re)enter panic: it lasts a stable window after the last trigger
        elif panic_since is not None and now_s - panic_since >= self.stable_s:
            panic_since, panic_desired = None, 0
        if panic_since is not None:
            panic_desired = max(panic_desired, want_panic, current)  # never scale down while panicking
            desired = panic_desired
        else:
            desired = want_stable
        return desired, KPAJobState(samples=samples, panic_since_s=panic_since, panic_desired=panic_desired)

    def decide(self, view: ClusterView, state: KPAState) -> Decision[KPAState]:
        desired = current_replicas(view).copy()
        jobs = dict(state.jobs)
        for i, jv in enumerate(view.jobs):
            obs = jv.observation.llm
            in_flight = None
            if obs is not None and obs.num_waiting is not None and obs.num_running is not None:
                in_flight = obs.num_waiting + obs.num_running
            want, jobs[jv.spec.key] = self._one(
                view.now_s, jv.current_replicas, jv.ready_replicas, in_flight, jobs.get(jv.spec.key, KPAJobState())
            )
            desired[i] = min(max(want, jv.spec.min_replicas), jv.spec.max_replicas)
        desired = clip_to_quota(view, desired, self.quota_order)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=KPAState(jobs=jobs))

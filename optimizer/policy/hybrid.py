"""The hybrid control skeleton shared by the Faro variants, MArk and the Oracle.

A slow, predictive *long-horizon step* on a fixed grid (``interval_s``, 300 s as in the paper;
the first one already at ``first_long_s``, 60 s, so a cold cluster does not wait five minutes —
the artifact does the same) and, at every other check (10 s in the simulator), a fast
*reactive step*: +1 replica for a job whose observed latency exceeded its SLO on ``up_checks``
(3) consecutive checks, never down, within the free quota, and not while the job still has
replicas starting (the artifact skips jobs whose scaling action is running). A long-horizon step
clears the reactive counters (the artifact clears lower-priority policies). With ``initial_split``
(on for Faro and the Oracle), the very first check before any long step splits the free quota evenly
(``initial_split``): with no history there is nothing better, and waiting costs a cold start.

With ``burst_scaling`` (on for Faro and the Oracle) the reactive step also raises, at once, any job
whose observed arrival rate (``JobObservation.arrival_rate_rps``) plus queue needs more replicas than it
has (``burst_need``), within the free quota: a burst from idle to full load is met at the first check
whose rate window shows it, not by +1 every three checks.

Subclasses implement ``long_step``. Time comes only from ``view.now_s``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision, Plan
from faro.optimizer.policy.common import (
    CounterState,
    Key,
    bounds,
    clip_to_quota,
    count_checks,
    current_replicas,
    fit_to_quota,
    make_plan,
    quota_order_of,
    reset,
)
from faro.optimizer.policy.forecasting import ForecastState
from numpy.typing import NDArray


@dataclass(frozen=True)
class HybridState:
    """``last_long_s``: time of the last long-horizon step (None before the first);
    ``counters``: reactive streaks; ``forecast``: the fitted forecaster; ``quantile``: the forecast
    quantile the last long step settled on (reporting only); ``admission``: the admission rates the
    last long step planned (Penalty objectives), kept by the reactive steps until the next one."""

    last_long_s: float | None = None
    counters: CounterState = field(default_factory=CounterState)
    forecast: ForecastState = field(default_factory=ForecastState)
    quantile: float | None = None
    long_steps: int = 0
    warmed: bool = False
    admission: Mapping[Key, float] = field(default_factory=dict)  # the last long step's, until the next
    calibration: Any = None  # per-job planning levels (``calibration.CoverageState``) when calibrated


class HybridPolicy(ABC):
    """Base class: scheduling of long vs reactive steps; subclasses provide ``long_step``."""

    name = "hybrid"
    needs_future = False

    def __init__(
        self,
        *,
        interval_s: float = 300.0,
        llm_interval_s: float = 60.0,
        first_long_s: float = 60.0,
        up_checks: int = 3,
        reactive: bool = True,
        reactive_metric: str = "mean",
        reactive_cumulative: bool = False,
        reactive_skip_scaling: bool = True,
        initial_split: bool = False,
        quota_order: str = "fair",
        burst_scaling: bool = False,
        burst_rho: float = 0.9,
        burst_drain_s: float = 10.0,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"{self.name}: interval_s must be > 0")
        if not llm_interval_s > 0:
            raise ValueError(f"{self.name}: llm_interval_s must be > 0")
        if first_long_s < 0:
            raise ValueError(f"{self.name}: first_long_s must be >= 0")
        if up_checks < 1:
            raise ValueError(f"{self.name}: up_checks must be >= 1")
        if reactive_metric not in ("mean", "percentile"):
            raise ValueError(f"{self.name}: reactive_metric must be 'mean' or 'percentile'")
        self.interval_s = float(interval_s)
        # a new LLM replica serves minutes after it is asked for (model load), so waiting up to a whole
        # long interval to act on a rising forecast costs more than the minute-by-minute solves do
        self.llm_interval_s = float(llm_interval_s)
        self.first_long_s = float(first_long_s)
        self.up_checks = int(up_checks)
        self.reactive = bool(reactive)
        self.reactive_metric = reactive_metric
        self.reactive_cumulative = bool(reactive_cumulative)
        self.reactive_skip_scaling = bool(reactive_skip_scaling)
        self.initial_split = bool(initial_split)
        self.quota_order = quota_order_of(self.name, quota_order)
        if not 0 < burst_rho < 1:
            raise ValueError(f"{self.name}: burst_rho must be in (0, 1)")
        if not burst_drain_s > 0:
            raise ValueError(f"{self.name}: burst_drain_s must be > 0")
        self.burst_scaling = bool(burst_scaling)
        self.burst_rho = float(burst_rho)
        self.burst_drain_s = float(burst_drain_s)

    def initial_state(self) -> HybridState:
        return HybridState()

    def interval_for(self, view: ClusterView) -> float:
        """The long-step interval: ``interval_s``, or ``llm_interval_s`` when shorter and the view has an
        LLM job."""
        if any(jv.spec.llm is not None for jv in view.jobs):
            return min(self.interval_s, self.llm_interval_s)
        return self.interval_s

    def long_due(self, now_s: float, state: HybridState, interval_s: float | None = None) -> bool:
        """On the ``interval_s`` grid (0, 300, 600 … s), plus the first step at ``first_long_s``."""
        eps = 1e-6
        interval = self.interval_s if interval_s is None else interval_s
        if state.last_long_s is None:
            return now_s + eps >= min(self.first_long_s, interval)
        return math.floor((now_s + eps) / interval) > math.floor((state.last_long_s + eps) / interval)

    @abstractmethod
    def long_step(self, view: ClusterView, state: HybridState) -> tuple[Plan, HybridState]:
        """The long-horizon decision (forecast + plan) of the concrete policy."""

    def reactive_step(self, view: ClusterView, state: HybridState) -> tuple[Plan, HybridState]:
        cur = current_replicas(view)
        admission = [state.admission.get(jv.spec.key, 1.0) for jv in view.jobs]
        if not self.reactive:
            return make_plan(view, fit_to_quota(view, cur), kind="hold", admission=admission), state
        counters, ups, _ = count_checks(
            view,
            state.counters,
            metric=self.reactive_metric,
            skip_scaling=self.reactive_skip_scaling,
            cumulative_up=self.reactive_cumulative,
        )
        grow = ups >= self.up_checks
        counters = reset(counters, view, grow, which="up")
        want = cur + grow.astype(np.int64)
        if self.burst_scaling:
            need = burst_need(view, rho=self.burst_rho, drain_s=self.burst_drain_s)
            burst = need > want
            want = np.where(burst, need, want)
            counters = reset(counters, view, burst, which="up")
        desired = clip_to_quota(view, want, self.quota_order)
        kind = "reactive" if np.any(desired > cur) else "hold"
        return make_plan(view, desired, kind=kind, admission=admission), replace(state, counters=counters)

    def decide(self, view: ClusterView, state: HybridState) -> Decision[HybridState]:
        if not view.jobs:
            return Decision(plan=Plan(targets=()), state=state)
        if self.initial_split and not state.warmed and state.last_long_s is None:
            state = replace(state, warmed=True)
            if view.quotas and not self.long_due(view.now_s, state, self.interval_for(view)):
                # nothing is known before the first long step (no history yet): rather than wait a
                # minute plus a cold start on one replica each, split the free quota max-min fairly now
                return Decision(plan=make_plan(view, initial_split(view), kind="initial"), state=state)
        if self.long_due(view.now_s, state, self.interval_for(view)):
            plan, new_state = self.long_step(view, state)
            new_state = replace(
                new_state, last_long_s=view.now_s, counters=CounterState(), long_steps=state.long_steps + 1,
                admission={(t.namespace, t.name): t.admission for t in plan.targets if t.admission < 1.0},
            )
            return Decision(plan=plan, state=new_state)
        plan, new_state = self.reactive_step(view, state)
        return Decision(plan=plan, state=new_state)


def burst_need(view: ClusterView, *, rho: float, drain_s: float) -> NDArray[np.int64]:
    """Per job, the replicas the load arriving *now* needs: the window's arrival rate plus the queue
    drained within ``drain_s``, at utilisation ``rho`` — ``ceil((rate + queue/drain_s) × s / rho)``;
    for an LLM job the same demand (its waiting requests as the queue) over the per-replica rate that
    meets both its SLOs for the observed token mix (``faro_llm.llm_burst_need``: a step's time is no
    service time). 0 where the arrival rate is not measured. Sized from the observed rate, so a burst
    from idle to full load is met in one check instead of +1 per ``up_checks`` checks."""
    from faro.optimizer.policy.faro_llm import llm_burst_need

    out = np.zeros(len(view.jobs), dtype=np.int64)
    llm = llm_burst_need(view, rho=rho, drain_s=drain_s)
    for i, jv in enumerate(view.jobs):
        if jv.spec.llm is not None:
            out[i] = llm.get(i, 0)
            continue
        obs = jv.observation
        rate = obs.arrival_rate_rps
        if rate is None or not math.isfinite(rate) or rate <= 0:
            continue
        queue = obs.queue_length if obs.queue_length is not None and math.isfinite(obs.queue_length) else 0.0
        demand = rate + max(0.0, queue) / drain_s
        out[i] = math.ceil(demand * jv.spec.processing_time_ms / 1000.0 / rho - 1e-9)
    return out


def initial_split(view: ClusterView) -> NDArray[np.int64]:
    """Raise every job to the highest common level ``L`` (never below its current count) that fits
    every quota, then hand out what is left one replica at a time, max-min fairly."""
    cur = current_replicas(view)
    lo, hi = bounds(view)
    base = np.maximum(cur, lo)

    def level(k: int) -> NDArray[np.int64]:
        return np.minimum(np.maximum(base, k), np.maximum(hi, base))

    good, bad = 0, int(hi.max(initial=0)) + 1
    while bad - good > 1:  # the largest level that fits as asked
        mid = (good + bad) // 2
        if np.array_equal(fit_to_quota(view, level(mid)), level(mid)):
            good = mid
        else:
            bad = mid
    return fit_to_quota(view, level(good + 1))


def options_summary(policy: Any) -> dict[str, Any]:
    """The public settings of a policy (for reports)."""
    return {k: v for k, v in vars(policy).items() if not k.startswith("_")}

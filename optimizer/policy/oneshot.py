"""Oneshot baseline: jump to ``ceil(current × latency/SLO)`` replicas in one step.

Uses the same streak counters as AIAD (the Faro artifact's ``oneshot`` shares AIAD's thresholds):
after ``up_checks`` (3) consecutive checks over the SLO, or ``down_checks`` (60) at or under it,
the job's count becomes ``ceil(current × latency/SLO)`` (latency: the window mean by default; no
data counts as 0, so an idle job falls to its minimum). Scale-ups are clipped to the free quota
fairly. Registered as ``oneshot``.
"""

from __future__ import annotations

import math

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import (
    CounterState,
    count_checks,
    current_replicas,
    fit_to_quota,
    make_plan,
    observed_latency_ms,
    reset,
)


def oneshot_target(current: int, latency_ms: float | None, slo_ms: float) -> int:
    """``ceil(current × latency/SLO)``; an unmeasured latency counts as 0, an infinite one doubles."""
    if latency_ms is None:
        return 0
    if not math.isfinite(latency_ms):
        return 2 * max(1, current)
    return math.ceil(current * latency_ms / slo_ms - 1e-9)


class OneshotPolicy:
    name = "oneshot"
    needs_future = False

    def __init__(self, *, up_checks: int = 3, down_checks: int = 60, metric: str = "mean") -> None:
        if up_checks < 1 or down_checks < 1:
            raise ValueError("oneshot: up_checks and down_checks must be >= 1")
        if metric not in ("mean", "percentile"):
            raise ValueError("oneshot: metric must be 'mean' or 'percentile'")
        self.up_checks = int(up_checks)
        self.down_checks = int(down_checks)
        self.metric = metric

    def initial_state(self) -> CounterState:
        return CounterState()

    def decide(self, view: ClusterView, state: CounterState) -> Decision[CounterState]:
        counters, ups, downs = count_checks(view, state, metric=self.metric)
        grow = ups >= self.up_checks
        shrink = downs >= self.down_checks
        counters = reset(reset(counters, view, grow, which="up"), view, shrink, which="down")
        desired = current_replicas(view).copy()
        for i, jv in enumerate(view.jobs):
            if grow[i] or shrink[i]:
                latency = observed_latency_ms(jv, metric=self.metric)
                desired[i] = oneshot_target(jv.current_replicas, latency, jv.spec.slo.latency_ms)
        desired = fit_to_quota(view, np.asarray(desired))
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=counters)

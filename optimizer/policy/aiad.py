"""AIAD baseline: additive increase, additive decrease on the observed latency.

Every check (one per ``decide`` call, 10 s in the simulator) compares the job's latency (the
window mean by default, as the Faro artifact's ``aiad`` with ``avg_latency``) with its SLO: after
``up_checks`` (3) consecutive checks over it the job gets +1 replica; after ``down_checks`` (60)
consecutive checks at or under it, −1. Acting resets that counter. Scale-ups are clipped to the
free quota fairly. Registered as ``aiad``.
"""

from __future__ import annotations

from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import CounterState, count_checks, current_replicas, fit_to_quota, make_plan, reset


class AIADPolicy:
    name = "aiad"
    needs_future = False

    def __init__(self, *, up_checks: int = 3, down_checks: int = 60, metric: str = "mean") -> None:
        if up_checks < 1 or down_checks < 1:
            raise ValueError("aiad: up_checks and down_checks must be >= 1")
        if metric not in ("mean", "percentile"):
            raise ValueError("aiad: metric must be 'mean' or 'percentile'")
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
        desired = current_replicas(view) + grow.astype(int) - shrink.astype(int)
        desired = fit_to_quota(view, desired)
        kind = "baseline"
        return Decision(plan=make_plan(view, desired, kind=kind), state=counters)

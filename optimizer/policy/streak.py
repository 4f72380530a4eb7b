"""Shared shape of the streak-triggered baselines (AIAD, Oneshot).

Every check (one ``decide`` call) compares each job's observed latency with its SLO; after
``up_checks`` consecutive checks over it the job grows, after ``down_checks`` at or under it the job
shrinks, and acting resets that counter. Subclasses only say how big the move is (``resize``).
Scale-ups are clipped to the free quota first come, first served in job order (``quota_order="job"``,
as the Faro artifact's controller grants the actions of per-job autoscalers) or max-min fairly
(``"fair"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import CounterState, clip_to_quota, count_checks, make_plan, quota_order_of, reset
from numpy.typing import NDArray


class StreakPolicy(ABC):
    name = "streak"
    needs_future = False

    def __init__(
        self, *, up_checks: int = 3, down_checks: int = 60, metric: str = "mean", quota_order: str = "job"
    ) -> None:
        if up_checks < 1 or down_checks < 1:
            raise ValueError(f"{self.name}: up_checks and down_checks must be >= 1")
        if metric not in ("mean", "percentile"):
            raise ValueError(f"{self.name}: metric must be 'mean' or 'percentile'")
        self.up_checks = int(up_checks)
        self.down_checks = int(down_checks)
        self.metric = metric
        self.quota_order = quota_order_of(self.name, quota_order)

    def initial_state(self) -> CounterState:
        return CounterState()

    def decide(self, view: ClusterView, state: CounterState) -> Decision[CounterState]:
        counters, ups, downs = count_checks(view, state, metric=self.metric)
        grow = ups >= self.up_checks
        shrink = downs >= self.down_checks
        counters = reset(reset(counters, view, grow, which="up"), view, shrink, which="down")
        desired = clip_to_quota(view, self.resize(view, grow, shrink), self.quota_order)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=counters)

    @abstractmethod
    def resize(self, view: ClusterView, grow: NDArray[np.bool_], shrink: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Desired replicas per job given which jobs' streaks fired."""

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
from faro.optimizer.policy.base import ClusterView
from faro.optimizer.policy.common import current_replicas, observed_latency_ms
from faro.optimizer.policy.streak import StreakPolicy
from numpy.typing import NDArray


def oneshot_target(current: int, latency_ms: float | None, slo_ms: float) -> int:
    """``ceil(current × latency/SLO)``; an unmeasured latency counts as 0, an infinite one doubles."""
    if latency_ms is None:
        return 0
    if not math.isfinite(latency_ms):
        return 2 * max(1, current)
    return math.ceil(current * latency_ms / slo_ms - 1e-9)


class OneshotPolicy(StreakPolicy):
    name = "oneshot"

    def resize(self, view: ClusterView, grow: NDArray[np.bool_], shrink: NDArray[np.bool_]) -> NDArray[np.int64]:
        desired = current_replicas(view).copy()
        for i, jv in enumerate(view.jobs):
            if grow[i] or shrink[i]:
                latency = observed_latency_ms(jv, metric=self.metric)
                desired[i] = oneshot_target(jv.current_replicas, latency, jv.spec.slo.latency_ms)
        return np.asarray(desired)

"""Kubernetes HPA on CPU utilisation (``autoscaling/v2`` Resource metric, target 70%).

Follows the HPA controller's rule: ``ratio = utilisation/target``; within the tolerance
(|ratio − 1| ≤ 0.1, inclusive) the count stays, else ``ceil(ratio × ready replicas)``. Then the
default ``behavior``: scale-down stabilization (the highest recommendation of the last
``downscale_stabilization_s``, 300 s) and the scale-up rate limit (at most max(100%, 4 pods) more
per decision), and the min/max clamp. No utilisation measured or no ready replica ⇒ no change
(the HPA skips jobs without metrics). HPAs do not coordinate: by default (``quota_order="none"``)
the plan may exceed the quota, as an HPA sets ``spec.replicas`` without looking at it, and the cluster
settles it — pods over the ResourceQuota are refused and retried (the simulator creates them in job
order as capacity frees up). ``"job"`` clips first come, first served in job order, ``"fair"``
max-min fairly (an arbiter Kubernetes does not have; ``docs/fidelity.md`` has the numbers).
Registered as ``hpa-cpu``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import Key, clip_to_quota, current_replicas, make_plan, quota_order_of


@dataclass(frozen=True)
class HPAState:
    """Per job: recent (time_s, recommendation) pairs inside the stabilization window."""

    recommendations: Mapping[Key, tuple[tuple[float, int], ...]] = field(default_factory=dict)


def hpa_recommendation(current: int, ready: int, utilization: float | None, *, target: float, tolerance: float) -> int:
    """The HPA's raw recommendation before stabilization and clamps."""
    if utilization is None or not math.isfinite(utilization) or ready <= 0:
        return current
    # The controller works in whole percent (utilisation truncated, as metrics/utilization.go does).
    ratio = math.floor(round(utilization * 100.0, 6)) / round(target * 100.0, 6)
    if abs(ratio - 1.0) <= tolerance + 1e-9:  # inclusive band, robust to 77/70 = 1.1000000000000000888
        return current
    return math.ceil(ratio * ready - 1e-9)


class HPACPUPolicy:
    name = "hpa-cpu"
    needs_future = False

    def __init__(
        self,
        *,
        target_utilization: float = 0.7,
        tolerance: float = 0.1,
        downscale_stabilization_s: float = 300.0,
        scale_up_limit_pods: int = 4,
        scale_up_limit_percent: float = 100.0,
        quota_order: str = "none",
    ) -> None:
        if not 0 < target_utilization <= 1:
            raise ValueError("hpa-cpu: target_utilization must be in (0, 1]")
        if tolerance < 0 or downscale_stabilization_s < 0:
            raise ValueError("hpa-cpu: tolerance and downscale_stabilization_s must be >= 0")
        self.target = float(target_utilization)
        self.tolerance = float(tolerance)
        self.window_s = float(downscale_stabilization_s)
        self.up_pods = int(scale_up_limit_pods)
        self.up_percent = float(scale_up_limit_percent)
        self.quota_order = quota_order_of("hpa-cpu", quota_order)

    def initial_state(self) -> HPAState:
        return HPAState()

    def decide(self, view: ClusterView, state: HPAState) -> Decision[HPAState]:
        desired = current_replicas(view).copy()
        recs: dict[Key, tuple[tuple[float, int], ...]] = {}
        for i, jv in enumerate(view.jobs):
            cur = jv.current_replicas
            raw = hpa_recommendation(
                cur, jv.ready_replicas, jv.observation.cpu_utilization, target=self.target, tolerance=self.tolerance
            )
            raw = min(max(raw, jv.spec.min_replicas), jv.spec.max_replicas)
            kept = tuple(
                (t, r) for t, r in state.recommendations.get(jv.spec.key, ()) if view.now_s - t < self.window_s
            )
            kept = (*kept, (view.now_s, raw))
            recs[jv.spec.key] = kept
            # Stabilization: scale up at once, scale down only to the highest recent recommendation.
            down_rec = max(r for _, r in kept)
            new = raw if raw > cur else min(cur, down_rec)
            limit = max(math.ceil(cur * (1 + self.up_percent / 100.0)), cur + self.up_pods)
            desired[i] = min(new, limit)
        desired = clip_to_quota(view, np.asarray(desired), self.quota_order)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=HPAState(recommendations=recs))

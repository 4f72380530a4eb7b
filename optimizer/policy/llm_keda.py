"""KServe/KEDA-style autoscaling of LLM jobs on vLLM's waiting requests, as a baseline.

KServe's LLM autoscaling (KEDA ScaledObject with a Prometheus trigger on ``vllm:num_requests_waiting``)
makes an HPA with an External metric of type AverageValue: every sync period (15 s) the HPA proposes
``ceil(Σ waiting / target_waiting)`` replicas (nothing inside the 10% tolerance band), then applies its
default ``behavior`` — scale-down stabilization 300 s, scale-up at most max(+4 pods, +100%) per 15 s —
and the min/max clamp. The HPA rules are ``optimizer/sim/hpa.py`` (the emulator of the Kubernetes
controller). An empty queue proposes the minimum, so capacity falls back to ``min_replicas`` five
minutes after the queue empties — how queue-based scaling behaves. The HPA knows no quota: pods beyond
it stay pending. Registered as ``keda-waiting``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import Key, clip_to_quota, current_replicas, make_plan, quota_order_of
from faro.optimizer.sim.hpa import HPABehavior, HPASpec, HPAState, hpa_step


@dataclass(frozen=True)
class KEDAState:
    hpa: Mapping[Key, HPAState] = field(default_factory=dict)


class KEDAWaitingPolicy:
    name = "keda-waiting"
    needs_future = False

    def __init__(self, *, target_waiting: float = 2.0, sync_period_s: float = 15.0, quota_order: str = "none") -> None:
        if not target_waiting > 0:
            raise ValueError("keda-waiting: target_waiting must be > 0")
        if not sync_period_s > 0:
            raise ValueError("keda-waiting: sync_period_s must be > 0")
        self.target_waiting = float(target_waiting)
        self.sync_period_s = float(sync_period_s)
        self.behavior = HPABehavior()  # the API server's defaults (300 s scale-down stabilization)
        self.quota_order = quota_order_of("keda-waiting", quota_order)

    def initial_state(self) -> KEDAState:
        return KEDAState()

    def decide(self, view: ClusterView, state: KEDAState) -> Decision[KEDAState]:
        desired = current_replicas(view).copy()
        states = dict(state.hpa)
        for i, jv in enumerate(view.jobs):
            obs = jv.observation.llm
            waiting = obs.num_waiting if obs is not None else None
            spec = HPASpec(
                min_replicas=jv.spec.min_replicas, max_replicas=max(jv.spec.max_replicas, 1),
                target_average_value=self.target_waiting, behavior=self.behavior, sync_period_s=self.sync_period_s,
            )
            desired[i], states[jv.spec.key] = hpa_step(
                spec, states.get(jv.spec.key, HPAState()), now_s=view.now_s, current_replicas=jv.current_replicas,
                metric_value=waiting,
            )
        desired = clip_to_quota(view, desired, self.quota_order)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=KEDAState(hpa=states))

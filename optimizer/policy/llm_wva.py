"""llm-d Workload Variant Autoscaler (WVA), saturation mode, as a baseline for LLM jobs.

Follows WVA's V1 saturation analyzer (``internal/saturation/analyzer.go`` and
``docs/saturation-analyzer.md`` of github.com/llm-d-incubation/workload-variant-autoscaler), one
variant per model:

* Every ``interval_s`` (WVA's ``GLOBAL_OPT_INTERVAL``, 60 s) per model, from each ready replica's
  KV-cache use and waiting requests (WVA queries ``max_over_time(...[1m])``;
  ``LLMObservation.replica_kv_cache_usage`` / ``replica_num_waiting``): a replica is *saturated* when
  KV ≥ ``kv_cache_threshold`` (0.8) or waiting ≥ ``queue_length_threshold`` (5). Over the non-saturated
  ones, spare KV = 0.8 − KV and spare queue = 5 − waiting are averaged (0 when every replica is
  saturated).
* Scale up by one (ready + 1) when the average spare KV < ``kv_spare_trigger`` (0.1) or the average
  spare queue < ``queue_spare_trigger`` (3).
* Otherwise scale down by one (ready − 1, not below min) when it is safe: at least 2 non-saturated
  replicas and, with their load spread over one replica fewer (average load × N/(N−1)), both spares stay
  at or above the triggers.
* A model in transition — replicas asked for ≠ ready (pods starting, or pending on quota) — is left as
  it is (WVA blocks all decisions for it; the "skip variants with pending pods" rule).

WVA scales each model on its own and knows no GPU quota: pods beyond a quota stay pending (the
simulator retries them), which keeps the model "in transition". Registered as ``wva``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision, JobView
from faro.optimizer.policy.common import clip_to_quota, current_replicas, make_plan, quota_order_of


@dataclass(frozen=True)
class WVAState:
    last_run_s: float | None = None


class WVAPolicy:
    name = "wva"
    needs_future = False

    def __init__(
        self,
        *,
        interval_s: float = 60.0,
        kv_cache_threshold: float = 0.8,
        queue_length_threshold: float = 5.0,
        kv_spare_trigger: float = 0.1,
        queue_spare_trigger: float = 3.0,
        quota_order: str = "none",
    ) -> None:
        if not interval_s > 0:
            raise ValueError("wva: interval_s must be > 0")
        if not (0 < kv_cache_threshold <= 1 and 0 <= kv_spare_trigger <= kv_cache_threshold):
            raise ValueError("wva: need 0 < kv_cache_threshold <= 1 and 0 <= kv_spare_trigger <= threshold")
        if not (queue_length_threshold > 0 and 0 <= queue_spare_trigger <= queue_length_threshold):
            raise ValueError("wva: need queue_length_threshold > 0 and 0 <= queue_spare_trigger <= threshold")
        self.interval_s = float(interval_s)
        self.kv_threshold = float(kv_cache_threshold)
        self.queue_threshold = float(queue_length_threshold)
        self.kv_trigger = float(kv_spare_trigger)
        self.queue_trigger = float(queue_spare_trigger)
        self.quota_order = quota_order_of("wva", quota_order)

    def initial_state(self) -> WVAState:
        return WVAState()

    def target(self, jv: JobView) -> int:
        """The saturation analyzer's target for one model (its current count when it does not act)."""
        obs = jv.observation.llm
        cur = jv.current_replicas
        if obs is None or not obs.replica_kv_cache_usage or jv.ready_replicas != cur:
            return cur  # no metrics, or in transition: WVA keeps the model as it is
        kv = np.asarray(obs.replica_kv_cache_usage, dtype=float)
        queue = np.asarray(obs.replica_num_waiting, dtype=float)
        ok = (kv < self.kv_threshold) & (queue < self.queue_threshold)
        n_ok = int(ok.sum())
        spare_kv = float((self.kv_threshold - kv[ok]).mean()) if n_ok else 0.0
        spare_q = float((self.queue_threshold - queue[ok]).mean()) if n_ok else 0.0
        ready = len(kv)
        if spare_kv < self.kv_trigger or spare_q < self.queue_trigger:
            return ready + 1
        if n_ok >= 2:
            grow = n_ok / (n_ok - 1)
            kv_after = self.kv_threshold - (self.kv_threshold - spare_kv) * grow
            q_after = self.queue_threshold - (self.queue_threshold - spare_q) * grow
            if kv_after >= self.kv_trigger and q_after >= self.queue_trigger:
                return max(ready - 1, jv.spec.min_replicas)
        return ready

    def decide(self, view: ClusterView, state: WVAState) -> Decision[WVAState]:
        desired = current_replicas(view).copy()
        due = state.last_run_s is None or view.now_s - state.last_run_s >= self.interval_s - 1e-9
        if due:
            for i, jv in enumerate(view.jobs):
                desired[i] = min(max(self.target(jv), jv.spec.min_replicas), jv.spec.max_replicas)
            state = WVAState(last_run_s=view.now_s)
        desired = clip_to_quota(view, desired, self.quota_order)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=state)

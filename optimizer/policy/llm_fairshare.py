"""Static fair share of the GPUs among LLM jobs, as a baseline (and the simulator's starting allocation).

Every job gets an equal share of the cluster's GPUs (and of its namespace's GPU quota, split among the
jobs of that namespace), in whole replicas: ``⌊share / GPUs per replica⌋``, within [min, max]. Nothing
moves afterwards. Stateless. Registered as ``llm-fairshare``.
"""

from __future__ import annotations

import math

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import fit_to_quota, make_plan
from numpy.typing import NDArray

GPU = "nvidia.com/gpu"


def equal_gpu_split(view: ClusterView) -> NDArray[np.int64]:
    """Replicas per job for an equal split of every GPU quota the view has (unbounded without one)."""
    n = len(view.jobs)
    out = np.zeros(n, dtype=np.int64)
    for i, jv in enumerate(view.jobs):
        per = float(jv.spec.resources.get(GPU, 0.0))
        share = math.inf
        for q in view.quotas:
            limit = q.hard.get(GPU, q.hard.get(f"requests.{GPU}"))
            if limit is None:
                continue
            members = [j for j in view.jobs if q.namespace is None or j.spec.namespace == q.namespace]
            if jv not in members:
                continue
            used = float(q.used.get(GPU, q.used.get(f"requests.{GPU}", 0.0)))
            share = min(share, (float(limit) - used) / len(members))
        k = jv.spec.max_replicas if per <= 0 or math.isinf(share) else math.floor(share / per + 1e-9)
        out[i] = min(max(k, jv.spec.min_replicas), jv.spec.max_replicas)
    return out


class LLMFairSharePolicy:
    name = "llm-fairshare"
    needs_future = False

    def initial_state(self) -> None:
        return None

    def decide(self, view: ClusterView, state: None) -> Decision[None]:
        desired = fit_to_quota(view, equal_gpu_split(view))
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=None)

"""FairShare baseline: a static equal split of the quota, the same count for every job.

Each job gets the largest common replica count ``k`` that fits every quota (the Faro artifact's
FairShare: 3 replicas per job for 10 jobs on 32 or 36 CPUs); the remainder is left unused unless
``distribute_remainder`` is set. Stateless. Registered as ``fairshare`` in ``registry.py``.
"""

from __future__ import annotations

import numpy as np
from faro.optimizer.policy.base import ClusterView, Decision
from faro.optimizer.policy.common import bounds, constraint_matrix, fit_to_quota, make_plan


class FairSharePolicy:
    name = "fairshare"
    needs_future = False

    def __init__(self, *, distribute_remainder: bool = False) -> None:
        self.distribute_remainder = bool(distribute_remainder)

    def initial_state(self) -> None:
        return None

    def equal_split(self, view: ClusterView) -> np.ndarray:
        lo, hi = bounds(view)
        matrix, bound = constraint_matrix(view)
        if not view.jobs:
            return np.zeros(0, dtype=np.int64)
        if matrix.shape[0] == 0:
            return hi.copy()
        k, top = 0, int(hi.max())
        while k < top:  # counts are small; a linear scan keeps the rule obvious
            x = np.clip(np.full(len(view.jobs), k + 1), lo, hi)
            if not np.all(matrix @ x <= bound + 1e-9):
                break
            k += 1
        return np.clip(np.full(len(view.jobs), k), lo, hi).astype(np.int64)

    def decide(self, view: ClusterView, state: None) -> Decision[None]:
        split = self.equal_split(view)
        if self.distribute_remainder:
            split = split + 1  # fit_to_quota hands the extra replicas out fairly where they fit
        # Scale-downs first, then fair scale-ups, so moving to the split never breaks a quota.
        desired = fit_to_quota(view, split)
        return Decision(plan=make_plan(view, desired, kind="baseline"), state=None)

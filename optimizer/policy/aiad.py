"""AIAD baseline: additive increase, additive decrease on the observed latency.

Every check (one per ``decide`` call, 10 s in the simulator) compares the job's latency (the
window mean by default, as the Faro artifact's ``aiad`` with ``avg_latency``) with its SLO: after
``up_checks`` (3) consecutive checks over it the job gets +1 replica; after ``down_checks`` (60)
consecutive checks at or under it, −1. Acting resets that counter. Scale-ups are clipped to the
free quota fairly. Registered as ``aiad``.
"""

from __future__ import annotations

import numpy as np
from faro.optimizer.policy.base import ClusterView
from faro.optimizer.policy.common import current_replicas
from faro.optimizer.policy.streak import StreakPolicy
from numpy.typing import NDArray


class AIADPolicy(StreakPolicy):
    name = "aiad"

    def resize(self, view: ClusterView, grow: NDArray[np.bool_], shrink: NDArray[np.bool_]) -> NDArray[np.int64]:
        return current_replicas(view) + grow.astype(int) - shrink.astype(int)

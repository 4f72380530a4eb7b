"""The result every solver returns (scipy.optimize style: a status, never an exception)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

STATUSES = ("optimal", "feasible", "degraded", "time_limit", "error")
"""``optimal``: proven within the reported gap tolerance; ``feasible``: a valid allocation with a
bound; ``degraded``: even the minimum replicas do not fit the quotas, so mins were lowered fairly
(see ``message``); ``time_limit``: best found when time ran out; ``error``: nothing usable (see
``message``)."""


@dataclass(frozen=True)
class SolveResult:
    """An integer allocation and what the model expects of it.

    Arrays are indexed like ``Problem.jobs``. ``bound`` is an upper bound on the objective
    (``None`` when the solver has none) and ``gap = (bound − objective_value)/max(1, |bound|)``.
    """

    status: str
    replicas: NDArray[np.int64]
    objective_value: float
    utility: NDArray[np.float64]
    latency_ms: NDArray[np.float64]
    solver: str
    solve_ms: float
    bound: float | None = None
    message: str = ""
    admission: NDArray[np.float64] = field(default_factory=lambda: np.ones(0))
    ttft_ms: NDArray[np.float64] | None = None  # LLM jobs' TTFT/ITL percentiles (NaN for other jobs);
    itl_ms: NDArray[np.float64] | None = None  # None when the problem has no LLM job

    @property
    def gap(self) -> float | None:
        if self.bound is None:
            return None
        return max(0.0, (self.bound - self.objective_value) / max(1.0, abs(self.bound)))

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "feasible", "degraded", "time_limit")

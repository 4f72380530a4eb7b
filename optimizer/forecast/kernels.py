"""Vectorised state recursions (one row per job) behind the recursive forecasters.

``DampedTrend`` is exponential smoothing in error-correction form, the same parameterisation as
statsmodels' ``ETSModel`` with additive error and damped additive trend (ETS(A,Ad,N)):

    ŷ = l + φ·b,   ε = y − ŷ,   l' = ŷ + α·ε,   b' = φ·b + β·ε

so the last value (α=1, β=0), EWMA (β=0) and Holt (φ=1) are special cases. A missing minute
(NaN) advances the state without a correction. ``SeasonalNaive`` keeps the last season in a ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

State = tuple[NDArray[np.float64], ...]


def _per_job(x: float | NDArray[np.float64]) -> NDArray[np.float64]:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class DampedTrend:
    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]
    phi: NDArray[np.float64]

    def __init__(self, alpha: float | NDArray, beta: float | NDArray = 0.0, phi: float | NDArray = 1.0) -> None:
        object.__setattr__(self, "alpha", _per_job(alpha))
        object.__setattr__(self, "beta", _per_job(beta))
        object.__setattr__(self, "phi", _per_job(phi))
        object.__setattr__(self, "_damp", {})  # horizon -> (N, horizon) cumulative damping, reused per origin

    def init(self, n_jobs: int) -> State:
        return (np.full(n_jobs, np.nan), np.zeros(n_jobs))

    def step(self, state: State, y: NDArray[np.float64]) -> State:
        level, trend = state
        damped = self.phi * trend
        pred = level + damped
        seen = np.isfinite(y)
        err = np.where(seen, y - pred, 0.0)  # a missing minute: no correction (x + 0 is x, NaN stays NaN)
        new_level = pred + self.alpha * err
        new_trend = damped + self.beta * err
        fresh = seen & ~np.isfinite(level)  # first observation of a job
        if fresh.any():
            new_level = np.where(fresh, y, new_level)
            new_trend = np.where(fresh, 0.0, new_trend)
        return (new_level, new_trend)

    def predict(self, state: State, horizon: int) -> NDArray[np.float64]:
        level, trend = state
        damp = self._damp.get(horizon)
        if damp is None:
            steps = np.arange(1, horizon + 1)
            damp = self._damp[horizon] = np.cumsum(self.phi.reshape(-1, 1) ** steps[None, :], axis=1)
        return level[:, None] + damp * trend[:, None]

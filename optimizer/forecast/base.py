"""The forecasting interface: fit on per-minute histories, update cheaply, forecast quantiles.

Histories are 2-D arrays (jobs × minutes) of request counts per minute, oldest first; NaN marks a
missing minute. Fitting returns a new fitted object and never mutates the forecaster (statsmodels
style, without its mutating ``fit``). Forecasts are per-minute counts, never negative or NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Forecast:
    """Forecast per job and horizon step: the mean and requested quantiles, in requests/minute."""

    mean: NDArray[np.float64]  # (N, H)
    quantiles: dict[float, NDArray[np.float64]]  # q -> (N, H)

    def quantile(self, q: float) -> NDArray[np.float64]:
        """The q-quantile; interpolates linearly between stored quantiles (the mean stands for 0.5
        when 0.5 was not stored)."""
        if q in self.quantiles:
            return self.quantiles[q]
        table = dict(self.quantiles)
        table.setdefault(0.5, self.mean)
        levels = np.array(sorted(table))
        values = np.stack([table[level] for level in levels])
        idx = np.clip(np.searchsorted(levels, q), 1, len(levels) - 1)
        lo, hi = levels[idx - 1], levels[idx]
        w = np.clip((q - lo) / (hi - lo), 0.0, 1.0) if hi > lo else 0.0
        return np.maximum(0.0, (1 - w) * values[idx - 1] + w * values[idx])


class FittedForecaster(Protocol):
    def update(self, new_counts: NDArray[np.float64]) -> FittedForecaster:
        """Absorb new minutes (jobs × k) cheaply; returns a new fitted object."""
        ...

    def forecast(self, horizon: int, quantiles: Sequence[float]) -> Forecast: ...


class Forecaster(Protocol):
    name: str

    def fit(self, history: NDArray[np.float64]) -> FittedForecaster: ...

"""Baselines: the last observed value and the seasonal naive forecast, with empirical residual quantiles.

``last`` repeats the last observed minute; ``seasonal_naive`` repeats the minute one season
(default 360 minutes: one day window of the bundled traces, whose days are concatenated) earlier,
falling back to the last value where that minute was not seen. Both are the yardsticks the other
models must beat (``faro forecast backtest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray

from ._common import (
    DEFAULT_MAX_HORIZON,
    as_history,
    check_request,
    check_update,
    fallback_sigma,
    last_finite,
    make_forecast,
    residual_grid,
)
from ._recursive import FittedRecursive, fit_recursive
from .base import Forecast
from .kernels import DampedTrend

DEFAULT_SEASON_MIN = 360
DEFAULT_CALIBRATION_MIN = 720


@dataclass(frozen=True)
class LastValue:
    """ŷ(t+h) = y(t); quantiles from its h-step errors over the last ``calibration_min`` minutes."""

    calibration_min: int = DEFAULT_CALIBRATION_MIN
    max_horizon: int = DEFAULT_MAX_HORIZON
    name: str = "last"

    def fit(self, history: NDArray[np.float64]) -> FittedRecursive:
        hist = as_history(history)
        return fit_recursive(
            DampedTrend(1.0, 0.0, 1.0), hist, calibration_min=self.calibration_min, max_horizon=self.max_horizon
        )


@dataclass(frozen=True)
class FittedSeasonalNaive:
    season_min: int
    window: NDArray[np.float64]  # (N, season): the last season of minutes, oldest first
    last: NDArray[np.float64]  # (N,)
    grid: NDArray[np.float64]

    def update(self, new_counts: NDArray[np.float64]) -> FittedSeasonalNaive:
        new = check_update(new_counts, self.window.shape[0])
        if new.shape[1] == 0:
            return self
        window = np.concatenate([self.window, new], axis=1)[:, -self.season_min :]
        last = np.where(np.isfinite(last_finite(new)), last_finite(new), self.last)
        return FittedSeasonalNaive(self.season_min, window, last, self.grid)

    def forecast(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        horizon, qs = check_request(horizon, quantiles)
        idx = np.arange(horizon) % self.season_min
        past = self.window[:, idx]
        point = np.where(np.isfinite(past), past, self.last[:, None])
        return make_forecast(point, self.grid, horizon, qs)


def seasonal_naive_points(history: NDArray[np.float64], season: int, horizon: int, origins: NDArray[np.int64]):
    """Point forecasts (N, len(origins), horizon) made at each origin t (last seen minute t)."""
    n_jobs, n_min = history.shape
    out = np.full((n_jobs, origins.size, horizon), np.nan)
    # last finite value up to each minute, by forward fill
    idx = np.where(np.isfinite(history), np.arange(n_min)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = history[np.arange(n_jobs)[:, None], idx]
    for h in range(1, horizon + 1):
        src = origins + h - season
        ok = src >= 0
        past = np.full((n_jobs, origins.size), np.nan)
        past[:, ok] = history[:, src[ok]]
        out[:, :, h - 1] = np.where(np.isfinite(past), past, filled[:, origins])
    return out


@dataclass(frozen=True)
class SeasonalNaiveForecaster:
    season_min: int = DEFAULT_SEASON_MIN
    calibration_min: int = DEFAULT_CALIBRATION_MIN
    max_horizon: int = DEFAULT_MAX_HORIZON
    name: str = "seasonal_naive"

    def __post_init__(self) -> None:
        if self.season_min < 1:
            raise InvalidInputError("seasonal_naive.season_min", f"must be ≥ 1, got {self.season_min}")

    def fit(self, history: NDArray[np.float64]) -> FittedSeasonalNaive:
        hist = as_history(history)
        n_jobs, n_min = hist.shape
        H = self.max_horizon
        origins = np.arange(max(0, n_min - self.calibration_min - H), n_min)
        points = seasonal_naive_points(hist, self.season_min, H, origins)
        actual = np.full_like(points, np.nan)
        for h in range(1, H + 1):
            ok = origins + h < n_min
            actual[:, ok, h - 1] = hist[:, origins[ok] + h]
        grid = residual_grid(actual - points, fallback_sigma(hist))
        window = np.full((n_jobs, self.season_min), np.nan)
        tail = hist[:, -self.season_min :]
        if tail.shape[1]:
            window[:, -tail.shape[1] :] = tail
        last = np.nan_to_num(last_finite(hist), nan=0.0)
        return FittedSeasonalNaive(self.season_min, window, last, grid)

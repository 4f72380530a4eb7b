"""EWMA and (damped) Holt smoothing, parameters chosen per job from a small grid, with empirical
residual quantiles.

Fitting runs every candidate parameter set for every job at once (rows tiled), keeps per job the set
with the least mean squared 1..H-step error over the last ``selection_min`` minutes, then calibrates
residual quantiles. Cheap enough to refit thousands of jobs in a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._common import DEFAULT_MAX_HORIZON, as_history
from ._recursive import FittedRecursive, fit_recursive, select_per_job
from .kernels import DampedTrend

EWMA_ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
HOLT_GRID = tuple(
    (a, b, phi) for a in (0.2, 0.4, 0.7) for b in (0.01, 0.05, 0.15) for phi in (0.8, 0.95) if b <= a
)


def _kernel(params: NDArray[np.float64]) -> DampedTrend:
    return DampedTrend(params[:, 0], params[:, 1], params[:, 2])


def _fit_grid(
    grid: NDArray[np.float64], history: NDArray[np.float64], *, selection_min: int, calibration_min: int,
    max_horizon: int,
) -> FittedRecursive:
    choice = select_per_job(_kernel, grid, history, window_min=selection_min, horizon=min(max_horizon, 7))
    return fit_recursive(_kernel(grid[choice]), history, calibration_min=calibration_min, max_horizon=max_horizon)


@dataclass(frozen=True)
class EWMA:
    """Exponentially weighted moving average (simple exponential smoothing), α per job from ``alphas``."""

    alphas: tuple[float, ...] = EWMA_ALPHAS
    selection_min: int = 720
    calibration_min: int = 720
    max_horizon: int = DEFAULT_MAX_HORIZON
    name: str = "ewma"

    def fit(self, history: NDArray[np.float64]) -> FittedRecursive:
        grid = np.array([(a, 0.0, 1.0) for a in self.alphas])
        return _fit_grid(
            grid, as_history(history), selection_min=self.selection_min, calibration_min=self.calibration_min,
            max_horizon=self.max_horizon,
        )


@dataclass(frozen=True)
class Holt:
    """Holt's linear trend, damped; (α, β, φ) per job from ``grid`` (error-correction form)."""

    grid: tuple[tuple[float, float, float], ...] = HOLT_GRID
    selection_min: int = 720
    calibration_min: int = 720
    max_horizon: int = DEFAULT_MAX_HORIZON
    name: str = "holt"

    def fit(self, history: NDArray[np.float64]) -> FittedRecursive:
        return _fit_grid(
            np.array(self.grid, dtype=float), as_history(history), selection_min=self.selection_min,
            calibration_min=self.calibration_min, max_horizon=self.max_horizon,
        )

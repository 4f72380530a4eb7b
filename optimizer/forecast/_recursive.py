"""Forecasters driven by a vectorised state recursion plus empirical residual quantiles.

A *kernel* holds per-job parameters (arrays broadcast over jobs) and knows how to absorb one minute
for every job at once and how to extrapolate its state. ``RecursiveForecaster`` runs a kernel over
the history, records its h-step errors over the last ``calibration_min`` minutes and keeps their
quantiles; ``update`` only advances the state (microseconds per job). Used by ``naive``,
``smoothing`` and ``ets``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ._common import (
    DEFAULT_MAX_HORIZON,
    WARMUP_MIN,
    as_history,
    check_request,
    check_update,
    fallback_sigma,
    make_forecast,
    residual_grid,
)
from .base import Forecast

State = tuple[NDArray[np.float64], ...]


class Kernel(Protocol):
    def init(self, n_jobs: int) -> State: ...

    def step(self, state: State, y: NDArray[np.float64]) -> State:
        """Absorb one minute (N,), NaN = missing; returns the new state (never mutates)."""
        ...

    def predict(self, state: State, horizon: int) -> NDArray[np.float64]:
        """Point forecasts (N, horizon); NaN where a job has seen nothing yet."""
        ...


def run_kernel(
    kernel: Kernel,
    history: NDArray[np.float64],
    *,
    record_from: int,
    horizon: int,
    stride: int = 1,
    warmup_min: int | None = WARMUP_MIN,
) -> tuple[State, NDArray[np.float64]]:
    """Run over the minutes from ``warmup_min`` before ``record_from`` (all with None); returns the
    final state and the h-step errors of forecasts made at origins ``record_from..T-1``:
    (N, M, horizon) (every ``stride``-th origin), NaN where no actual exists. The smoothing states forget their start
    geometrically, so the warm-up bounds the cost of long histories."""
    n_jobs, n_min = history.shape
    state = kernel.init(n_jobs)
    record_from = max(0, min(record_from, n_min))
    first = 0 if warmup_min is None else max(0, record_from - warmup_min)
    origins = np.arange(record_from, n_min, stride)
    preds = np.full((n_jobs, origins.size, horizon), np.nan)
    i = 0
    for t in range(first, n_min):
        state = kernel.step(state, history[:, t])
        if i < origins.size and t == origins[i]:
            preds[:, i] = kernel.predict(state, horizon)
            i += 1
    actual = np.full_like(preds, np.nan)
    for h in range(1, horizon + 1):
        ok = origins + h < n_min
        actual[:, ok, h - 1] = history[:, origins[ok] + h]
    preds -= actual
    preds *= -1.0
    return state, preds


@dataclass(frozen=True)
class FittedRecursive:
    kernel: Kernel
    state: State
    grid: NDArray[np.float64]  # (N, Hc, G) residual quantiles
    fallback: NDArray[np.float64]  # (N,) level used where the kernel has no value yet

    @property
    def n_jobs(self) -> int:
        return self.grid.shape[0]

    def update(self, new_counts: NDArray[np.float64]) -> FittedRecursive:
        new = check_update(new_counts, self.n_jobs)
        state = self.state
        for t in range(new.shape[1]):
            state = self.kernel.step(state, new[:, t])
        return FittedRecursive(self.kernel, state, self.grid, self.fallback)

    def forecast(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        horizon, qs = check_request(horizon, quantiles)
        point = self.kernel.predict(self.state, horizon)
        point = np.where(np.isfinite(point), point, self.fallback[:, None])
        return make_forecast(point, self.grid, horizon, qs)


def fit_recursive(
    kernel: Kernel,
    history: NDArray[np.float64],
    *,
    calibration_min: int,
    max_horizon: int = DEFAULT_MAX_HORIZON,
    sigma: NDArray[np.float64] | None = None,
    stride: int = 2,
) -> FittedRecursive:
    """Run ``kernel`` over ``history`` and calibrate residual quantiles on its last minutes."""
    n_min = history.shape[1]
    state, residuals = run_kernel(
        kernel, history, record_from=n_min - calibration_min - max_horizon, horizon=max_horizon, stride=stride
    )
    sigma = fallback_sigma(history) if sigma is None else sigma
    grid = residual_grid(residuals, sigma)
    return FittedRecursive(kernel, state, grid, np.zeros(history.shape[0]))


def select_per_job(
    make: Callable[[NDArray[np.float64]], Kernel],
    candidates: NDArray[np.float64],
    history: NDArray[np.float64],
    *,
    window_min: int,
    horizon: int,
    stride: int = 5,
    warmup_min: int | None = WARMUP_MIN,
) -> NDArray[np.int64]:
    """Index of the candidate parameter row (P, k) with the least mean squared h-step error per job,
    all candidates run at once by tiling the jobs. The errors are summed as the recursion runs
    (neither the tiled history nor every forecast is kept: at 1,000 jobs × 14 candidates those
    were hundreds of MB)."""
    n_jobs, n_min = history.shape
    n_cand = candidates.shape[0]
    kernel = make(np.tile(candidates, (n_jobs, 1)))  # job-major: rows j*P .. j*P+P-1
    state = kernel.init(n_jobs * n_cand)
    record_from = max(0, min(n_min - window_min - horizon, n_min))
    first = 0 if warmup_min is None else max(0, record_from - warmup_min)
    sq = np.zeros(n_jobs * n_cand)
    count = np.zeros(n_jobs * n_cand)
    padded = np.concatenate([history, np.full((n_jobs, horizon), np.nan)], axis=1)
    for t in range(first, n_min):
        state = kernel.step(state, np.repeat(history[:, t], n_cand))
        if t >= record_from and (t - record_from) % stride == 0:
            err = np.repeat(padded[:, t + 1 : t + 1 + horizon], n_cand, axis=0) - kernel.predict(state, horizon)
            fin = np.isfinite(err)
            sq += np.square(np.where(fin, err, 0.0)).sum(axis=1)
            count += fin.sum(axis=1)
    mse = np.where(count > 0, sq / np.maximum(count, 1), np.inf)
    return np.argmin(mse.reshape(n_jobs, n_cand), axis=1)


def history_or_error(history: object) -> NDArray[np.float64]:
    return as_history(history)

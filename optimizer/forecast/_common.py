"""Shared pieces of the forecasters: input checks, empirical residual quantiles, final clean-up.

Used by every model in this package (not part of the public API). Residual quantiles are stored on
a fixed grid of levels per job and horizon step, so a forecast at any requested quantile is one
interpolation, and a forecast beyond the calibrated horizon widens like a random walk (√h).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray
from scipy.stats import norm

from .base import Forecast

#: Quantile levels at which residual distributions are stored.
GRID: NDArray[np.float64] = np.round(np.linspace(0.01, 0.99, 99), 4)
#: Horizon steps calibrated at fit time unless a model says otherwise.
DEFAULT_MAX_HORIZON = 15
#: Minutes a recursion runs before the calibration window so its state has forgotten its start.
WARMUP_MIN = 720
#: Fewer finite residuals than this at a step and the job falls back to a normal shape.
MIN_RESIDUALS = 30


def as_history(history: object, *, what: str = "history") -> NDArray[np.float64]:
    """A float (jobs × minutes) copy; NaN stays (missing minute); infinities and negatives are errors."""
    try:
        arr = np.array(history, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(what, f"not a numeric array: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(what, f"must be a jobs × minutes array, got {arr.ndim} dimensions")
    if np.isinf(arr).any():
        raise InvalidInputError(what, "contains infinite values")
    if (arr < 0).any():
        raise InvalidInputError(what, "contains negative request counts")
    return arr


def check_update(new_counts: object, n_jobs: int) -> NDArray[np.float64]:
    arr = as_history(new_counts, what="new_counts")
    if arr.shape[0] != n_jobs:
        if arr.shape == (1, n_jobs):  # a 1-D vector of one minute for every job
            return arr.T.copy()
        raise InvalidInputError("new_counts", f"has {arr.shape[0]} jobs, the forecaster was fitted on {n_jobs}")
    return arr


def check_request(horizon: int, quantiles: Sequence[float]) -> tuple[int, tuple[float, ...]]:
    if int(horizon) != horizon or horizon < 1:
        raise InvalidInputError("horizon", f"must be a positive integer, got {horizon!r}")
    qs = tuple(float(q) for q in quantiles)
    for q in qs:
        if not 0.0 < q < 1.0:
            raise InvalidInputError("quantiles", f"each must be in (0, 1), got {q!r}")
    return int(horizon), qs


def last_finite(history: NDArray[np.float64]) -> NDArray[np.float64]:
    """The last observed value per job (NaN where a job has none)."""
    mask = np.isfinite(history)
    idx = history.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    out = history[np.arange(history.shape[0]), idx] if history.shape[1] else np.full(history.shape[0], np.nan)
    return np.where(mask.any(axis=1), out, np.nan)


def poisson_sd(history: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per job, Poisson's √level of its observed minutes (at least 1): the least spread a forecast of
    request counts may claim, so a short flat history does not claim certainty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: level 0
        level = np.nan_to_num(np.nanmean(history, axis=1), nan=0.0) if history.shape[1] else np.zeros(len(history))
    return np.sqrt(np.maximum(level, 1.0))


def fallback_sigma(history: NDArray[np.float64]) -> NDArray[np.float64]:
    """A one-step noise scale per job for cold starts: the spread of minute-to-minute changes, at
    least ``poisson_sd``."""
    diffs = np.diff(history, axis=1)
    n = np.isfinite(diffs).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are handled below
        sd = np.where(n >= 2, np.nanstd(diffs, axis=1) / np.sqrt(2.0), 0.0)
    return np.maximum(np.nan_to_num(sd), poisson_sd(history))


def lag1_autocorrelation(history: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per job, the lag-1 autocorrelation of its observed minutes (clipped to [0, 0.99]; 1 for a flat or
    empty row) and their standard deviation (at least ``poisson_sd``), for cold-start AR(1) shapes.
    Pairs with a missing minute add nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are handled below
        mean = np.nanmean(history, axis=1, keepdims=True) if history.shape[1] else np.zeros((len(history), 1))
        sd = np.nan_to_num(np.nanstd(history, axis=1)) if history.shape[1] else np.zeros(len(history))
    dev = np.nan_to_num(history - mean)
    num = np.sum(dev[:, 1:] * dev[:, :-1], axis=1)
    den = np.sum(dev * dev, axis=1)
    rho = np.divide(num, den, out=np.ones_like(den), where=den > 0)
    return np.clip(rho, 0.0, 0.99), np.maximum(sd, poisson_sd(history))


def residual_grid(
    residuals: NDArray[np.float64], sigma: NDArray[np.float64], *, min_residuals: int = MIN_RESIDUALS
) -> NDArray[np.float64]:
    """Quantiles of h-step residuals (actual − point forecast) on ``GRID``: (N, H, G).

    ``residuals`` is (N, M, H) with NaN for origins without an actual. A job with fewer than
    ``min_residuals`` residuals at a step gets a normal shape with σ·√h instead.
    """
    n_jobs, _, horizon = residuals.shape
    out = np.empty((n_jobs, horizon, GRID.size))
    normal = norm.ppf(GRID)
    for h in range(horizon):
        r = residuals[:, :, h]
        count = np.isfinite(r).sum(axis=1)
        ok = count >= min_residuals
        if ok.any():
            out[ok, h] = nan_quantiles(r[ok], GRID)
        if (~ok).any():
            out[~ok, h] = sigma[~ok, None] * np.sqrt(h + 1.0) * normal[None, :]
    return out


def nan_quantiles(values: NDArray[np.float64], levels: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-row quantiles ignoring NaN, (rows, M) → (rows, L), linear interpolation like numpy's default;
    vectorised (``np.nanquantile`` loops over rows in Python). Every row needs ≥ 1 finite value."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    count = np.isfinite(values).sum(axis=1)
    pos = levels[None, :] * (count[:, None] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, count[:, None] - 1)
    w = pos - lo
    return (1 - w) * np.take_along_axis(ordered, lo, axis=1) + w * np.take_along_axis(ordered, hi, axis=1)


def grid_quantiles(grid: NDArray[np.float64], horizon: int, qs: Sequence[float]) -> dict[float, NDArray[np.float64]]:
    """Offsets (N, horizon) per requested level from a (N, Hc, G) grid; past Hc the last step's
    offsets grow with √(h/Hc)."""
    _n_jobs, h_cal, _ = grid.shape
    steps = np.arange(1, horizon + 1)
    idx = np.minimum(steps, h_cal) - 1
    widen = np.sqrt(np.maximum(steps / h_cal, 1.0))
    out: dict[float, NDArray[np.float64]] = {}
    for q in qs:
        pos = np.interp(q, GRID, np.arange(GRID.size))
        lo = int(np.floor(pos))
        hi = min(lo + 1, GRID.size - 1)
        w = pos - lo
        # only the two grid levels used are cleaned (the whole grid is N × 15 × 99 per forecast)
        off = (1 - w) * _clean(grid[:, idx, lo]) + w * _clean(grid[:, idx, hi])
        if q < GRID[0] or q > GRID[-1]:  # extrapolate the tails with a normal shape from the outer grid level
            edge = GRID[0] if q < GRID[0] else GRID[-1]
            off = off * norm.ppf(q) / norm.ppf(edge)
        out[q] = off * widen[None, :]
    return out


def _clean(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.nan_to_num`` (NaN → 0, ±inf → ±max float), cheaper on arrays that are already finite."""
    return values if np.isfinite(values).all() else np.nan_to_num(values)


def make_forecast(
    point: NDArray[np.float64], grid: NDArray[np.float64], horizon: int, qs: Sequence[float]
) -> Forecast:
    """Point forecast + residual quantiles → a clean Forecast: finite, non-negative, monotone in q."""
    point = np.nan_to_num(point, nan=0.0, posinf=0.0, neginf=0.0)
    offsets = grid_quantiles(grid, horizon, qs)
    levels = sorted(offsets)
    stacked = np.stack([np.maximum(point + offsets[q], 0.0) for q in levels]) if levels else np.zeros((0, *point.shape))
    stacked = np.maximum.accumulate(stacked, axis=0) if levels else stacked
    quantiles = {q: stacked[i] for i, q in enumerate(levels)}
    return Forecast(mean=np.maximum(point, 0.0), quantiles=quantiles)

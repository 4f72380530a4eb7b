"""Rolling-origin evaluation of forecasters: pinball loss, quantile coverage, MAPE of the median.

Used by ``faro forecast backtest``, ``bench/forecast.py`` and the ``auto`` model's per-job choice.
The forecaster is fitted on the minutes before the first origin and then rolled forward the way the
control loop uses it: at every origin it forecasts ``horizon`` minutes, then ``update`` absorbs the
next minute(s); every ``refit_every_min`` minutes it is refitted on everything seen so far.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray

from .base import FittedForecaster, Forecaster


@dataclass(frozen=True)
class RollingForecasts:
    """Forecasts made at origins (the number of minutes seen), each (N, O, H); NaN actual = none."""

    origins: NDArray[np.int64]
    mean: NDArray[np.float64]
    quantiles: dict[float, NDArray[np.float64]]
    actual: NDArray[np.float64]


def rolling_forecasts(
    forecaster: Forecaster,
    series: NDArray[np.float64],
    *,
    start: int,
    horizon: int,
    quantiles: Sequence[float],
    stride: int = 1,
    refit_every_min: int | None = None,
    end: int | None = None,
    on_step: Callable[[int], None] | None = None,
    fitted: FittedForecaster | None = None,
) -> RollingForecasts:
    """Fit on ``series[:, :start]`` (unless ``fitted`` is given) and forecast at origins
    start, start+stride, … up to ``end`` (default: the last origin with a full horizon)."""
    n_jobs, n_min = series.shape
    end = n_min - horizon if end is None else end
    if not 0 < start <= end:
        raise InvalidInputError(
            "backtest", f"needs 0 < start ({start}) ≤ last origin ({end}); is the series long enough?"
        )
    origins = np.arange(start, end + 1, stride)
    model = forecaster.fit(series[:, :start]) if fitted is None else fitted
    seen = start
    last_fit = start
    mean = np.full((n_jobs, origins.size, horizon), np.nan)
    qs = {float(q): np.full_like(mean, np.nan) for q in quantiles}
    actual = np.full_like(mean, np.nan)
    for i, t in enumerate(origins):
        if t > seen:
            if refit_every_min is not None and t - last_fit >= refit_every_min:
                model = forecaster.fit(series[:, :t])
                last_fit = t
            else:
                model = model.update(series[:, seen:t])
            seen = t
        fc = model.forecast(horizon, tuple(qs))
        mean[:, i] = fc.mean
        for q in qs:
            qs[q][:, i] = fc.quantile(q)
        stop = min(t + horizon, n_min)
        actual[:, i, : stop - t] = series[:, t:stop]
        if on_step is not None:
            on_step(1)
    return RollingForecasts(origins, mean, qs, actual)


def pinball(actual: NDArray[np.float64], pred: NDArray[np.float64], q: float) -> NDArray[np.float64]:
    err = actual - pred
    return np.maximum(q * err, (q - 1) * err)


@dataclass(frozen=True)
class Scores:
    """Per job (N,) and overall: pinball per q, coverage P(actual ≤ q̂) per q, MAPE of the median."""

    pinball: dict[float, NDArray[np.float64]]
    coverage: dict[float, NDArray[np.float64]]
    mape: NDArray[np.float64]

    def overall(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for q, v in self.pinball.items():
            out[f"pinball_{q:g}"] = float(np.nanmean(v))
        for q, v in self.coverage.items():
            out[f"coverage_{q:g}"] = float(np.nanmean(v))
        out["mape_median"] = float(np.nanmean(self.mape))
        return out


def score(rf: RollingForecasts) -> Scores:
    ok = np.isfinite(rf.actual)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a job without any actual scores NaN
        pin = {
            q: np.nanmean(np.where(ok, pinball(rf.actual, v, q), np.nan), axis=(1, 2)) for q, v in rf.quantiles.items()
        }
        cov = {
            q: np.nanmean(np.where(ok, (rf.actual <= v).astype(float), np.nan), axis=(1, 2))
            for q, v in rf.quantiles.items()
        }
        median = rf.quantiles.get(0.5, rf.mean)
        ape = np.abs(rf.actual - median) / np.maximum(rf.actual, 1.0)
        mape = np.nanmean(np.where(ok, ape, np.nan), axis=(1, 2))
    return Scores(pin, cov, mape)

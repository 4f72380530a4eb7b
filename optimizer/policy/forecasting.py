"""Per-job load forecasts for the predictive policies (Faro hybrids, MArk, Oracle).

Turns the views' per-minute arrival histories into a (jobs × horizon) table of requests per minute
at the asked quantiles, keeping the fitted forecaster in the policy's state so each long-horizon
step only absorbs the new minutes (``Fitted.update``). Until enough minutes exist — or if the
forecaster fails — it falls back to the last observed minute, as the Faro artifact does before its
predictor has a full context window. Called by ``faro.py`` and ``mark.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from faro.optimizer.policy.base import ClusterView
from faro.optimizer.policy.common import Key
from numpy.typing import NDArray


@dataclass(frozen=True)
class ForecastState:
    """The fitted forecaster, which jobs (in order) it was fitted on, and how many minutes it saw."""

    fitted: Any = None
    job_keys: tuple[Key, ...] = ()
    minutes_seen: int = 0
    fitted_at_minutes: int = 0


def history_matrix(view: ClusterView) -> NDArray[np.float64]:
    """Jobs × minutes, right-aligned on the latest completed minute; NaN where a job has no data."""
    lengths = [len(jv.observation.rate_history_rpm) for jv in view.jobs]
    width = max(lengths, default=0)
    out = np.full((len(view.jobs), width), np.nan)
    for i, jv in enumerate(view.jobs):
        hist = jv.observation.rate_history_rpm
        if hist:
            out[i, width - len(hist) :] = np.asarray(hist, dtype=float)
    return out


def naive_forecast(history: NDArray[np.float64], horizon: int) -> NDArray[np.float64]:
    """The last observed minute per job, repeated over the horizon (0 without data)."""
    last = np.zeros(history.shape[0])
    for i, row in enumerate(history):
        seen = row[~np.isnan(row)]
        if seen.size:
            last[i] = seen[-1]
    return np.repeat(last[:, None], horizon, axis=1)


class LoadForecaster:
    """Forecasts every job's next ``horizon`` minutes at given quantiles, with refits kept in state.

    ``factory`` builds a forecaster (``fit(history) -> Fitted``); by default
    ``faro.optimizer.forecast.make_forecaster(name, **options)``. ``min_history_min`` minutes are
    needed before the forecaster is used; ``refit_every_min`` forces a full refit now and then
    (0 = only when the job set changes).
    """

    def __init__(
        self,
        *,
        name: str = "auto",
        options: dict[str, Any] | None = None,
        factory: Callable[[], Any] | None = None,
        min_history_min: int = 15,
        refit_every_min: int = 60,
    ) -> None:
        self.name = name
        self.options = dict(options or {})
        self._factory = factory
        self.min_history_min = int(min_history_min)
        self.refit_every_min = int(refit_every_min)

    def _make(self) -> Any:
        if self._factory is not None:
            return self._factory()
        from faro.optimizer.forecast import make_forecaster

        return make_forecaster(self.name, **self.options)

    def forecast(
        self, view: ClusterView, state: ForecastState, *, horizon: int, quantiles: Sequence[float]
    ) -> tuple[dict[float, NDArray[np.float64]], ForecastState, str]:
        """Per-quantile (jobs × horizon) requests-per-minute tables, the new state and which source
        produced them (``forecaster``, ``naive`` or ``naive (error: …)``)."""
        history = history_matrix(view)
        job_keys = tuple(jv.spec.key for jv in view.jobs)
        minutes = history.shape[1]
        observed = np.sum(~np.isnan(history), axis=1)
        if minutes < self.min_history_min or observed.size == 0 or observed.max() < self.min_history_min:
            naive = naive_forecast(history, horizon)
            return {q: naive for q in quantiles}, state, "naive"
        try:
            fitted = state.fitted
            refit = (
                fitted is None
                or state.job_keys != job_keys
                or minutes < state.minutes_seen
                or (self.refit_every_min > 0 and minutes - state.fitted_at_minutes >= self.refit_every_min)
            )
            if refit:
                fitted = self._make().fit(history)
                state = ForecastState(fitted=fitted, job_keys=job_keys, minutes_seen=minutes, fitted_at_minutes=minutes)
            elif minutes > state.minutes_seen:
                fitted = fitted.update(history[:, state.minutes_seen :])
                state = ForecastState(
                    fitted=fitted, job_keys=job_keys, minutes_seen=minutes, fitted_at_minutes=state.fitted_at_minutes
                )
            result = fitted.forecast(horizon, list(quantiles))
            tables = {}
            for q in quantiles:
                table = np.asarray(result.quantile(q), dtype=float)
                tables[q] = np.maximum(0.0, np.nan_to_num(table, nan=0.0, posinf=0.0))
            return tables, state, "forecaster"
        except Exception as exc:  # a forecaster failure must not take the control loop down
            naive = naive_forecast(history, horizon)
            return {q: naive for q in quantiles}, ForecastState(), f"naive (error: {exc})"


def oracle_forecast(view: ClusterView, horizon: int) -> tuple[NDArray[np.float64], bool]:
    """The true coming minutes from ``future_rate_rpm`` (padded with their last value); falls back to
    the last observed minute for jobs without it. Returns the table and whether all jobs had it."""
    history = history_matrix(view)
    out = naive_forecast(history, horizon)
    complete = True
    for i, jv in enumerate(view.jobs):
        fut = jv.observation.future_rate_rpm
        if not fut:
            complete = False
            continue
        vals = np.asarray(fut[:horizon], dtype=float)
        vals = np.nan_to_num(vals, nan=0.0)
        out[i, : len(vals)] = vals
        out[i, len(vals) :] = vals[-1]
    return out, complete

"""Per-job load forecasts for the predictive policies (Faro hybrids, MArk, Oracle).

Turns the views' per-minute arrival histories into a (jobs × horizon) table of requests per minute
at the asked quantiles, keeping the fitted forecaster in the policy's state so each long-horizon
step only absorbs the new minutes (``Fitted.update``). Until enough minutes exist — or if the
forecaster fails — it falls back to the last observed minute, as the Faro artifact does before its
predictor has a full context window. Called by ``faro.py`` and ``mark.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from faro.optimizer.policy.base import ClusterView
from faro.optimizer.policy.common import Key
from numpy.typing import NDArray


@dataclass(frozen=True)
class ForecastGroup:
    """A fitted forecaster over the jobs ``keys`` (its rows, in order), fitted at ``fitted_at`` on
    the state's minute counter. ``served`` are the keys it still forecasts (None = all): the first
    fit covers the whole fleet and hands slices over to their own groups as they come due."""

    keys: tuple[Key, ...]
    fitted: Any
    fitted_at: int
    served: frozenset[Key] | None = None

    def serves(self, key: Key) -> bool:
        return self.served is None or key in self.served


@dataclass(frozen=True)
class ForecastState:
    """The fitted groups, the slices still to be split off the first fit (keys, due minute), how many
    history columns were absorbed, a minute counter that only grows (refit ages), and the view time
    of the last update (to count new minutes when the history was trimmed)."""

    groups: tuple[ForecastGroup, ...] = ()
    minutes_seen: int = 0
    clock_min: int = 0
    last_now_s: float | None = None
    pending: tuple[tuple[tuple[Key, ...], int], ...] = ()

    @property
    def fitted(self) -> Any:
        """The first group's fitted forecaster (None before the first fit)."""
        return self.groups[0].fitted if self.groups else None

    @property
    def job_keys(self) -> tuple[Key, ...]:
        """The keys forecast, by group."""
        return tuple(k for g in self.groups for k in g.keys if g.serves(k))


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


def recent_floor(history: NDArray[np.float64], minutes: int) -> NDArray[np.float64]:
    """Per job, the least of its last ``minutes`` observed minutes (0 without data or with ``minutes`` 0).

    A median-or-higher forecast below *every* recent minute bets on an immediate drop; after a level
    shift that is what a model fitted on a long, steady history does (measured: a day at 100 req/min,
    then 4,000 — the ``profile`` model still forecast 400–700 ten minutes later). The floor costs
    nothing in steady load, where the least of three minutes sits below the median."""
    if minutes <= 0 or history.shape[1] == 0:
        return np.zeros(history.shape[0])
    recent = history[:, -minutes:]
    seen = ~np.isnan(recent)
    return np.where(seen.any(axis=1), np.min(np.where(seen, recent, np.inf), axis=1), 0.0)


def naive_forecast(history: NDArray[np.float64], horizon: int) -> NDArray[np.float64]:
    """The last observed minute per job, repeated over the horizon (0 without data)."""
    last = np.zeros(history.shape[0])
    for i, row in enumerate(history):
        seen = row[~np.isnan(row)]
        if seen.size:
            last[i] = seen[-1]
    return np.repeat(last[:, None], horizon, axis=1)


PLANNING_CANDIDATES = "profile,ewma,holt,last,seasonal_naive,profile@1440,seasonal_naive@1440"
"""What the planners' ``auto`` forecaster chooses from per job: the usual models plus the seasonal ones
with a daily season — live load repeats daily (timers, office hours), the bundled paper trace's
concatenated 6-hour windows every 360 minutes. Measured on the generalisation suite (docs/policies.md).
The daily ones come last: ``auto`` breaks exact ties by order, and on a flat history every model scores 0
(a flat day fitted by a daily profile keeps forecasting it for hours after the load drops)."""


class LoadForecaster:
    """Forecasts every job's next ``horizon`` minutes at given quantiles, with refits kept in state.

    ``factory`` builds a forecaster (``fit(history) -> Fitted``); by default
    ``faro.optimizer.forecast.make_forecaster(name, **options)``. ``min_history_min`` minutes are
    needed before the forecaster is used; every job is refitted once per ``refit_every_min``
    minutes (0 = never on a schedule). The jobs are fitted in ``refit_slices`` slices (of at least
    ``min_slice_jobs`` jobs: each fit call has a fixed cost) whose refits are staggered over that
    period, so a cycle refits about 1/``refit_slices`` of the fleet instead of all of it once an
    hour (a refit of 1,000 jobs takes seconds). A refit keeps a fitted
    object's own choices where it can (``fitted.refit``, e.g. ``auto``'s model per job). New jobs
    get a slice of their own at once; a vanished job is dropped at its slice's next refit.
    """

    def __init__(
        self,
        *,
        name: str = "auto",
        options: dict[str, Any] | None = None,
        factory: Callable[[], Any] | None = None,
        min_history_min: int = 15,
        refit_every_min: int = 60,
        refit_slices: int = 1,
        min_slice_jobs: int = 1,
        recent_floor_min: int = 3,
    ) -> None:
        if refit_slices < 1:
            raise ValueError(f"refit_slices must be >= 1, got {refit_slices}")
        if min_slice_jobs < 1:
            raise ValueError(f"min_slice_jobs must be >= 1, got {min_slice_jobs}")
        self.name = name
        self.options = dict(options or {})
        if name == "auto":
            self.options.setdefault("candidates", PLANNING_CANDIDATES)
        self._factory = factory
        self.min_history_min = int(min_history_min)
        self.refit_every_min = int(refit_every_min)
        self.refit_slices = int(refit_slices)
        self.min_slice_jobs = int(min_slice_jobs)
        if recent_floor_min < 0:
            raise ValueError(f"recent_floor_min must be >= 0, got {recent_floor_min}")
        self.recent_floor_min = int(recent_floor_min)

    def _make(self) -> Any:
        if self._factory is not None:
            return self._factory()
        from faro.optimizer.forecast import make_forecaster

        return make_forecaster(self.name, **self.options)

    def _fit(self, history: NDArray[np.float64], previous: ForecastGroup | None = None,
             rows: NDArray[np.int64] | None = None, elapsed_min: int = 0) -> Any:
        refit = getattr(previous.fitted, "refit", None) if previous is not None else None
        if refit is not None:
            return refit(history, rows=rows, elapsed_min=elapsed_min)
        return self._make().fit(history)

    def _full_fit(
        self, history: NDArray[np.float64], job_keys: tuple[Key, ...], clock: int
    ) -> tuple[tuple[ForecastGroup, ...], tuple[tuple[tuple[Key, ...], int], ...]]:
        """One fit of the whole fleet (one pass costs much less than one per slice), and the slices
        1..k-1 to split off it at 1/k, 2/k … of the refit period (slice 0 stays with it)."""
        group = ForecastGroup(job_keys, self._make().fit(history), clock)
        slices = min(self.refit_slices, max(1, len(job_keys) // self.min_slice_jobs)) if self.refit_every_min > 0 else 1
        parts = np.array_split(np.arange(len(job_keys)), slices)
        pending = tuple(
            (tuple(job_keys[i] for i in idx), clock + (g * self.refit_every_min) // slices)
            for g, idx in enumerate(parts) if g > 0
        )
        return (group,), pending

    def _new_minutes(self, state: ForecastState, minutes: int, now_s: float) -> int | None:
        """Columns of ``history`` not yet absorbed; None when unknown (then everything is refitted)."""
        if minutes >= state.minutes_seen:
            return minutes - state.minutes_seen
        if state.last_now_s is None:  # history shrank and no time to go by
            return None
        new = int(now_s // 60) - int(state.last_now_s // 60)  # the history was trimmed: count by time
        return new if 0 <= new <= minutes else None

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
            groups, pending, clock = self._advance(history, job_keys, state, now_s=view.now_s)
            new_state = ForecastState(groups=groups, minutes_seen=minutes, clock_min=clock, last_now_s=view.now_s,
                                      pending=pending)
            index = {k: i for i, k in enumerate(job_keys)}
            tables = {q: np.zeros((len(job_keys), horizon)) for q in quantiles}
            for group in groups:
                result = group.fitted.forecast(horizon, list(quantiles))
                where = np.array([index.get(k, -1) if group.serves(k) else -1 for k in group.keys], dtype=np.int64)
                present = where >= 0
                for q in quantiles:
                    tables[q][where[present]] = np.asarray(result.quantile(q), dtype=float)[present]
            floor = recent_floor(history, self.recent_floor_min)
            for q in quantiles:
                tables[q] = np.maximum(0.0, np.nan_to_num(tables[q], nan=0.0, posinf=0.0))
                if q >= 0.5:
                    tables[q] = np.maximum(tables[q], floor[:, None])
            return tables, new_state, "forecaster"
        except Exception as exc:  # a forecaster failure must not take the control loop down
            naive = naive_forecast(history, horizon)
            return {q: naive for q in quantiles}, ForecastState(), f"naive (error: {exc})"

    def _advance(
        self, history: NDArray[np.float64], job_keys: tuple[Key, ...], state: ForecastState, *, now_s: float
    ) -> tuple[tuple[ForecastGroup, ...], tuple[tuple[tuple[Key, ...], int], ...], int]:
        """The groups after this cycle: updated with the new minutes, refitted where due, slices split
        off the first fit when due, plus a group for jobs none serves; the slices still pending; and
        the new minute counter."""
        new = self._new_minutes(state, history.shape[1], now_s) if state.groups else None
        if new is None:
            return *self._full_fit(history, job_keys, state.clock_min), state.clock_min
        clock = state.clock_min + new
        index = {k: i for i, k in enumerate(job_keys)}
        nan_row = np.full(history.shape[1], np.nan)
        groups: list[ForecastGroup] = []
        for group in state.groups:
            if self.refit_every_min > 0 and clock - group.fitted_at >= self.refit_every_min:
                kept = [(pos, k) for pos, k in enumerate(group.keys) if k in index and group.serves(k)]
                if kept:
                    rows = np.array([index[k] for _, k in kept])
                    fitted = self._fit(history[rows], group, np.array([p for p, _ in kept]), clock - group.fitted_at)
                    groups.append(ForecastGroup(tuple(k for _, k in kept), fitted, clock))
                continue
            fitted = group.fitted
            if new > 0:  # a vanished job's row gets missing minutes until its group is refitted
                rows = np.stack([history[index[k]] if k in index else nan_row for k in group.keys])
                fitted = fitted.update(rows[:, history.shape[1] - new :])
            groups.append(ForecastGroup(group.keys, fitted, group.fitted_at, group.served))
        pending = []
        for keys, due in state.pending:
            if clock < due:
                pending.append((keys, due))
                continue
            for g, group in enumerate(groups):  # split the slice off the group serving it
                pos = [p for p, k in enumerate(group.keys) if k in set(keys) and group.serves(k) and k in index]
                if not pos:
                    continue
                taken = tuple(group.keys[p] for p in pos)
                rows = np.array([index[k] for k in taken])
                fitted = self._fit(history[rows], group, np.array(pos), clock - group.fitted_at)
                served = (group.served if group.served is not None else frozenset(group.keys)) - set(taken)
                groups[g] = replace(group, served=served)
                groups.append(ForecastGroup(taken, fitted, clock))
                break
        groups = [g for g in groups if g.served is None or g.served]
        known = {k for g in groups for k in g.keys if g.serves(k)}
        fresh = [i for i, k in enumerate(job_keys) if k not in known]
        if fresh:
            groups.append(ForecastGroup(tuple(job_keys[i] for i in fresh), self._make().fit(history[fresh]), clock))
        return tuple(groups), tuple(pending), clock


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

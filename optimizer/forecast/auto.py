"""``auto``: per-job model choice by a rolling backtest on the end of the history, refitted on a schedule.

At fit time every candidate is fitted on all but the last ``selection_min`` minutes and rolled
through them (forecast every ``selection_stride`` minutes, ``update`` in between, exactly as the
control loop uses it); each job keeps the candidate with the least mean pinball loss over
``selection_quantiles`` (ties go to the earlier candidate). Each chosen candidate is then fitted on the
whole history for its jobs only. ``update`` forwards new minutes to the members and, once
``refit_every_min`` minutes have arrived, refits (model choice included) from a bounded buffer of the
last ``max_history_min`` minutes, so refits are amortised over the cycles in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from faro.optimizer.errors import InvalidInputError
from numpy.typing import NDArray

from ._common import as_history, check_request, check_update
from .backtest import rolling_forecasts, score
from .base import FittedForecaster, Forecast, Forecaster

MIN_SELECTION_MIN = 30


@dataclass(frozen=True)
class FittedAuto:
    owner: Auto
    names: tuple[str, ...]  # candidate names, in preference order
    choice: NDArray[np.int64]  # (N,) index into names
    members: tuple[tuple[int, NDArray[np.int64], FittedForecaster], ...]  # (candidate, job rows, fitted)
    chunks: tuple[NDArray[np.float64], ...]  # history since (and including) the last fit, for refits
    since_fit_min: int

    @property
    def chosen(self) -> tuple[str, ...]:
        """The model each job uses."""
        return tuple(self.names[i] for i in self.choice)

    def update(self, new_counts: NDArray[np.float64]) -> FittedAuto:
        new = check_update(new_counts, self.choice.size)
        since = self.since_fit_min + new.shape[1]
        chunks = (*self.chunks, new)
        every = self.owner.refit_every_min
        if every is not None and since >= every:
            return self.owner.fit(np.concatenate(chunks, axis=1)[:, -self.owner.max_history_min :])
        members = tuple((c, rows, fitted.update(new[rows])) for c, rows, fitted in self.members)
        return FittedAuto(self.owner, self.names, self.choice, members, chunks, since)

    def forecast(self, horizon: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        horizon, qs = check_request(horizon, quantiles)
        n = self.choice.size
        mean = np.zeros((n, horizon))
        out = {q: np.zeros((n, horizon)) for q in qs}
        for _, rows, fitted in self.members:
            fc = fitted.forecast(horizon, qs)
            mean[rows] = fc.mean
            for q in qs:
                out[q][rows] = fc.quantile(q)
        return Forecast(mean=mean, quantiles=out)


@dataclass(frozen=True)
class Auto:
    candidates: Mapping[str, Forecaster]
    selection_min: int = 360
    selection_stride: int = 5
    selection_horizon: int = 7
    selection_quantiles: tuple[float, ...] = (0.5, 0.9)
    refit_every_min: int | None = 60
    max_history_min: int = 4320
    name: str = "auto"

    def __post_init__(self) -> None:
        if not self.candidates:
            raise InvalidInputError("auto.candidates", "needs at least one model")
        for field in ("selection_min", "selection_stride", "selection_horizon", "max_history_min"):
            if getattr(self, field) < 1:
                raise InvalidInputError(f"auto.{field}", f"must be ≥ 1, got {getattr(self, field)}")
        if self.refit_every_min is not None and self.refit_every_min < 1:
            raise InvalidInputError("auto.refit_every_min", f"must be ≥ 1 or None, got {self.refit_every_min}")

    def select(self, history: NDArray[np.float64]) -> NDArray[np.int64]:
        """Index of the best candidate per job (0 when the history is too short to compare)."""
        n_jobs, n_min = history.shape
        window = min(self.selection_min, n_min // 2)
        if len(self.candidates) == 1 or window < MIN_SELECTION_MIN:
            return np.zeros(n_jobs, dtype=np.int64)
        losses = np.full((len(self.candidates), n_jobs), np.inf)
        for i, model in enumerate(self.candidates.values()):
            rf = rolling_forecasts(
                model, history, start=n_min - window, horizon=self.selection_horizon,
                quantiles=self.selection_quantiles, stride=self.selection_stride, end=n_min - 1,
            )
            pin = np.mean([score(rf).pinball[q] for q in self.selection_quantiles], axis=0)
            losses[i] = np.where(np.isfinite(pin), pin, np.inf)
        return np.argmin(losses, axis=0)

    def fit(self, history: NDArray[np.float64]) -> FittedAuto:
        hist = as_history(history)
        choice = self.select(hist)
        names = tuple(self.candidates)
        members = []
        for i, model in enumerate(self.candidates.values()):
            rows = np.flatnonzero(choice == i)
            if rows.size:
                members.append((i, rows, model.fit(hist[rows])))
        return FittedAuto(self, names, choice, tuple(members), (hist,), 0)

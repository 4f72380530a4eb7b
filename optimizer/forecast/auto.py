"""``auto``: per-job model choice by a rolling backtest on the end of the history, refitted on a schedule.

At fit time every candidate is fitted on all but the last ``selection_min`` minutes and rolled
through them (forecast every ``selection_stride`` minutes, ``update`` in between, exactly as the
control loop uses it); each job keeps the candidate with the least mean pinball loss over
``selection_quantiles`` (ties go to the earlier candidate). Each chosen candidate is then fitted on the
whole history for its jobs only. ``update`` forwards new minutes to the members and, once
``refit_every_min`` minutes have arrived, refits from a bounded buffer of the last ``max_history_min``
minutes, so refits are amortised over the cycles in between.

Choosing the model costs ~10× refitting it (every candidate is fitted and rolled through the
selection window), so a refit keeps each job's model and only re-estimates its parameters; the
choice itself is redone every ``reselect_every_min`` minutes (default a day; ``None`` = at every
refit, the old behaviour) and at every refit while the history was too short for a full
``selection_min`` window. ``FittedAuto.refit(history)`` is the same refit on a history the caller
supplies (the policy's ``LoadForecaster`` refits a slice of the jobs per cycle with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

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
    since_select_min: int = 0  # minutes since the model choice was made (carried across refits)
    selection_window_min: int = 0  # window the choice was judged on (< selection_min: history was short)

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
            return self.refit(np.concatenate(chunks, axis=1)[:, -self.owner.max_history_min :], elapsed_min=since)
        members = tuple((c, rows, fitted.update(new[rows])) for c, rows, fitted in self.members)
        return replace(self, members=members, chunks=chunks, since_fit_min=since)

    def reselect_due(self, elapsed_min: int | None = None) -> bool:
        """Whether a refit now would choose the models again (see the module docstring)."""
        every = self.owner.reselect_every_min
        elapsed = self.since_select_min + (self.since_fit_min if elapsed_min is None else elapsed_min)
        return every is None or elapsed >= every or self.selection_window_min < self.owner.selection_min

    def refit(
        self, history: NDArray[np.float64], *, rows: NDArray[np.int64] | None = None, elapsed_min: int | None = None
    ) -> FittedAuto:
        """Refit on ``history`` (jobs × minutes) keeping each job's model unless a reselection is due.

        ``rows`` says which of the fitted jobs ``history``'s rows are (default: all, in order);
        ``elapsed_min`` how many minutes passed since the last fit (default: those ``update`` saw).
        """
        hist = as_history(history)
        elapsed = self.since_fit_min if elapsed_min is None else int(elapsed_min)
        if self.reselect_due(elapsed):
            return self.owner.fit(hist)
        choice = self.choice if rows is None else self.choice[np.asarray(rows, dtype=np.int64)]
        if choice.size != hist.shape[0]:
            raise InvalidInputError("history", f"has {hist.shape[0]} jobs, refit asked for {choice.size}")
        return self.owner.fit_choice(
            hist, choice, since_select_min=self.since_select_min + elapsed,
            selection_window_min=self.selection_window_min,
        )

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
    reselect_every_min: int | None = 1440
    max_history_min: int = 4320
    name: str = "auto"

    def __post_init__(self) -> None:
        if not self.candidates:
            raise InvalidInputError("auto.candidates", "needs at least one model")
        for field in ("selection_min", "selection_stride", "selection_horizon", "max_history_min"):
            if getattr(self, field) < 1:
                raise InvalidInputError(f"auto.{field}", f"must be ≥ 1, got {getattr(self, field)}")
        for field in ("refit_every_min", "reselect_every_min"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise InvalidInputError(f"auto.{field}", f"must be ≥ 1 or None, got {value}")

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
        window = min(self.selection_min, hist.shape[1] // 2) if len(self.candidates) > 1 else self.selection_min
        return self.fit_choice(hist, self.select(hist), since_select_min=0, selection_window_min=window)

    def fit_choice(
        self, history: NDArray[np.float64], choice: NDArray[np.int64], *, since_select_min: int = 0,
        selection_window_min: int | None = None,
    ) -> FittedAuto:
        """Fit each job's given model (``choice`` indexes the candidates) on ``history``."""
        hist = as_history(history)
        names = tuple(self.candidates)
        members = []
        for i, model in enumerate(self.candidates.values()):
            rows = np.flatnonzero(choice == i)
            if rows.size:
                members.append((i, rows, model.fit(hist[rows])))
        window = self.selection_min if selection_window_min is None else selection_window_min
        return FittedAuto(self, names, np.asarray(choice, dtype=np.int64), tuple(members), (hist,), 0,
                          since_select_min, window)

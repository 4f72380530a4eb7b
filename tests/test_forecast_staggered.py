"""Amortised refits at fleet scale: the policy's ``LoadForecaster`` refits a slice of the jobs per
cycle (every job within each refit period), new and vanished jobs are handled without a full
refit, a trimmed history is not mistaken for a reset, and ``auto`` re-chooses models only on its
own (daily) schedule while parameter refits keep the choice."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.forecast.base import Forecast
from faro.optimizer.model.problem import SLO
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.forecasting import ForecastState, LoadForecaster


def series(n_jobs: int, minutes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(minutes)
    base = rng.uniform(100, 1000, size=(n_jobs, 1))
    return np.maximum(0.0, base * (1 + 0.4 * np.sin(2 * np.pi * (t + 37 * np.arange(n_jobs)[:, None]) / 360))
                      + rng.normal(0, 15, size=(n_jobs, minutes))).round()


def view(hist: np.ndarray, now_s: float, names: list[str] | None = None) -> ClusterView:
    names = names or [f"j{i}" for i in range(hist.shape[0])]
    jobs = tuple(
        JobView(spec=JobSpec(name=name, slo=SLO(500.0), processing_time_ms=50.0),
                observation=JobObservation(rate_history_rpm=tuple(row)), current_replicas=1, ready_replicas=1)
        for name, row in zip(names, hist, strict=True)
    )
    return ClusterView(now_s=now_s, jobs=jobs)


class Counting:
    """A last-value forecaster that records which rows (by their first value) each fit saw."""

    def __init__(self, log: list[list[float]]) -> None:
        self.log = log

    def fit(self, history):
        self.log.append([float(r) for r in history[:, 0]])  # row identity: each job's first minute differs
        return _Fitted(history[:, -1].copy())


class _Fitted:
    def __init__(self, last):
        self.last = last

    def update(self, new):
        return _Fitted(np.where(np.isfinite(new[:, -1]), new[:, -1], self.last))

    def forecast(self, horizon, quantiles):
        table = np.repeat(np.nan_to_num(self.last)[:, None], horizon, axis=1)
        return Forecast(mean=table, quantiles={q: table for q in quantiles})


def test_every_job_is_refitted_once_per_period_and_each_cycle_refits_one_slice():
    n_jobs, cycle_min, every = 60, 5, 60
    data = np.arange(n_jobs, dtype=float)[:, None] + np.zeros((1, 600))  # the row id is every value
    log: list[list[float]] = []
    fc = LoadForecaster(factory=lambda: Counting(log), refit_every_min=every, refit_slices=12)
    state = ForecastState()
    refit_at: dict[float, list[int]] = {float(i): [] for i in range(n_jobs)}
    for cycle in range(40):
        minutes = 120 + cycle * cycle_min
        before = len(log)
        _, state, source = fc.forecast(view(data[:, :minutes], minutes * 60.0), state, horizon=3, quantiles=[0.9])
        assert source == "forecaster"
        fitted_now = [job for rows in log[before:] for job in rows]
        if cycle > 0:
            assert len(fitted_now) <= -(-n_jobs // 12)  # one slice per cycle, never the whole fleet
        for job in fitted_now:
            refit_at[job].append(minutes)
    for job, times in refit_at.items():
        gaps = np.diff(times)
        assert times[0] == 120 and gaps.max() <= every, job  # refitted at least once per period
        assert times[-1] >= 120 + 39 * cycle_min - every


def test_a_new_job_gets_its_own_fit_and_a_vanished_one_is_dropped_at_its_slice_refit():
    log: list[list[float]] = []
    fc = LoadForecaster(factory=lambda: Counting(log), refit_every_min=60, refit_slices=2)
    data = np.arange(4, dtype=float)[:, None] + np.zeros((1, 300))
    tables, state, _ = fc.forecast(view(data[:3, :100], 6000.0), ForecastState(), horizon=2, quantiles=[0.5])
    assert len(log) == 1 and sorted(log[0]) == [0.0, 1.0, 2.0]  # one fit of the fleet
    log.clear()
    names = ["j0", "j2", "j3"]  # j1 vanished, j3 is new, and the order changed
    tables, state, _ = fc.forecast(view(data[[0, 2, 3], :105], 6300.0, names), state, horizon=2, quantiles=[0.5])
    assert log == [[3.0]]  # only the new job was fitted
    assert tables[0.5][:, 0].tolist() == [0.0, 2.0, 3.0]  # each row is its own job's forecast
    for minutes in range(110, 200, 5):  # run past every slice's refit: j1 is gone for good
        tables, state, _ = fc.forecast(view(data[[0, 2, 3], :minutes], minutes * 60.0, names), state, horizon=2,
                                       quantiles=[0.5])
    assert ("default", "j1") not in state.job_keys
    assert sorted(state.job_keys) == [("default", "j0"), ("default", "j2"), ("default", "j3")]
    assert tables[0.5][:, 0].tolist() == [0.0, 2.0, 3.0]


def test_a_trimmed_history_is_counted_by_time_and_does_not_refit_everything():
    log: list[list[float]] = []
    fc = LoadForecaster(factory=lambda: Counting(log), refit_every_min=60, refit_slices=12)
    data = np.arange(24, dtype=float)[:, None] + np.zeros((1, 2000))
    _, state, _ = fc.forecast(view(data[:, :1440], 1440 * 60.0), ForecastState(), horizon=2, quantiles=[0.5])
    log.clear()
    # the loop trims an hour once the history exceeds its cap: 1445 minutes seen as 1385
    _, state, _ = fc.forecast(view(data[:, 65:1445], 1445 * 60.0), state, horizon=2, quantiles=[0.5])
    assert sum(len(rows) for rows in log) <= 2  # five minutes later: one slice due, not a refit of all 24 jobs
    assert state.clock_min == 5


def test_a_slice_split_off_the_first_fit_forecasts_as_a_fresh_fit_and_the_rest_as_before():
    """Every model fits each job on its own rows, so fitting the fleet in slices changes no forecast
    beyond the refit times."""
    hist = series(23, 960)
    # recent_floor_min=0: the raw forecasts, to compare with a fresh fit's
    one = LoadForecaster(name="profile", refit_slices=1, recent_floor_min=0)
    many = LoadForecaster(name="profile", refit_slices=5, recent_floor_min=0)
    a, one_state, _ = one.forecast(view(hist[:, :900], 900 * 60.0), ForecastState(), horizon=7, quantiles=[0.9])
    b, state, _ = many.forecast(view(hist[:, :900], 900 * 60.0), ForecastState(), horizon=7, quantiles=[0.9])
    assert len(state.groups) == 1 and [due for _, due in state.pending] == [12, 24, 36, 48]
    np.testing.assert_array_equal(a[0.9], b[0.9])

    a, _, _ = one.forecast(view(hist[:, :912], 912 * 60.0), one_state, horizon=7, quantiles=[0.9])
    b, state, _ = many.forecast(view(hist[:, :912], 912 * 60.0), state, horizon=7, quantiles=[0.9])
    assert len(state.groups) == 2 and len(state.pending) == 3
    carved = np.arange(5, 10)  # slice 1 of 23 jobs in 5 slices
    fresh = make_forecaster("profile").fit(hist[carved, :912]).forecast(7, [0.9]).quantile(0.9)
    np.testing.assert_allclose(b[0.9][carved], np.maximum(fresh, 0.0), rtol=1e-12)
    rest = np.setdiff1d(np.arange(23), carved)
    np.testing.assert_array_equal(b[0.9][rest], a[0.9][rest])


def test_auto_refit_keeps_each_jobs_model_until_reselection_is_due():
    hist = series(12, 1600, seed=4)
    auto = make_forecaster("auto", refit_every_min=None, reselect_every_min=120)
    fitted = auto.fit(hist[:, :1400])
    assert not fitted.reselect_due(60)
    refit = fitted.refit(hist[:, :1460], elapsed_min=60)
    np.testing.assert_array_equal(refit.choice, fitted.choice)
    assert refit.since_select_min == 60
    same = auto.fit_choice(hist[:, :1460], fitted.choice)
    a, b = refit.forecast(7, (0.5, 0.9)), same.forecast(7, (0.5, 0.9))
    for q in (0.5, 0.9):
        np.testing.assert_array_equal(a.quantile(q), b.quantile(q))
    assert refit.reselect_due(60)
    again = refit.refit(hist[:, :1520], elapsed_min=60)
    np.testing.assert_array_equal(again.choice, auto.select(hist[:, :1520]))
    assert again.since_select_min == 0


def test_auto_refit_of_a_subset_of_rows_keeps_their_models():
    hist = series(10, 1500, seed=2)
    fitted = make_forecaster("auto", refit_every_min=None).fit(hist[:, :1400])
    rows = np.array([1, 4, 7])
    sub = fitted.refit(hist[rows, :1450], rows=rows, elapsed_min=50)
    np.testing.assert_array_equal(sub.choice, fitted.choice[rows])


def test_auto_reselects_at_every_refit_while_the_history_is_short_and_when_asked_to():
    short = make_forecaster("auto", refit_every_min=None).fit(series(4, 200))
    assert short.reselect_due(5)  # chosen on a 100-minute window: choose again next time
    always = make_forecaster("auto", refit_every_min=None, reselect_every_min=None).fit(series(4, 1500))
    assert always.reselect_due(5)


def test_auto_internal_refit_keeps_the_choice():
    hist = series(6, 1600, seed=1)
    fitted = make_forecaster("auto", refit_every_min=30).fit(hist[:, :1400])
    later = fitted.update(hist[:, 1400:1435])
    assert later.since_fit_min == 0 and later.since_select_min == 35
    np.testing.assert_array_equal(later.choice, fitted.choice)


@pytest.mark.parametrize("value", [pytest.param(0, id="zero"), pytest.param(-5, id="negative")])
def test_auto_rejects_a_bad_reselection_period_by_name(value):
    from faro.optimizer.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="reselect_every_min"):
        make_forecaster("auto", reselect_every_min=value)


@pytest.mark.parametrize(("n_jobs", "pending"), [pytest.param(10, 0, id="10-jobs-one-fit"),
                                                  pytest.param(120, 1, id="120-jobs-two-slices"),
                                                  pytest.param(1000, 11, id="1000-jobs-twelve-slices")])
def test_small_fleets_are_not_sliced_below_the_minimum_slice_size(n_jobs, pending):
    log: list[list[float]] = []
    fc = LoadForecaster(factory=lambda: Counting(log), refit_every_min=60, refit_slices=12, min_slice_jobs=50)
    data = np.arange(n_jobs, dtype=float)[:, None] + np.zeros((1, 30))
    _, state, _ = fc.forecast(view(data, 1800.0), ForecastState(), horizon=2, quantiles=[0.5])
    assert len(state.pending) == pending


def test_the_faro_policy_slices_one_refit_period_into_its_long_steps():
    from faro.optimizer.policy.registry import make_policy

    default = make_policy("faro-fairsum")._forecaster
    assert (default.refit_slices, default.min_slice_jobs) == (12, 50)  # 300 s steps, hourly refits
    explicit = make_policy("faro-fairsum", refit_slices=4)._forecaster
    assert (explicit.refit_slices, explicit.min_slice_jobs) == (4, 1)

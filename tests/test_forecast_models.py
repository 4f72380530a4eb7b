"""Forecasters are calibrated, safe on awkward input, deterministic, immutable and honest about errors."""

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.forecast import FORECASTERS, Forecast, make_forecaster
from faro.optimizer.forecast.backtest import rolling_forecasts, score

SEASON = 120


def model(name, **kw):
    opts = {"season_min": SEASON} if name in ("seasonal_naive", "profile", "auto") else {}
    if name == "auto":
        opts |= {"selection_min": 120, "refit_every_min": 120}
    return make_forecaster(name, **(opts | kw))


def poisson_sine(n_jobs=12, minutes=6 * SEASON, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(minutes)
    base = rng.uniform(50, 400, size=(n_jobs, 1))
    rate = base * (1 + 0.5 * np.sin(2 * np.pi * t / SEASON + rng.uniform(0, 6, size=(n_jobs, 1))))
    return rng.poisson(rate).astype(float)


@pytest.mark.parametrize("name", ["profile", "ewma", "last", "auto"])
def test_the_09_quantile_covers_85_to_95_percent_of_poisson_load_around_a_sine(name):
    series = poisson_sine()
    start = 4 * SEASON
    rf = rolling_forecasts(model(name), series, start=start, horizon=7, quantiles=(0.5, 0.9), refit_every_min=None)
    coverage = float(np.mean(score(rf).coverage[0.9]))
    assert 0.85 <= coverage <= 0.95


AWKWARD = [
    pytest.param(np.zeros((3, 500)), id="all zeros"),
    pytest.param(np.where(np.arange(500) % 97 == 0, 1e6, 5.0)[None].repeat(2, 0), id="huge spikes"),
    pytest.param(np.array([[7.0], [0.0]]), id="one minute"),
    pytest.param(np.array([[3.0, 9.0, 4.0]]), id="three minutes"),
    pytest.param(np.full((2, 40), np.nan), id="nothing observed"),
    pytest.param(
        np.where(np.random.default_rng(1).random((4, 400)) < 0.3, np.nan, 100.0 + np.arange(400) % 17),
        id="missing minutes",
    ),
    pytest.param(np.vstack([np.full(300, np.nan), np.linspace(0, 1000, 300)]), id="one job never seen, one ramping"),
    pytest.param(np.linspace(500, 0, 400)[None], id="declining to zero"),
]


@pytest.mark.parametrize("history", AWKWARD)
@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_forecasts_are_finite_and_non_negative_on_awkward_histories(name, history):
    fitted = model(name).fit(history)
    n = history.shape[0]
    for step in (np.full((n, 1), np.nan), np.zeros((n, 2)), np.full((n, 1), 50.0)):
        fitted = fitted.update(step)
        fc = fitted.forecast(7, (0.1, 0.5, 0.6, 0.9, 0.995))
        assert fc.mean.shape == (history.shape[0], 7)
        for values in (fc.mean, *fc.quantiles.values()):
            assert np.isfinite(values).all()
            assert (values >= 0).all()
        stacked = np.stack([fc.quantile(q) for q in (0.1, 0.5, 0.6, 0.9, 0.995)])
        assert (np.diff(stacked, axis=0) >= -1e-9).all()  # quantiles never cross


@pytest.mark.parametrize("name", sorted(FORECASTERS))
def test_fit_and_forecast_are_deterministic_with_a_seed(name):
    series = poisson_sine(n_jobs=4, minutes=3 * SEASON, seed=3)
    runs = [model(name, seed=7).fit(series).update(series[:, -3:]).forecast(7, (0.5, 0.9)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].mean, runs[1].mean)
    np.testing.assert_array_equal(runs[0].quantile(0.9), runs[1].quantile(0.9))


@pytest.mark.parametrize("name", ["last", "seasonal_naive", "ewma", "profile", "auto"])
def test_update_returns_a_new_fit_and_leaves_the_old_one_alone(name):
    series = poisson_sine(n_jobs=3, minutes=3 * SEASON)
    fitted = model(name).fit(series)
    before = fitted.forecast(7, (0.9,)).quantile(0.9).copy()
    newer = fitted.update(np.full((3, 5), 5000.0))
    np.testing.assert_array_equal(fitted.forecast(7, (0.9,)).quantile(0.9), before)
    after = newer.forecast(7, (0.9,)).quantile(0.9)
    assert not np.array_equal(after, before)
    if name != "seasonal_naive":  # it looks a season back, not at the jump
        assert after[:, 0].mean() > before[:, 0].mean()


def test_profile_learns_a_repeating_day_shape_that_the_last_value_cannot_see():
    rng = np.random.default_rng(5)
    t = np.arange(8 * SEASON)
    shape = 300 + 250 * np.sign(np.sin(2 * np.pi * t / SEASON))  # jumps at fixed minutes each day
    series = rng.poisson(np.tile(shape, (3, 1))).astype(float)
    start = 6 * SEASON
    losses = {}
    for name in ("profile", "last"):
        rf = rolling_forecasts(model(name), series, start=start, horizon=7, quantiles=(0.9,))
        losses[name] = float(np.mean(score(rf).pinball[0.9]))
    assert losses["profile"] < 0.7 * losses["last"]


def cold_series(kind, n_jobs=40, minutes=20, seed=3):
    """Short histories (a cold start): bursty minutes about a level, or a ramp."""
    rng = np.random.default_rng(seed)
    if kind == "bursty":  # a code assistant's minutes: mostly ~150, now and then a burst
        rate = np.where(rng.random((n_jobs, minutes + 8)) < 0.2, 700.0, 150.0)
    else:
        rate = np.tile(300.0 + 25.0 * np.arange(minutes + 8), (n_jobs, 1))
    return rng.poisson(rate).astype(float)


def test_a_cold_start_takes_a_burst_minute_as_a_burst_not_as_the_new_level():
    series = cold_series("bursty")
    series[:, 19] = 700.0  # the last minute seen is a burst
    fc = make_forecaster("profile").fit(series[:, :20]).forecast(6, (0.5, 0.9))
    walk = make_forecaster("profile", cold_reverting_rho=0.0).fit(series[:, :20]).forecast(6, (0.5, 0.9))
    level = np.mean(series[:, :19], axis=1)
    # the median a few minutes on is near the level, not the burst (a random walk repeats 700)
    assert np.all(np.abs(fc.quantile(0.5)[:, 3:] - level[:, None]) < 0.35 * (700.0 - level[:, None]))
    np.testing.assert_allclose(walk.quantile(0.5), 700.0)
    # its 0.9 quantile still allows for bursts, without a random walk's widening from one
    assert np.all(fc.quantile(0.9)[:, 5] > level + 100.0)
    assert np.all(fc.quantile(0.9)[:, 5] < walk.quantile(0.9)[:, 5])


def test_a_cold_start_keeps_a_ramps_last_value():
    series = cold_series("ramp")
    fc = make_forecaster("profile").fit(series[:, :20]).forecast(6, (0.5,))
    np.testing.assert_allclose(fc.quantile(0.5), np.repeat(series[:, 19:20], 6, axis=1))


@pytest.mark.parametrize("kind", ["bursty", "ramp"])
def test_the_cold_start_forecast_scores_at_least_as_well_as_the_last_value(kind):
    series = cold_series(kind, minutes=40)
    losses = {}
    for name in ("profile", "last"):
        rf = rolling_forecasts(make_forecaster(name), series, start=20, horizon=6, quantiles=(0.1, 0.5, 0.9))
        losses[name] = float(np.mean([np.mean(score(rf).pinball[q]) for q in (0.1, 0.5, 0.9)]))
    assert losses["profile"] <= (0.9 if kind == "bursty" else 1.0) * losses["last"] + 1e-9


def test_ets_intervals_are_statsmodels_own():
    pd = pytest.importorskip("pandas")
    from faro.optimizer.forecast.ets import interval_sigmas
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    rng = np.random.default_rng(2)
    y = 300 + np.cumsum(rng.normal(0, 5, 400)) + rng.normal(0, 20, 400)
    res = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=True).fit(disp=False)
    p = dict(zip(res.param_names, res.params, strict=True))
    ours = interval_sigmas(
        np.array([p["smoothing_level"]]), np.array([p["smoothing_trend"]]), np.array([p["damping_trend"]]),
        np.array([res.mse]), 5,
    )
    theirs = np.sqrt(res.get_prediction(start=400, end=404).var_pred_mean)
    np.testing.assert_allclose(ours[0], theirs, rtol=1e-6)
    fc = make_forecaster("ets", fit_window_min=400).fit(y[None]).forecast(5, (0.5,))
    np.testing.assert_allclose(fc.mean[0], res.forecast(5), rtol=1e-3)


def test_forecast_quantile_interpolates_between_stored_levels():
    fc = Forecast(mean=np.array([[10.0]]), quantiles={0.5: np.array([[10.0]]), 0.9: np.array([[20.0]])})
    assert fc.quantile(0.7)[0, 0] == pytest.approx(15.0)


def test_auto_reports_the_model_it_chose_per_job():
    series = poisson_sine(n_jobs=3, minutes=4 * SEASON)
    fitted = model("auto").fit(series)
    assert len(fitted.chosen) == 3
    assert set(fitted.chosen) <= set(FORECASTERS)


@pytest.mark.parametrize(
    ("name", "options", "where"),
    [
        pytest.param("arima", {}, "forecaster", id="unknown model"),
        pytest.param("ewma", {"season_min": 5}, "forecaster ewma option season_min", id="option the model lacks"),
        pytest.param("auto", {"bogus": 1}, "forecaster auto option bogus", id="option no candidate takes"),
        pytest.param("auto", {"candidates": "profile,nope"}, "forecaster auto option candidates", id="bad candidate"),
        pytest.param("profile", {"season_min": 1}, "profile.season_min", id="season too short"),
    ],
)
def test_bad_configuration_is_an_error_naming_the_field(name, options, where):
    with pytest.raises(InvalidInputError) as err:
        make_forecaster(name, **options)
    assert err.value.where == where


@pytest.mark.parametrize(
    ("history", "field"),
    [
        pytest.param([[1.0, -2.0]], "history", id="negative counts"),
        pytest.param([[1.0, np.inf]], "history", id="infinite counts"),
        pytest.param(np.zeros((2, 2, 2)), "history", id="three dimensions"),
    ],
)
def test_bad_histories_are_errors_naming_the_input(history, field):
    with pytest.raises(InvalidInputError) as err:
        make_forecaster("ewma").fit(history)
    assert err.value.where == field


def test_an_update_for_the_wrong_number_of_jobs_is_an_error():
    fitted = make_forecaster("last").fit(np.ones((3, 10)))
    with pytest.raises(InvalidInputError, match="new_counts"):
        fitted.update(np.ones((2, 1)))
    assert fitted.update(np.ones(3)).forecast(1, (0.5,)).mean.shape == (3, 1)  # one minute as a vector is fine

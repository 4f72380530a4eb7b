"""A level shift after a long, steady history: the policy's forecasts must not bet on an immediate
return to the old level (``LoadForecaster``'s recent floor)."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.model.problem import SLO
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.forecasting import ForecastState, LoadForecaster, recent_floor


def view(rows: np.ndarray, now_s: float) -> ClusterView:
    jobs = tuple(
        JobView(spec=JobSpec(name=f"j{i}", slo=SLO(720.0), processing_time_ms=180.0),
                observation=JobObservation(rate_history_rpm=tuple(row)), current_replicas=1, ready_replicas=1)
        for i, row in enumerate(rows)
    )
    return ClusterView(now_s=now_s, jobs=jobs)


def test_after_a_day_at_100_and_three_minutes_at_4000_the_forecast_is_at_least_the_new_level():
    rng = np.random.default_rng(0)
    history = rng.poisson(100, size=(1, 1440)).astype(float)
    forecaster = LoadForecaster(name="auto")
    state = ForecastState()
    _, state, _ = forecaster.forecast(view(history, 1440 * 60.0), state, horizon=7, quantiles=[0.8])
    shifted = np.hstack([history, [[4010.0, 3950.0, 4030.0]]])
    tables, _, source = forecaster.forecast(view(shifted, 1443 * 60.0), state, horizon=7, quantiles=[0.5, 0.8])
    assert source == "forecaster"
    assert tables[0.8].min() >= 3950.0 and tables[0.5].min() >= 3950.0


@pytest.mark.parametrize(
    ("rows", "minutes", "expected"),
    [pytest.param([[5.0, 9.0, 7.0, 8.0]], 3, [7.0], id="least-of-the-last-three"),
     pytest.param([[5.0, np.nan, 9.0, np.nan]], 3, [9.0], id="missing-minutes-skipped"),
     pytest.param([[np.nan, np.nan]], 3, [0.0], id="no-data-no-floor"),
     pytest.param([[5.0, 9.0]], 0, [0.0], id="switched-off")],
)
def test_recent_floor(rows, minutes, expected):
    assert recent_floor(np.asarray(rows), minutes).tolist() == expected

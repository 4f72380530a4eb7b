"""On the paper's evaluation day, ``auto`` beats the naive baselines at q=0.9 and stays calibrated.

Fitted on the bundled days 1–10 (``traces/faro-top9-history.csv``), evaluated on the bundled day 11.
"""

import numpy as np
import pytest
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.forecast.backtest import rolling_forecasts, score
from faro.optimizer.forecast.data import bundled_day11, bundled_history


@pytest.fixture(scope="module")
def day11_scores():
    history = bundled_history().counts
    series = np.concatenate([history, bundled_day11().counts], axis=1)
    out = {}
    for name in ("auto", "last", "seasonal_naive"):
        model = make_forecaster(name, **({"refit_every_min": 60} if name == "auto" else {}))
        refit = None if name == "auto" else 60
        rf = rolling_forecasts(
            model, series, start=history.shape[1], horizon=7, quantiles=(0.9,), refit_every_min=refit
        )
        out[name] = score(rf)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["last", "seasonal_naive"])
def test_auto_beats_the_baseline_by_15_percent_pinball_at_q09_on_day_11(day11_scores, baseline):
    ours = float(np.mean(day11_scores["auto"].pinball[0.9]))
    theirs = float(np.mean(day11_scores[baseline].pinball[0.9]))
    assert ours <= 0.85 * theirs


@pytest.mark.slow
def test_auto_09_quantile_covers_85_to_95_percent_of_day_11(day11_scores):
    assert 0.85 <= float(np.mean(day11_scores["auto"].coverage[0.9])) <= 0.95

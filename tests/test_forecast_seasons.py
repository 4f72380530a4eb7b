"""``auto`` candidates with their own season (``profile@1440``): one fleet, 6-hour and daily cycles."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.forecast import make_forecaster
from faro.optimizer.policy.forecasting import PLANNING_CANDIDATES


def test_a_candidate_can_carry_its_own_season():
    auto = make_forecaster("auto", candidates="profile,profile@1440,seasonal_naive@1440,last")
    seasons = {name: getattr(model, "season_min", None) for name, model in auto.candidates.items()}
    assert seasons == {"profile": 360, "profile@1440": 1440, "seasonal_naive@1440": 1440, "last": None}
    for bad in ("last@60", "profile@day", "nope@1440"):
        with pytest.raises(InvalidInputError, match="candidates"):
            make_forecaster("auto", candidates=bad)


def test_auto_picks_the_daily_season_for_a_job_with_a_daily_timer_and_the_6_hour_one_for_the_paper_shape():
    days = 4
    t = np.arange(days * 1440)
    daily = np.where((t % 1440) // 60 % 4 == 0, 1000.0, 0.0)  # on for an hour every 4 hours, 6 times a day
    # the paper trace's concatenated 6-hour "days": a 360-minute shape, noisy; a 360-minute season averages
    # four times as many past seasons as a daily one
    six_hour = 250.0 + 150.0 * np.sin(2 * np.pi * (t % 360) / 360) + np.random.default_rng(3).normal(0, 25, t.size)
    auto = make_forecaster("auto", candidates=PLANNING_CANDIDATES)
    fitted = auto.fit(np.stack([daily, six_hour]))
    chosen = fitted.chosen
    assert chosen[0].endswith("@1440")
    assert not chosen[1].endswith("@1440")

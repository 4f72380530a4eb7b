"""The queueing latency model agrees with textbook values, simulation and its own invariants."""

import math

import numpy as np
import pytest
from faro.optimizer.model.latency import (
    erlang_c,
    mmc_mean_wait_s,
    mmc_wait_percentile_s,
    tail_latency_ms,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def erlang_c_textbook(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        pytest.param(2, 1.0, 1 / 3, id="two servers, one Erlang"),
        pytest.param(1, 0.5, 0.5, id="M/M/1 waits with probability rho"),
        pytest.param(5, 4.0, erlang_c_textbook(5, 4.0), id="five servers at 80%"),
        pytest.param(20, 15.0, erlang_c_textbook(20, 15.0), id="twenty servers"),
    ],
)
def test_erlang_c_equals_textbook_values_at_integer_servers(c, a, expected):
    assert erlang_c(c, a) == pytest.approx(expected, rel=1e-9)


def test_erlang_c_is_zero_without_load_and_one_when_unstable():
    assert erlang_c(3, 0.0) == 0.0
    assert erlang_c(3, 3.0) == 1.0
    assert erlang_c(3, 5.0) == 1.0


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0.01, 500), start=st.floats(0.0, 5.0))
def test_erlang_c_is_continuous_and_decreasing_in_servers(a, start):
    c = a + 0.01 + start + np.linspace(0, 10, 2001)
    values = erlang_c(c, a)
    assert np.all(np.diff(values) <= 1e-12)
    assert np.max(np.abs(np.diff(values))) < 0.02  # no jumps at integers


def test_erlang_c_stays_finite_for_ten_thousand_servers_near_saturation():
    values = erlang_c([10_000, 10_000, 10_000], [9_000, 9_990, 9_999.999])
    assert np.all(np.isfinite(values))
    assert 0 < values[0] < values[1] < values[2] <= 1


def test_mmc_mean_wait_matches_a_seeded_simulation_within_three_percent():
    rng = np.random.default_rng(7)
    lam, s, c, n = 8.0, 0.45, 4, 400_000
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    services = rng.exponential(s, n)
    free_at = np.zeros(c)
    waits = np.empty(n)
    for i in range(n):  # FCFS to the earliest free server
        k = int(np.argmin(free_at))
        start = max(arrivals[i], free_at[k])
        waits[i] = start - arrivals[i]
        free_at[k] = start + services[i]
    assert waits[n // 10 :].mean() == pytest.approx(float(mmc_mean_wait_s(lam, s, c)), rel=0.03)


def test_wait_percentile_is_zero_when_few_requests_wait():
    # C < 1 − p: fewer than 1% of requests wait at all, so the p99 wait is 0.
    assert mmc_wait_percentile_s(0.1, 0.1, 10, 99) == 0.0


def test_tail_latency_is_processing_time_without_load_and_infinite_without_replicas():
    assert tail_latency_ms(0.0, 180.0, 3) == pytest.approx(180.0)
    assert math.isinf(tail_latency_ms(5.0, 180.0, 0))


def test_tail_latency_keeps_a_slope_past_the_stability_cap():
    lat = tail_latency_ms(np.array([10.0, 20.0, 40.0]), 180.0, 2)  # capacity ≈ 11 req/s
    assert np.all(np.isfinite(lat))
    assert lat[0] < lat[1] < lat[2]
    assert lat[2] / lat[1] == pytest.approx(2.0)  # both beyond the cap: scaled by λ/λ_cap


def test_tail_latency_broadcasts_jobs_by_replicas_by_steps():
    rates = np.array([[5.0, 6.0, 7.0], [1.0, 1.0, 1.0]])
    lat = tail_latency_ms(rates[:, None, :], 180.0, np.arange(1, 5)[None, :, None])
    assert lat.shape == (2, 4, 3)
    assert np.all(np.diff(lat, axis=1) <= 0)  # more replicas never hurt

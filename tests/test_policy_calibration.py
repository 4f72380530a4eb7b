"""Calibrated planning: per-job quantile levels reach their coverage; bursts are met within one check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.calibration import ConformalHeadroom, CoverageState, _empirical
from faro.optimizer.policy.faro import FaroPolicy
from faro.optimizer.policy.hybrid import HybridState, burst_need
from faro.optimizer.policy.registry import DEFAULT_POLICY, make_policy
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.workload import Workload


def _view(now_s: float, rows: dict[str, np.ndarray]) -> ClusterView:
    jobs = tuple(
        JobView(spec=JobSpec(name=n, slo=SLO(720.0), processing_time_ms=180.0),
                observation=JobObservation(rate_history_rpm=tuple(h.tolist())), current_replicas=1, ready_replicas=1)
        for n, h in rows.items()
    )
    return ClusterView(now_s=now_s, jobs=jobs, quotas=(Quota("cluster", {"cpu": 1000.0}),))


def _synthetic(minutes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Known distributions: iid normal; lognormal (heavy right tail); a normal that shifts level 4x halfway."""
    t = np.arange(minutes)
    return {
        "normal": np.maximum(0.0, rng.normal(300.0, 30.0, minutes)),
        "lognormal": 100.0 * rng.lognormal(0.0, 0.5, minutes),
        "shift": np.where(t < minutes // 2, rng.normal(100.0, 10.0, minutes), rng.normal(400.0, 40.0, minutes)),
    }


@pytest.mark.parametrize("target", [0.8, 0.9])
def test_adaptive_levels_reach_their_coverage_on_known_distributions_and_a_level_shift(target):
    rng = np.random.default_rng(7)
    past, test = 720, 3000
    series = _synthetic(past + test, rng)
    # the policy's own path (forecast at the grid, score the last plan, interpolate at each job's level),
    # with a light forecaster to keep the test short
    policy = FaroPolicy("fair", coverage=target, forecaster="ewma", solve_fn=lambda *a, **k: None)
    state = HybridState()
    for end in range(past, past + test + 1, 5):
        view = _view(end * 60.0, {n: s[:end] for n, s in series.items()})
        _tables, _labels, state, source, _spread = policy.candidate_tables(view, state)
        assert source == "forecaster"
    counts = state.calibration.counts
    for name in series:
        hit, total = counts[("default", name)]
        assert total == test // 5
        assert hit / total == pytest.approx(target, abs=0.03), name


def test_a_run_of_misses_raises_the_headroom_past_the_largest_score():
    cal = ConformalHeadroom(target=0.9, gamma=0.05, window=10, min_scores=3)
    key = ("default", "j")
    state = CoverageState(scores={key: (0.0, 10.0, 20.0)})
    rooms, levels = [], []
    for step in range(6):
        room = cal.headroom(state, [key])
        rooms.append(float(room[0]))
        state = cal.planned(state, [key], step * 5, np.full((1, 7), 100.0), room)
        # the load doubles every step: far above anything planned, every step misses
        state = cal.score(state, np.full((1, 5), 1000.0 * 2**step), step * 5 + 5)
        levels.append(state.levels[key])
    assert rooms[1] >= 900.0  # the first miss (score 1000 - 100) is the window's largest now
    assert all(b > a for a, b in itertools.pairwise(rooms))
    assert levels[-1] == pytest.approx(0.9 + 6 * 0.05 * 0.9)
    assert state.counts[key] == (0, 6)
    # and once the plan holds again, the level comes back down
    state = cal.planned(state, [key], 30, np.full((1, 7), 100.0), cal.headroom(state, [key]))
    state = cal.score(state, np.full((1, 5), 100.0), 35)
    assert state.levels[key] < levels[-1]


def test_empirical_quantile_is_the_conformal_rank():
    scores = np.arange(1.0, 10.0)  # 9 scores
    assert _empirical(scores, 0.5) == 5.0  # ceil(0.5 * 10) = 5th smallest
    assert _empirical(scores, 0.9) == 9.0
    assert _empirical(scores, 1.0) > 9.0


def test_burst_need_sizes_the_step_from_the_observed_rate_and_queue():
    spec = JobSpec(name="j", slo=SLO(720.0), processing_time_ms=180.0)
    obs = JobObservation(rate_history_rpm=(0.0,), arrival_rate_rps=30.0, queue_length=50.0)
    view = ClusterView(now_s=10.0, jobs=(JobView(spec, obs, 1, 1),))
    # (30 req/s + 50 queued / 10 s) x 0.18 s / 0.9 = 7
    assert burst_need(view, rho=0.9, drain_s=10.0).tolist() == [7]


def test_a_step_burst_from_idle_to_full_load_is_met_within_one_check_of_the_rate_window():
    """The reactive bound the default policy claims (docs/policies.md): once the arrival-rate window
    (30 s) has seen a burst, the next check (10 s) asks for what the rate needs; replicas start then."""
    burst_start_min, rpm = 7, 1800  # 30 req/s: ceil(30 x 0.18 / 0.9) = 6 replicas
    counts = np.zeros((2, 11), dtype=np.int64)
    counts[0, burst_start_min:] = rpm
    counts[1] = 120
    history = np.zeros((2, 240))
    history[1] = 120.0
    workload = Workload(names=("burst", "steady"), counts_rpm=counts, history_rpm=history)
    config = SimConfig(cpus=20, seed=0)
    result = simulate(workload, make_policy(DEFAULT_POLICY), config)
    t = result.step_time_s
    start_s = burst_start_min * 60.0
    target = result.target_replicas[:, 0]
    before = target[(t >= 120.0) & (t < start_s)]  # after the initial split and the first long step
    assert before.max() <= 3  # idle: the plan holds only a few replicas
    first_check = start_s + config.policy_interval_s
    assert target[t == first_check][0] >= 2  # the first check already scales (a third of the rate seen)
    full_by = start_s + config.rate_window_s + config.policy_interval_s
    assert target[t == full_by][0] >= 6
    # and the replicas asked for become ready one cold start later
    assert result.ready_replicas[t == full_by + config.cold_start_s + config.step_s, 0][0] >= 6

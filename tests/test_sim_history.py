"""Past load in the simulator: what the policies see before minute 0 (``Workload.history_rpm``,
``faro simulate --history``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from faro.optimizer.commands import simulate as cmd
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.forecast.data import read_trace
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.workload import Workload, load_history, load_trace

HISTORY_CSV = Path(__file__).parents[1] / "traces" / "faro-top9-history.csv"


class RecordingPolicy:
    """Keeps one replica per job and records every view's rate histories (tests only)."""

    name = "recording"
    needs_future = False

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, tuple[float, ...]]]] = []

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        self.seen.append((view.now_s, {j.spec.name: j.observation.rate_history_rpm for j in view.jobs}))
        return Decision(Plan(tuple(Target(j.spec.namespace, j.spec.name, 1, j.current_replicas) for j in view.jobs)),
                        state)


def _workload() -> Workload:
    return Workload(names=("a", "b"), counts_rpm=np.array([[60, 61, 62], [10, 11, 12]], dtype=np.int64))


def test_history_is_matched_by_job_name_and_missing_jobs_get_no_data():
    w = _workload().with_history(("b", "z"), np.array([[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]]))
    assert np.isnan(w.history_rpm[0]).all()
    assert w.history_rpm[1].tolist() == [1.0, 2.0, 3.0]


def test_history_minutes_keeps_the_most_recent_minutes():
    w = _workload().with_history(("a", "b"), np.arange(10.0).reshape(2, 5), minutes=2)
    assert w.history_rpm.tolist() == [[3.0, 4.0], [8.0, 9.0]]


@pytest.mark.parametrize(
    ("names", "minutes", "field"),
    [pytest.param(("x", "y"), None, "--history", id="no-job-in-common"),
     pytest.param(("a", "b"), 0, "--history-minutes", id="zero-minutes")],
)
def test_bad_history_is_refused_naming_the_option(names, minutes, field):
    with pytest.raises(InvalidInputError, match=field):
        _workload().with_history(names, np.ones((2, 3)), minutes=minutes)


def test_copies_and_slices_keep_their_originals_history():
    w = _workload().with_history(("a", "b"), np.array([[1.0], [2.0]]))
    many = w.multiplied(3)
    assert many.history_rpm[:, 0].tolist() == [1.0, 2.0] * 3
    assert w.head(1).history_rpm.tolist() == [[1.0], [2.0]]


def test_policies_see_the_history_followed_by_the_completed_minutes():
    w = _workload().with_history(("a", "b"), np.array([[5.0, np.nan, 6.0], [7.0, 8.0, 9.0]]))
    policy = RecordingPolicy()
    simulate(w, policy, SimConfig(cpus=4))
    at = dict(policy.seen)
    assert at[0.0] == {"a": (5.0, 6.0), "b": (7.0, 8.0, 9.0)}  # an unknown minute is left out
    assert at[130.0] == {"a": (5.0, 6.0, 60.0, 61.0), "b": (7.0, 8.0, 9.0, 10.0, 11.0)}


def test_history_changes_what_policies_see_but_not_the_simulated_load():
    policy_cold, policy_warm = RecordingPolicy(), RecordingPolicy()
    w = _workload()
    cold = simulate(w, policy_cold, SimConfig(cpus=4))
    warm = simulate(w.with_history(("a", "b"), np.ones((2, 30))), policy_warm, SimConfig(cpus=4))
    assert np.array_equal(cold.req_latency_ms, warm.req_latency_ms)
    assert len(policy_warm.seen[0][1]["a"]) == 30 and policy_cold.seen[0][1]["a"] == ()


def test_bundled_history_is_days_1_to_10_of_sample_0():
    w = load_history(load_trace())
    shipped = read_trace(HISTORY_CSV, sample=0)
    assert w.history_rpm.shape == (10, 3600)
    assert np.array_equal(w.history_rpm, shipped.counts)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "minutes"),
    [pytest.param((), 3600, id="bundled-by-default"),
     pytest.param(("--history", "none"), 0, id="none"),
     pytest.param(("--history-minutes", "720"), 720, id="last-two-days")],
)
def test_faro_simulate_records_how_much_history_the_policies_had(tmp_path, argv, minutes):
    code = cmd.run(_args("--minutes", "2", "--policies", "fairshare", "--workers", "1", "--no-progress",
                         "--output", str(tmp_path), *argv))
    assert code == 0
    assert json.loads((tmp_path / "results.json").read_text())["history_minutes"] == minutes


def test_a_custom_trace_starts_without_history_unless_given_one(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("minute,job0,job1\n0,60,60\n1,60,60\n")
    cmd.run(_args("--trace", str(trace), "--policies", "fairshare", "--workers", "1", "--no-progress",
                  "--output", str(tmp_path / "o1")))
    assert json.loads((tmp_path / "o1" / "results.json").read_text())["history_minutes"] == 0
    cmd.run(_args("--trace", str(trace), "--history", str(HISTORY_CSV), "--policies", "fairshare",
                  "--workers", "1", "--no-progress", "--output", str(tmp_path / "o2")))
    assert json.loads((tmp_path / "o2" / "results.json").read_text())["history_minutes"] == 3600

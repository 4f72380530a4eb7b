"""The generalisation suite: caps, day splits with history, the violation breakdown and ``faro simulate --suite``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faro.optimizer.cli import main
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.engine import SimConfig, simulate
from faro.optimizer.sim.metrics import BREAKDOWN_CAUSES, job_minute_stats, summarize, violation_breakdown
from faro.optimizer.sim.suite import (
    CaseScore,
    day_cases,
    default_test_days,
    meets_goal,
    paper_cap,
    score_case,
)
from faro.optimizer.sim.workload import Workload, load_trace


class Static:
    name = "static"
    needs_future = False

    def __init__(self, replicas: int, forecast_rps: float = 0.0) -> None:
        self.replicas, self.forecast_rps = replicas, forecast_rps

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        targets = tuple(Target(j.spec.namespace, j.spec.name, self.replicas, j.current_replicas,
                               forecast_rps=self.forecast_rps) for j in view.jobs)
        return Decision(Plan(targets, kind="solve"), state)


def test_paper_cap_of_the_bundled_day_is_the_papers_32_cpus():
    assert paper_cap(load_trace().counts_rpm) == 32.0


def test_day_cases_give_each_test_day_every_earlier_day_as_history():
    days, per_day = 4, 10
    counts = 100 * np.arange(2 * days * per_day, dtype=np.int64).reshape(2, days * per_day)
    cases = day_cases(Workload(names=("a", "b"), counts_rpm=counts), trace="t", day_minutes=per_day,
                      test_days=[2, 4], cap_scales=[1.0, 0.5])
    assert [(c.day, c.cap_scale) for c in cases] == [(2, 1.0), (2, 0.5), (4, 1.0), (4, 0.5)]
    four = cases[2].workload
    np.testing.assert_array_equal(four.counts_rpm, counts[:, 30:40])
    np.testing.assert_array_equal(four.history_rpm, counts[:, :30])
    assert cases[0].workload.history_rpm.shape == (2, 10)
    assert cases[2].cpus == paper_cap(counts[:, 30:40])
    assert cases[3].cpus == max(2.0, round(0.5 * cases[2].cpus))
    assert default_test_days(14) == (2, 5, 8, 11, 14)
    assert default_test_days(3) == (2, 3)
    with pytest.raises(InvalidInputError, match="test-days"):
        day_cases(Workload(names=("a", "b"), counts_rpm=counts), trace="t", day_minutes=per_day, test_days=[1])


def test_scores_and_the_acceptance_rule():
    score = score_case({"faro-fair": 0.01, "faro-sum": 0.02, "hpa-cpu": 0.03, "aiad": 0.05, "oracle": 0.008},
                       default="faro-sum")
    assert (score.best_faro, score.best_baseline) == ("faro-fair", "hpa-cpu")
    assert score.baseline_over_faro == pytest.approx(3.0)
    assert score.faro_over_oracle == pytest.approx(1.25)
    assert score.default_over_oracle == pytest.approx(2.5)
    assert meets_goal(score, paper_day=False) is True
    assert meets_goal(score, paper_day=False, which="default") is False
    near = CaseScore("faro-fair", 0.004, "hpa-cpu", 0.011, 0.002, None, None)
    assert meets_goal(near, paper_day=False) is True  # 2x the Oracle, but within 0.3 points of its 0.2%
    assert meets_goal(near, paper_day=True) is False  # the paper day wants 3x the baseline


def test_breakdown_attributes_each_violating_minute_once_and_adds_up():
    # one job idles at 6 req/min, then jumps to 1,200 req/min (20 req/s) on 1 static replica: a burst onset
    counts = np.array([[6, 6, 1200, 1200, 1200, 6]], dtype=np.int64)
    result = simulate(Workload(names=("j",), counts_rpm=counts), Static(1, forecast_rps=0.1),
                      SimConfig(cpus=1, initial_replicas=1))
    stats = job_minute_stats(result)
    out = violation_breakdown(result, stats)
    total = sum(out[c]["violation"] for c in BREAKDOWN_CAUSES)
    assert total == pytest.approx(summarize(result, stats).slo_violation)
    assert out["slo_violation"] == pytest.approx(total)
    assert out["flagged_job_minutes"]["burst_onset"] == 1  # minute 2 only (6 -> 1200)
    assert out["burst_onset"]["job_minutes"] == 1 and out["burst_onset"]["violation"] > 0
    # later overloaded minutes: above the plan's 6 req/min forecast, and the 1-CPU cluster is full
    assert out["under_forecast"]["job_minutes"] >= 1
    assert out["flagged_job_minutes"]["quota_full"] == 6
    assert out["pod_starting"]["job_minutes"] == 0


def test_breakdown_without_forecasts_marks_under_forecast_not_applicable():
    counts = np.full((1, 3), 600, dtype=np.int64)
    result = simulate(Workload(names=("j",), counts_rpm=counts), Static(1), SimConfig(cpus=4))
    plan_free = result.__class__(**{**result.__dict__, "plan_kind": ("baseline",) * len(result.plan_kind)})
    out = violation_breakdown(plan_free)
    assert out["under_forecast"] is None
    assert out["flagged_job_minutes"]["quota_full"] == 0


def test_faro_simulate_suite_on_a_small_multi_day_csv(tmp_path):
    rng = np.random.default_rng(0)
    days, per_day = 3, 12
    base = np.tile(np.r_[np.full(6, 60), np.full(6, 400)], days)
    lines = ["minute,a,b"] + [f"{m},{base[m] + rng.integers(0, 20)},{rng.integers(50, 90)}"
                              for m in range(days * per_day)]
    trace = tmp_path / "days.csv"
    trace.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(["simulate", "--suite", str(trace), "--day-minutes", str(per_day), "--test-days", "2,3",
                 "--seeds", "0", "--policies", "faro-fair,hpa-cpu,oracle", "--output", str(out), "--no-progress",
                 "--workers", "1"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert [c["day"] for c in doc["cases"]] == [2, 2, 3, 3]
    first = doc["cases"][0]
    assert first["history_minutes"] == per_day
    assert set(first["policies"]) == {"faro-fair", "hpa-cpu", "oracle"}
    assert first["score"]["best_faro"] == "faro-fair" and first["score"]["best_baseline"] == "hpa-cpu"
    assert set(first["policies"]["faro-fair"]["breakdown"]) == set(BREAKDOWN_CAUSES)
    assert (out / "suite.png").stat().st_size > 0

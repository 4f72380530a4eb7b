"""History backfill in the control loop: a Deployment with no history yet is asked for a long past window
once (``--history-backfill-minutes``), everyone else for the short per-cycle window; a failed backfill
falls back to the short window and is retried. Fake clock, in-memory cluster state, recording source.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs

import pytest
from faro.optimizer.commands import optimizer as command
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.http import urllib_post
from faro.optimizer.kube.state import DeploymentInfo, HpaInfo, KubeSnapshot
from faro.optimizer.metrics.base import DeploymentRef, JobMetrics, MetricsError
from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.policy.registry import make_policy
from faro.optimizer.service.config import ServiceConfig
from faro.optimizer.service.loop import ControlLoop
from faro.optimizer.service.plans import PlanStore
from faro.optimizer.service.telemetry import Telemetry
from prom_fixture import openmetrics_counter, prometheus_servers
from prometheus_client import CollectorRegistry

ANN = {"faro.dev/slo-latency-ms": "300", "faro.dev/processing-time-ms": "100"}
START_S = 1_700_000_000.0 - 1_700_000_000.0 % 60 + 7  # 7 s into a minute


def rpm_at(minute: int) -> float:
    """The load of absolute minute ``minute`` (distinct per minute, so misaligned windows show)."""
    return float(minute % 997)


class RecordingSource:
    """Answers ``history_minutes`` minutes of ``rpm_at`` ending at the last completed minute; records every
    call as (history_minutes, Deployment names); ``fail_long`` makes calls longer than ``short`` fail,
    by raising ("raise") or with a per-Deployment error ("error")."""

    def __init__(self, *, short: int = 60) -> None:
        self.short = short
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self.fail_long: str | None = None

    def observe(self, deployments, *, now_s, history_minutes):
        self.calls.append((history_minutes, tuple(ref.name for ref in deployments)))
        long = history_minutes > self.short
        if long and self.fail_long == "raise":
            raise TimeoutError("query_range timed out")
        end = int(now_s // 60) - 1
        out = {}
        for ref in deployments:
            if long and self.fail_long == "error":
                out[ref.key] = MetricsError("Prometheus unavailable: timed out", kind="unavailable")
                continue
            history = tuple(rpm_at(m) for m in range(end - history_minutes + 1, end + 1))
            out[ref.key] = JobMetrics(rate_history_rpm=history, rate_rps=history[-1] / 60, latency_ms=50.0,
                                      observed_at_s=now_s)
        return out


class RecordingPolicy:
    """Keeps every job at its current replicas and remembers the views it was given."""

    name = "recording"
    needs_future = False

    def __init__(self) -> None:
        self.views: list = []

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        self.views.append(view)
        targets = tuple(Target(j.spec.namespace, j.spec.name, j.current_replicas, j.current_replicas)
                        for j in view.jobs)
        return Decision(plan=Plan(targets=targets, kind="reactive"), state=state)

    def history(self, name: str) -> tuple[float, ...]:
        [job] = [j for j in self.views[-1].jobs if j.spec.name == name]
        return job.observation.rate_history_rpm


class Rig:
    def __init__(self, *, policy=None, **config) -> None:
        self.names: list[str] = []
        self.namespace = "ns"
        self.source = RecordingSource(short=config.get("history_minutes", 60))
        self.policy = policy or RecordingPolicy()
        self.registry = CollectorRegistry()
        self.now = [START_S]
        self.loop = ControlLoop(config=ServiceConfig(interval_s=60, reactive_interval_s=10, identity="t", **config),
                                policy=self.policy, snapshot=self.snapshot, metrics_source=self.source,
                                store=PlanStore(), telemetry=Telemetry(self.registry), clock=lambda: self.now[0])

    def snapshot(self) -> KubeSnapshot:
        deps = tuple(DeploymentInfo(self.namespace, n, f"uid-{n}", ANN, {"cpu": 1.0}, {}, 2, 2) for n in self.names)
        hpas = tuple(HpaInfo(self.namespace, n, "Deployment", n, 1, 50, True) for n in self.names)
        return KubeSnapshot(deps, (), hpas)

    def tick(self, advance_s: float = 60.0):
        self.now[0] += advance_s
        self.source.calls.clear()
        plan = self.loop.tick()
        return plan, list(self.source.calls)

    def backfills(self, result: str) -> float:
        return self.registry.get_sample_value("faro_optimizer_history_backfills_total", {"result": result}) or 0.0


def test_a_new_deployment_gets_one_backfill_query_then_short_windows() -> None:
    rig = Rig()
    rig.names = ["a"]
    _, first = rig.tick()
    later = [rig.tick()[1] for _ in range(3)]
    assert first == [(1440, ("a",))]
    assert later == [[(60, ("a",))]] * 3
    assert rig.backfills("ok") == 1 and rig.backfills("failed") == 0


def test_a_newly_annotated_deployment_is_backfilled_alone_and_the_others_keep_their_short_window() -> None:
    rig = Rig()
    rig.names = ["a", "b"]
    rig.tick()
    rig.names = ["a", "b", "c", "d"]
    _, calls = rig.tick()
    assert calls == [(1440, ("c", "d")), (60, ("a", "b"))]
    assert rig.tick()[1] == [(60, ("a", "b", "c", "d"))]


def test_the_policy_sees_the_backfilled_minutes_in_the_rate_history() -> None:
    rig = Rig(max_history_minutes=2000)
    rig.names = ["a"]
    rig.tick()
    end = int(rig.now[0] // 60) - 1
    seen = rig.policy.history("a")
    assert seen == tuple(rpm_at(m) for m in range(end - 1439, end + 1))
    rig.tick()  # one more minute from the short window, appended after the backfilled day
    assert rig.policy.history("a") == tuple(rpm_at(m) for m in range(end - 1439, end + 2))


@pytest.mark.parametrize("failure", [pytest.param("raise", id="source-raises"),
                                     pytest.param("error", id="per-deployment-error")])
def test_a_failed_backfill_plans_on_the_short_window_and_is_retried_next_cycle(failure: str) -> None:
    rig = Rig()
    rig.names = ["old"]
    rig.tick()
    rig.names = ["old", "new"]
    rig.source.fail_long = failure
    plan, calls = rig.tick()
    assert calls == [(1440, ("new",)), (60, ("old", "new"))]
    assert {t.name: t.held_reason for t in plan.targets} == {"new": "", "old": ""}  # nobody's target lost
    assert len(rig.policy.history("new")) == 60 and len(rig.policy.history("old")) > 1000
    assert rig.backfills("failed") == 1

    _, calls = rig.tick()  # still failing: retried, and planned on the short window again
    assert calls == [(1440, ("new",)), (60, ("old", "new"))]
    rig.source.fail_long = None
    _, calls = rig.tick()
    assert calls == [(1440, ("new",)), (60, ("old",))]
    end = int(rig.now[0] // 60) - 1
    assert rig.policy.history("new") == tuple(rpm_at(m) for m in range(end - 1439, end + 1))
    assert rig.tick()[1] == [(60, ("old", "new"))]
    assert rig.backfills("failed") == 2 and rig.backfills("ok") == 2


def test_a_deployment_with_no_series_keeps_being_asked_for_its_backfill_and_is_reported() -> None:
    class Empty(RecordingSource):
        def observe(self, deployments, *, now_s, history_minutes):
            self.calls.append((history_minutes, tuple(ref.name for ref in deployments)))
            return {ref.key: MetricsError("no series for the arrival rate", kind="missing") for ref in deployments}

    rig = Rig()
    rig.source = rig.loop._metrics = Empty()
    rig.names = ["idle"]
    for _ in range(2):
        plan, calls = rig.tick()
        assert calls == [(1440, ("idle",)), (60, ("idle",))]
    assert "no series" in plan.targets[0].held_reason


def test_gaining_leadership_again_backfills_every_deployment() -> None:
    rig = Rig()
    rig.names = ["a", "b"]
    rig.tick()
    rig.tick()
    rig.loop.reset()  # what run() does on gaining the Lease
    rig.now[0] += 3600  # an hour led by another replica
    assert rig.tick()[1] == [(1440, ("a", "b"))]
    end = int(rig.now[0] // 60) - 1
    assert rig.policy.history("a") == tuple(rpm_at(m) for m in range(end - 1439, end + 1))  # no NaN gap


def test_a_deleted_and_recreated_deployment_is_backfilled_again() -> None:
    rig = Rig()
    rig.names = ["a", "b"]
    rig.tick()
    rig.names = ["a"]
    rig.tick()
    assert set(rig.loop.history) == {("ns", "a")}
    rig.names = ["a", "b"]
    assert rig.tick()[1] == [(1440, ("b",)), (60, ("a",))]


def test_a_backfill_as_long_as_the_window_turns_it_off() -> None:
    rig = Rig(history_minutes=30, history_backfill_minutes=30)
    rig.names = ["a"]
    assert [rig.tick()[1] for _ in range(2)] == [[(30, ("a",))]] * 2


def test_history_is_trimmed_at_max_history_minutes_but_never_below_the_window() -> None:
    rig = Rig(history_minutes=60, history_backfill_minutes=120, max_history_minutes=150)
    rig.names = ["a"]
    lengths = [len(rig.loop.history[("ns", "a")][1]) for _ in range(40) if rig.tick()]
    assert lengths[0] == 120 and max(lengths) <= 150 and min(lengths[1:]) >= 60
    rig = Rig(history_minutes=60, history_backfill_minutes=60, max_history_minutes=61)
    rig.names = ["a"]
    assert [len(rig.policy.history("a")) for _ in range(4) if rig.tick()] == [60, 61, 60, 61]  # shrinks: a trim


def test_a_faro_policy_fits_on_the_backfilled_day() -> None:
    policy = make_policy("faro-fairsum", interval_s=60, first_long_s=0)
    rig = Rig(policy=policy)
    rig.names = ["a"]
    plan, calls = rig.tick()
    assert calls == [(1440, ("a",))] and plan.kind == "solve" and plan.targets[0].held_reason == ""
    assert len(rig.loop.last_cycle.view.jobs[0].observation.rate_history_rpm) == 1440


# ------------------------------------------------------------------------------------------------ flags


@pytest.mark.parametrize(("settings", "flag"), [
    pytest.param({"history_backfill_minutes": 30}, "--history-backfill-minutes", id="backfill-below-window"),
    pytest.param({"max_history_minutes": 1000}, "--max-history-minutes", id="kept-below-backfill"),
    pytest.param({"history_minutes": 0}, "--history-minutes", id="no-window"),
    pytest.param({"history_minutes": 120, "history_backfill_minutes": 120, "max_history_minutes": 120},
                 "--max-history-minutes", id="kept-no-longer-than-window"),
])
def test_history_settings_are_validated_naming_the_flag(settings: dict, flag: str) -> None:
    with pytest.raises(InvalidInputError, match=flag):
        ServiceConfig(**settings)


@pytest.mark.parametrize(("settings", "kept"), [
    pytest.param({}, 1440, id="defaults"),
    pytest.param({"history_backfill_minutes": 2880}, 2880, id="longer-backfill"),
    pytest.param({"history_minutes": 60, "history_backfill_minutes": 60}, 1440, id="no-backfill-as-before"),
    pytest.param({"history_minutes": 1440, "history_backfill_minutes": 1440}, 1500, id="day-long-window"),
])
def test_max_history_defaults_to_a_day_or_what_the_backfill_and_window_need(settings: dict, kept: int) -> None:
    assert ServiceConfig(**settings).max_history_minutes == kept


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--metrics-source", "none", *argv])


def test_the_flags_and_their_environment_variables_reach_the_loop(monkeypatch) -> None:
    args = parse(["--history-backfill-minutes", "2880"])
    assert (args.history_backfill_minutes, args.max_history_minutes) == (2880, None)
    monkeypatch.setenv("FARO_MAX_HISTORY_MINUTES", "4000")
    monkeypatch.setenv("FARO_HISTORY_BACKFILL_MINUTES", "3000")
    args = parse([])
    assert (args.history_backfill_minutes, args.max_history_minutes) == (3000, 4000)


def test_a_backfill_shorter_than_the_window_is_refused_before_anything_starts() -> None:
    args = parse(["--history-minutes", "120", "--history-backfill-minutes", "60"])
    with pytest.raises(InvalidInputError, match="--history-backfill-minutes") as error:
        command.build_service(args, api_client=object(), metrics_source=RecordingSource())
    assert "120" in str(error.value)



# ------------------------------------------------------------------------------------------ real Prometheus

BACKFILLED = [60.0 + (37 * i) % 240 for i in range(180)]  # requests in each of 3 hours of minutes, oldest first


@dataclass(frozen=True)
class Backfilled:
    url: str
    now_s: float  # the loop's (fixed) clock: the backfill's last minute is the last completed one


@pytest.fixture(scope="module")
def backfilled_prometheus() -> Iterator[Backfilled]:
    """A real Prometheus whose TSDB holds, written by promtool before start, three hours of a request counter
    (15 s samples) for hist/model ending at the last completed minute: what it would have scraped before
    the optimizer started."""
    now_s = time.time()
    end_s = math.floor(now_s / 60) * 60
    first_s = end_s - 60 * len(BACKFILLED)
    points, total = [(first_s, 0.0)], 0.0
    for i, count in enumerate(BACKFILLED):
        points += [(first_s + i * 60 + quarter * 15, total + count * quarter / 4) for quarter in range(1, 5)]
        total += count
    text = openmetrics_counter("http_requests", {"namespace": "hist", "deployment": "model"}, points)
    with prometheus_servers() as start:
        yield Backfilled(start([], backfill=text).url, now_s)


@pytest.mark.prometheus
def test_the_loops_first_observation_carries_the_minutes_prometheus_held_before_it_started(
    backfilled_prometheus: Backfilled,
) -> None:
    asked: list[tuple[str, str, str]] = []

    def transport(url, body, headers, timeout_s):
        params = parse_qs(body.decode())
        if url.endswith("query_range"):
            asked.append((params["start"][0], params["end"][0], params["step"][0]))
        return urllib_post(url, body, headers, timeout_s)

    source = PrometheusSource(PrometheusClient(backfilled_prometheus.url, timeout_s=30, transport=transport))
    rig = Rig(history_minutes=10)
    rig.loop._metrics = source
    rig.namespace, rig.names = "hist", ["model"]
    rig.now[0] = backfilled_prometheus.now_s
    plan = rig.loop.tick()

    [(start, end, step)] = asked  # one range query: the backfill (the short window was not needed)
    assert (float(end) - float(start)) / float(step) + 1 == 1440
    [job] = rig.policy.views[-1].jobs
    assert job.spec.key == ("hist", "model") and plan.targets[0].held_reason == ""
    history = job.observation.rate_history_rpm
    assert len(history) == 1440
    assert history[-180:] == pytest.approx(BACKFILLED, abs=1e-6)
    assert all(math.isnan(v) for v in history[:-181])  # before the counter existed


@pytest.mark.prometheus
def test_a_history_longer_than_prometheus_allows_in_one_range_query_is_asked_in_pieces(
    backfilled_prometheus: Backfilled,
) -> None:
    minutes = 12_000  # Prometheus allows 11,000 points per series in one range query
    ref = DeploymentRef("hist", "model")

    whole = PrometheusSource(PrometheusClient(backfilled_prometheus.url, timeout_s=30), max_range_points=minutes)
    refused = whole.observe([ref], now_s=backfilled_prometheus.now_s, history_minutes=minutes)[ref.key]
    assert isinstance(refused, MetricsError) and "11,000" in refused.reason  # the real limit, as the split assumes

    split = PrometheusSource(PrometheusClient(backfilled_prometheus.url, timeout_s=30))
    result = split.observe([ref], now_s=backfilled_prometheus.now_s, history_minutes=minutes)[ref.key]
    assert isinstance(result, JobMetrics), result
    assert len(result.rate_history_rpm) == minutes
    assert result.rate_history_rpm[-180:] == pytest.approx(BACKFILLED, abs=1e-6)

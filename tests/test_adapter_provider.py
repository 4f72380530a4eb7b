"""The plan cache behind the adapter (``PlanStore``) and the plan-file source, with fake time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from adapter_fakes import make_plan
from faro.adapter.errors import DeploymentNotFoundError, MetricNotFoundError, NoFreshPlanError
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import METRIC_NAME, PlanStore
from faro.adapter.selector import SelectorError, parse
from faro.adapter.sources import Backoff, PlanFileSource
from faro.optimizer.errors import InvalidInputError
from google.protobuf import json_format
from prometheus_client import CollectorRegistry

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def store_with(replicas: dict[tuple[str, str], int], *, ttl_s: float = 600, valid_for_s: float | None = 900,
               ignore_expiry: bool = False) -> tuple[PlanStore, FakeClock]:
    clock = FakeClock()
    store = PlanStore(ttl_s=ttl_s, clock=clock, ignore_expiry=ignore_expiry)
    store.put(make_plan(7, replicas, created_s=T0, valid_for_s=valid_for_s))
    return store, clock


def value(store: PlanStore, ns: str, selector: str, metric: str = METRIC_NAME) -> int:
    return store.get_external_metric(ns, metric, parse(selector)).value


def test_a_fresh_plan_serves_each_deployments_desired_replicas() -> None:
    store, _ = store_with({("default", "resnet"): 7, ("default", "bert"): 2, ("team-a", "resnet"): 4})
    assert value(store, "default", "deployment=resnet") == 7
    assert value(store, "team-a", "deployment=resnet") == 4
    assert value(store, "default", "deployment in (bert)") == 2
    mv = store.get_external_metric("default", METRIC_NAME, parse("deployment=bert"))
    assert mv.labels == {"deployment": "bert"} and mv.timestamp_s == T0


def test_a_set_based_selector_naming_exactly_one_deployment_is_served() -> None:
    store, _ = store_with({("default", "resnet"): 7, ("default", "bert"): 2})
    assert value(store, "default", "deployment!=resnet") == 2


@pytest.mark.parametrize(
    ("namespace", "selector", "metric", "error"),
    [
        pytest.param("default", "deployment=resnet", "cpu", MetricNotFoundError, id="unknown-metric"),
        pytest.param("default", "deployment=gpt", METRIC_NAME, DeploymentNotFoundError, id="unknown-deployment"),
        pytest.param("other", "deployment=resnet", METRIC_NAME, DeploymentNotFoundError, id="other-namespace"),
        pytest.param("default", "", METRIC_NAME, SelectorError, id="empty-selector"),
        pytest.param("default", "deployment", METRIC_NAME, SelectorError, id="matches-several"),
        pytest.param("default", "deployment=resnet,deployment=bert", METRIC_NAME, DeploymentNotFoundError,
                     id="contradiction"),
    ],
)
def test_requests_that_name_no_single_deployment_get_domain_errors(
    namespace: str, selector: str, metric: str, error: type[Exception]
) -> None:
    store, _ = store_with({("default", "resnet"): 7, ("default", "bert"): 2})
    with pytest.raises(error):
        value(store, namespace, selector, metric)


def test_nothing_is_served_before_the_first_plan() -> None:
    store = PlanStore(ttl_s=600, clock=FakeClock())
    assert not store.freshness().has_plan
    with pytest.raises(NoFreshPlanError, match="no plan"):
        value(store, "default", "deployment=resnet")


def test_a_plan_past_its_valid_until_is_not_served() -> None:
    store, clock = store_with({("default", "resnet"): 7}, ttl_s=10_000, valid_for_s=300)
    clock.now_s = T0 + 299
    assert value(store, "default", "deployment=resnet") == 7
    clock.now_s = T0 + 300
    with pytest.raises(NoFreshPlanError, match="valid_until"):
        value(store, "default", "deployment=resnet")
    assert store.freshness().has_plan and not store.freshness().fresh


def test_a_plan_older_than_the_ttl_is_not_served_even_when_valid_until_is_later() -> None:
    store, clock = store_with({("default", "resnet"): 7}, ttl_s=60, valid_for_s=900)
    clock.now_s = T0 + 61
    with pytest.raises(NoFreshPlanError, match="TTL"):
        value(store, "default", "deployment=resnet")


def test_a_newer_plan_makes_the_store_fresh_again() -> None:
    store, clock = store_with({("default", "resnet"): 7}, ttl_s=60)
    clock.now_s = T0 + 100
    assert not store.freshness().fresh
    store.put(make_plan(1, {("default", "resnet"): 3}, created_s=T0 + 100))  # an optimizer restart resets generations
    assert value(store, "default", "deployment=resnet") == 3


def test_ignore_expiry_serves_an_expired_plan() -> None:
    store, clock = store_with({("default", "resnet"): 7}, ttl_s=60, valid_for_s=30, ignore_expiry=True)
    clock.now_s = T0 + 10_000
    assert value(store, "default", "deployment=resnet") == 7


def test_a_bad_selector_is_reported_before_staleness() -> None:
    store = PlanStore(ttl_s=600, clock=FakeClock())
    with pytest.raises(SelectorError):
        value(store, "default", "")


async def test_wait_changed_returns_when_a_plan_arrives() -> None:
    store, _ = store_with({("default", "resnet"): 7})
    version = store.version
    waiter = asyncio.create_task(store.wait_changed(version, timeout_s=30))
    await asyncio.sleep(0)
    store.put(make_plan(8, {("default", "resnet"): 8}, created_s=T0))
    await asyncio.wait_for(waiter, 10)


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    b = Backoff(initial_s=0.5, factor=2, max_s=4, jitter=0.0)
    assert [b.delay_s(n) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert 0.4 <= Backoff(initial_s=0.5, jitter=0.2).delay_s(0, rand=lambda: 1.0) < 0.5


async def test_the_reconnect_back_off_is_capped_at_a_quarter_of_the_plan_ttl() -> None:
    from faro.adapter.app import Adapter, AdapterConfig

    async def backoff_of(**config: object) -> Backoff:
        adapter = Adapter(AdapterConfig(optimizer_address="127.0.0.1:1", mode="keda", keda_insecure=True,
                                        keda_address="127.0.0.1:0", metrics_address=None, **config),
                          authenticator=None, authorizer=None)
        await adapter.start()
        await adapter.stop()
        assert adapter.watcher is not None
        return adapter.watcher.backoff

    short = await backoff_of(plan_ttl_s=20.0)
    assert [short.delay_s(n, rand=lambda: 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]  # 20 s / 4
    assert short.delay_s(30, rand=lambda: 1.0) == pytest.approx(4.0)  # jitter still spreads the replicas
    assert (await backoff_of(plan_ttl_s=600.0)).delay_s(30, rand=lambda: 0.0) == 30.0  # the default cap
    tiny = await backoff_of(plan_ttl_s=1.0, backoff=Backoff(initial_s=0.5))
    assert tiny.delay_s(0, rand=lambda: 0.0) == 0.25


def _write_plan(path: Path, replicas: int, *, created_s: float = T0, valid_for_s: float | None = 900) -> None:
    plan = make_plan(1, {("default", "resnet"): replicas}, created_s=created_s, valid_for_s=valid_for_s)
    path.write_text(json_format.MessageToJson(plan))


async def test_the_plan_file_is_served_and_re_read_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    _write_plan(path, 5)
    clock = FakeClock()
    store = PlanStore(ttl_s=600, clock=clock)
    metrics = AdapterMetrics(CollectorRegistry(), store)
    source = PlanFileSource(path, store=store, metrics=metrics, poll_interval_s=0.01)
    source.load()
    assert value(store, "default", "deployment=resnet") == 5
    task = asyncio.create_task(source.run())
    errors = lambda: metrics.plan_file_errors._value.get()  # noqa: E731
    try:
        _write_plan(path, 9)
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if value(store, "default", "deployment=resnet") == 9:
                break
        assert value(store, "default", "deployment=resnet") == 9
        assert errors() == 0
        path.write_text("{not json")  # a broken edit keeps the previous plan ...
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if errors():
                break
        assert errors() == 1  # ... once it was re-read and rejected (not merely because nobody looked yet)
        assert value(store, "default", "deployment=resnet") == 9
        await asyncio.sleep(0.05)
        assert errors() == 1  # the same broken file is not re-parsed (and counted) on every poll
        _write_plan(path, 4)  # and the next good edit is served
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if value(store, "default", "deployment=resnet") == 4:
                break
        assert value(store, "default", "deployment=resnet") == 4
    finally:
        task.cancel()


def test_the_plan_file_s_valid_until_applies_unless_expiry_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    _write_plan(path, 5, valid_for_s=60)
    for ignore, served in ((False, False), (True, True)):
        clock = FakeClock(T0 + 120)
        store = PlanStore(ttl_s=600, clock=clock, ignore_expiry=ignore)
        PlanFileSource(path, store=store, metrics=AdapterMetrics(CollectorRegistry(), store)).load()
        assert store.freshness().fresh is served


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="missing"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"targets": 3}', id="bad-field"),
        pytest.param("{", id="bad-json"),
    ],
)
def test_an_unreadable_plan_file_fails_fast_naming_the_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    store = PlanStore(ttl_s=600, clock=FakeClock())
    with pytest.raises(InvalidInputError, match="--plan-file"):
        PlanFileSource(path, store=store, metrics=AdapterMetrics(CollectorRegistry(), store)).load()

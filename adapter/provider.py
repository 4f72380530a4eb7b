"""The adapter's one provider interface and the plan cache behind it.

``PlanProvider`` is what the HTTPS layer (``adapter/server.py``) and the KEDA servicer (``adapter/keda.py``)
ask: the desired replicas of one Deployment as the external metric ``faro_desired_replicas``, the metric
names, and how fresh the plan is. ``PlanStore`` implements it over the latest ``faro.v1.Plan`` that a
source (``adapter/sources.py``: the optimizer's WatchPlans stream or a plan file) puts in. Errors are
domain errors (``adapter/errors.py``); the serving layers give them their API meaning.

Freshness: a plan is served while ``now < valid_until`` (when set) and its age is at most ``ttl_s``; the age
counts from ``created`` (or, when unset, from when the plan was received). A stale plan is not served:
the HPA then keeps the current replicas, the safe failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from faro.adapter.errors import DeploymentNotFoundError, MetricNotFoundError, NoFreshPlanError
from faro.adapter.selector import Selector, SelectorError
from faro.v1 import plan_pb2

METRIC_NAME = "faro_desired_replicas"
DEPLOYMENT_LABEL = "deployment"

log = logging.getLogger("faro.adapter.plan")


# How the optimizer made a plan (faro.v1.Plan.kind), in the words the log uses.
_PLAN_KINDS = {"solve": "from a long-horizon solve", "reactive": "from a reactive step",
               "hold": "holding replicas (no solve)"}


@dataclass(frozen=True)
class MetricValue:
    """One external metric value: what ``ExternalMetricValue`` and KEDA's ``MetricValue`` carry."""

    metric_name: str
    labels: dict[str, str]
    value: int
    timestamp_s: float


@dataclass(frozen=True)
class Freshness:
    """The state of the plan cache at ``now_s`` (reported by /readyz and /metrics)."""

    has_plan: bool
    fresh: bool
    generation: int
    age_s: float | None
    reason: str  # "" when fresh; otherwise why nothing is served


class PlanProvider(Protocol):
    """What the serving layers ask; every method answers from memory, never blocking on I/O."""

    def get_external_metric(self, namespace: str, metric_name: str, selector: Selector) -> MetricValue:
        """The one value for ``metric_name`` in ``namespace`` matching ``selector``.

        Raises MetricNotFoundError, DeploymentNotFoundError, NoFreshPlanError or SelectorError
        (as InvalidInputError) when the selector does not name exactly one Deployment.
        """
        ...

    def metric_names(self) -> Sequence[str]: ...

    def freshness(self) -> Freshness: ...


def _ts(ts: object) -> float | None:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return seconds + nanos / 1e9


class PlanStore:
    """The latest plan and its freshness; a ``PlanProvider``.

    ``clock`` returns Unix seconds (injected so tests control time). ``ignore_expiry`` turns off both
    staleness rules (``--plan-file`` with ``--ignore-plan-expiry``).
    """

    def __init__(self, *, ttl_s: float, clock: Callable[[], float], ignore_expiry: bool = False) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")
        self._ttl_s = ttl_s
        self._clock = clock
        self._ignore_expiry = ignore_expiry
        self._plan: plan_pb2.Plan | None = None
        self._received_s = 0.0
        self._index: dict[tuple[str, str], int] = {}
        self._by_namespace: dict[str, list[str]] = {}
        self._version = 0
        self._changed: asyncio.Event | None = None
        self._last_fresh: bool | None = None

    # --- written by the plan sources -------------------------------------------------------------
    def put(self, plan: plan_pb2.Plan) -> None:
        """Replace the plan (the stream's order is authoritative, even if an optimizer restart resets generations)."""
        index: dict[tuple[str, str], int] = {}
        by_ns: dict[str, list[str]] = {}
        for t in plan.targets:
            if (t.namespace, t.deployment) not in index:
                by_ns.setdefault(t.namespace, []).append(t.deployment)
            index[(t.namespace, t.deployment)] = max(0, t.desired_replicas)
        self._plan, self._index, self._by_namespace = plan, index, by_ns
        self._received_s = self._clock()
        self._version += 1
        if self._changed is not None:
            self._changed.set()
        made_by = _PLAN_KINDS.get(plan.kind, f"a {plan.kind!r} step") if plan.kind else "no step kind given"
        log.info("plan generation %d received: %d targets, %s", plan.generation, len(index), made_by)

    @property
    def version(self) -> int:
        """Increases with every plan put in (for streams that push changes)."""
        return self._version

    async def wait_changed(self, version: int, timeout_s: float) -> None:
        """Return when a plan newer than ``version`` arrives or after ``timeout_s``."""
        if self._version != version:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)

    # --- PlanProvider ------------------------------------------------------------------------------
    def freshness(self) -> Freshness:
        plan = self._plan
        if plan is None:
            return Freshness(False, False, 0, None, "no plan received yet")
        now = self._clock()
        created = _ts(plan.created)
        age_s = now - (created if created is not None else self._received_s)
        reason = ""
        if not self._ignore_expiry:
            valid_until = _ts(plan.valid_until)
            if valid_until is not None and now >= valid_until:
                reason = f"plan generation {plan.generation} expired {now - valid_until:.0f} s ago (valid_until)"
            elif age_s > self._ttl_s:
                reason = f"plan generation {plan.generation} is {age_s:.0f} s old, over the {self._ttl_s:g} s TTL"
        fresh = not reason
        if fresh != self._last_fresh:
            self._last_fresh = fresh
            if fresh:
                log.info("plan generation %d is fresh; serving", plan.generation)
            else:
                log.warning("%s; not serving (HPAs hold their replicas)", reason)
        return Freshness(True, fresh, plan.generation, age_s, reason)

    def metric_names(self) -> Sequence[str]:
        return (METRIC_NAME,)

    def get_external_metric(self, namespace: str, metric_name: str, selector: Selector) -> MetricValue:
        if metric_name != METRIC_NAME:
            raise MetricNotFoundError(metric_name)
        name = self._select(namespace, selector)
        fresh = self.freshness()
        if not fresh.fresh:
            raise NoFreshPlanError(fresh.reason)
        assert self._plan is not None
        key = (namespace, name)
        if key not in self._index:
            raise DeploymentNotFoundError(namespace, name, self._plan.generation)
        created = _ts(self._plan.created)
        return MetricValue(
            metric_name=METRIC_NAME,
            labels={DEPLOYMENT_LABEL: name},
            value=self._index[key],
            timestamp_s=created if created is not None else self._received_s,
        )

    def _select(self, namespace: str, selector: Selector) -> str:
        """The one Deployment name the selector picks (checked before freshness: a bad request stays a 400)."""
        wanted = selector.equality_value(DEPLOYMENT_LABEL)
        if wanted is not None:
            if not selector.matches({DEPLOYMENT_LABEL: wanted}):
                raise DeploymentNotFoundError(namespace, wanted, self._plan.generation if self._plan else 0)
            return wanted
        if selector.empty:
            raise SelectorError(str(selector), f"must name one Deployment, e.g. {DEPLOYMENT_LABEL}=<name>")
        fresh = self.freshness()
        if not fresh.fresh:
            raise NoFreshPlanError(fresh.reason)
        names = [n for n in self._by_namespace.get(namespace, ()) if selector.matches({DEPLOYMENT_LABEL: n})]
        if len(names) == 1:
            return names[0]
        if not names:
            raise DeploymentNotFoundError(namespace, str(selector), self._plan.generation if self._plan else 0)
        raise SelectorError(
            str(selector), f"matches {len(names)} Deployments in {namespace}; name one with {DEPLOYMENT_LABEL}=<name>"
        )

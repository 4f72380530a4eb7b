"""Versioned plans as published by the live optimizer (lines are the policy's ``Target``), their store, and
the ``faro.v1.Plan`` form.

The control loop (``loop.py``) publishes into a ``PlanStore``; the gRPC servicer (``grpc_api.py``)
reads it (``current``) and blocks on it (``wait_newer``) for ``WatchPlans`` streams.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from faro.optimizer.policy.base import Target
from faro.v1 import plan_pb2
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass(frozen=True)
class PublishedPlan:
    generation: int
    created_s: float
    valid_until_s: float
    targets: tuple[Target, ...]
    policy: str = ""
    objective: str = ""
    objective_value: float = 0.0
    solve_ms: float = 0.0
    kind: str = "hold"
    leader: str = ""
    solver_status: str = ""

    def desired(self) -> dict[tuple[str, str], int]:
        return {(t.namespace, t.name): t.desired_replicas for t in self.targets}

    def target(self, namespace: str, deployment: str) -> Target | None:
        return next((t for t in self.targets if (t.namespace, t.name) == (namespace, deployment)), None)


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def to_proto(plan: PublishedPlan) -> plan_pb2.Plan:
    return plan_pb2.Plan(
        generation=plan.generation, created=_timestamp(plan.created_s), valid_until=_timestamp(plan.valid_until_s),
        targets=[_target_to_proto(t) for t in plan.targets],
        policy=plan.policy, objective=plan.objective, objective_value=plan.objective_value, solve_ms=plan.solve_ms,
        kind=plan.kind, leader=plan.leader, solver_status=plan.solver_status,
    )


# Target fields the wire carries, by their wire names (``name`` is ``deployment`` in faro.v1.Target); fields
# a later version adds to ``Target`` without a proto field stay in the process.
_WIRE = {f.name: wire for f in dataclasses.fields(Target)
         if (wire := "deployment" if f.name == "name" else f.name) in plan_pb2.Target.DESCRIPTOR.fields_by_name}


def _target_to_proto(target: Target) -> plan_pb2.Target:
    return plan_pb2.Target(**{wire: getattr(target, field) for field, wire in _WIRE.items()})


def from_proto(message: plan_pb2.Plan) -> PublishedPlan:
    return PublishedPlan(
        generation=message.generation, created_s=message.created.ToNanoseconds() / 1e9,
        valid_until_s=message.valid_until.ToNanoseconds() / 1e9,
        targets=tuple(Target(**{field: getattr(t, wire) for field, wire in _WIRE.items()}) for t in message.targets),
        policy=message.policy, objective=message.objective, objective_value=message.objective_value,
        solve_ms=message.solve_ms, kind=message.kind, leader=message.leader, solver_status=message.solver_status,
    )


class PlanStore:
    """The current plan, thread-safe; watchers wait for a newer generation."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._plan: PublishedPlan | None = None
        self._closed = False

    def current(self) -> PublishedPlan | None:
        with self._cond:
            return self._plan

    @property
    def generation(self) -> int:
        with self._cond:
            return self._plan.generation if self._plan else 0

    def publish(self, plan: PublishedPlan) -> None:
        with self._cond:
            if self._plan is not None and plan.generation <= self._plan.generation:
                raise ValueError(f"plan generation {plan.generation} is not newer than {self._plan.generation}")
            self._plan = plan
            self._cond.notify_all()

    def wait_newer(self, generation: int, timeout_s: float) -> PublishedPlan | None:
        """The current plan if its generation is > ``generation``, waiting up to ``timeout_s``."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._plan is not None and self._plan.generation > generation),
                                timeout=timeout_s)
            if self._plan is not None and self._plan.generation > generation:
                return self._plan
            return None

    def close(self) -> None:
        """Wake every watcher for shutdown."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

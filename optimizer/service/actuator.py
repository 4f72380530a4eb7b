"""The actuator interface: something that carries a plan out beyond publishing it over gRPC.

The control loop (``faro.optimizer.service.loop``) calls every configured actuator after each new
plan. The HPA path needs none (adapters watch the plan API); the Ray Serve actuator lives in
``faro.optimizer.actuate.ray_serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from faro.optimizer.metrics.base import DeploymentRef
from faro.optimizer.policy.base import Plan


class Actuator(Protocol):
    name: str

    def apply(self, plan: Plan) -> Mapping[tuple[str, str], str]:
        """Carry out a plan; returns per-job error messages (empty when all went well). Never raises
        for one job's failure."""
        ...


@runtime_checkable
class DeploymentAware(Protocol):
    """Optional ability: an actuator that needs each cycle's Deployments (e.g. to read their
    ``faro.dev/ray-app`` annotations). The loop calls it before ``apply``."""

    def update_deployments(self, refs: Sequence[DeploymentRef]) -> None: ...

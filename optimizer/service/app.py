"""The live optimizer service: informers, leader election, control loop, gRPC plan API, /metrics.

Built by ``faro optimizer`` (``faro.optimizer.commands.optimizer``) and by the end-to-end tests,
with every dependency injected (API client, policy, metrics source, registry, clock, actuators).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faro.optimizer.kube.events import EventRecorder
from faro.optimizer.kube.state import ClusterState
from faro.optimizer.service.actuator import Actuator
from faro.optimizer.service.config import ServiceConfig
from faro.optimizer.service.grpc_api import PlanServer, PlanServicer
from faro.optimizer.service.grpc_security import CallGuard, ServerTLS
from faro.optimizer.service.leader import LeaseElector
from faro.optimizer.service.loop import ControlLoop
from faro.optimizer.service.plans import PlanStore
from faro.optimizer.service.telemetry import Telemetry, serve_http
from faro.optimizer.service.whatif import SolveLimits, WhatIfSolver, solve_in_child
from kubernetes import client
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanAPISettings:
    """The plan gRPC API's port: TLS (None = plaintext, ``--grpc-insecure``), who may call (``guard``, built by
    ``faro optimizer`` from its flags) and the bounds of every call."""

    tls: ServerTLS | None
    guard: CallGuard
    solve_limits: SolveLimits = field(default_factory=SolveLimits)
    max_receive_bytes: int = 4 * 1024 * 1024
    max_workers: int = 64
    max_streams_per_caller: int = 16


@dataclass(frozen=True)
class LeaderSettings:
    enabled: bool = True
    name: str = "faro-optimizer"
    namespace: str = "faro-system"
    lease_duration_s: int = 15
    renew_deadline_s: int = 10
    retry_period_s: int = 2


class OptimizerService:
    def __init__(self, config: ServiceConfig, *, api_client: client.ApiClient, policy: Any, metrics_source: Any,
                 plan_api: PlanAPISettings, registry: CollectorRegistry | None = None,
                 grpc_address: str = "0.0.0.0:50051", metrics_address: str | None = "0.0.0.0:8080",
                 leader: LeaderSettings = LeaderSettings(), actuators: Sequence[Actuator] = (),
                 clock: Callable[[], float] = time.time, solve: Callable[..., Any] = solve_in_child,
                 watch_timeout_s: int = 300) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.telemetry = Telemetry(self.registry)
        self.store = PlanStore()
        self.state = ClusterState(api_client, namespace=config.namespace, watch_timeout_s=watch_timeout_s)
        self.events = EventRecorder(client.CoreV1Api(api_client), instance=config.identity, clock=clock)
        self.elector: LeaseElector | None = None
        if leader.enabled:
            self.elector = LeaseElector(api_client, name=leader.name, namespace=leader.namespace,
                                        identity=config.identity, lease_duration_s=leader.lease_duration_s,
                                        renew_deadline_s=leader.renew_deadline_s, retry_period_s=leader.retry_period_s,
                                        on_change=self._on_leader_change)
        self.loop = ControlLoop(config=config, policy=policy, snapshot=self.state.snapshot,
                                metrics_source=metrics_source, store=self.store, telemetry=self.telemetry,
                                clock=clock, events=self.events, actuators=actuators)
        plan_api.guard.report_to(self.telemetry)
        self.servicer = PlanServicer(self.store, is_leader=self.is_leader, leader_name=self.leader_name,
                                     guard=plan_api.guard, whatif=WhatIfSolver(plan_api.solve_limits, solve=solve),
                                     telemetry=self.telemetry, max_streams_per_caller=plan_api.max_streams_per_caller)
        self.grpc = PlanServer(grpc_address, self.servicer, tls=plan_api.tls, max_workers=plan_api.max_workers,
                               max_receive_bytes=plan_api.max_receive_bytes)
        self._metrics_address = metrics_address
        self._http: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends the loop's wait early: leadership changed, or stopping
        self._thread: threading.Thread | None = None
        self._clock = clock

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def metrics_port(self) -> int:
        return self._http.server_address[1] if self._http else 0

    def is_leader(self) -> bool:
        return self.elector.is_leader() if self.elector else True

    def leader_name(self) -> str:
        return self.elector.leader_name() if self.elector else self.config.identity

    def ready(self) -> bool:
        """Ready = caches synced, leading, and a plan younger than two reactive intervals (+5 s)."""
        plan = self.store.current()
        fresh = plan is not None and self._clock() - plan.created_s < 2 * self.config.reactive_interval_s + 5
        return self.state.snapshot().synced and self.is_leader() and fresh

    def _on_leader_change(self, leading: bool) -> None:
        self.grpc.set_leader(leading)
        self.telemetry.is_leader.set(1 if leading else 0)
        self._wake.set()  # the loop plans at once (or stops planning), not one reactive interval later

    def start(self) -> OptimizerService:
        self.state.start()
        self.grpc.start()
        self.grpc.set_leader(self.elector is None)
        self.servicer.whatif.warm_up()
        if self._metrics_address:
            self._http = serve_http(self._metrics_address, self.registry, ready=self.ready)
        if self.elector:
            self.elector.start()
        self._thread = threading.Thread(target=self.loop.run, args=(self._stop,),
                                        kwargs={"is_leader": self.is_leader, "wake": self._wake},
                                        name="faro-control-loop", daemon=True)
        self._thread.start()
        log.info("faro optimizer %s started (gRPC :%d)", self.config.identity, self.grpc_port)
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop everything; ``release=False`` leaves the Lease held, as a crashed replica would."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.elector:
            self.elector.stop(release=release)
        self.store.close()
        self.grpc.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.state.stop()

    def wait(self) -> None:
        while not self._stop.wait(1.0):
            pass

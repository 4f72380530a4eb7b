"""The ``faro.v1.PlanService`` gRPC servicer and server (plus ``grpc.health.v1``).

Created by ``app.py``. ``WatchPlans`` sends the current plan at once (when newer than
``after_generation``), then every new one; ``GetPlan`` returns the current plan (NOT_FOUND before
the first). Only the leader serves plans: on a follower both answer UNAVAILABLE with the reason,
and open streams end with UNAVAILABLE when this replica loses the Lease, so adapters reconnect
(through the Service, whose endpoints are only the ready leader — see ``/readyz``). ``Solve`` is a
what-if that works on any replica: SolveRequest → ``Problem`` → solver (in a child process) → SolveResponse.

Every call first passes the ``CallGuard`` (``grpc_security.py``: mTLS client certificate or a reviewed bearer
token; nothing with ``--grpc-insecure``). Every call is bounded: message size (``max_receive_bytes``),
concurrent calls (``max_workers``; RESOURCE_EXHAUSTED beyond), open ``WatchPlans`` streams per caller, and
``Solve`` by ``whatif.SolveLimits`` (size, solver list, concurrency, time — see ``whatif.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.problem import SLO, Job, Problem, Quota
from faro.optimizer.service import grpc_decode
from faro.optimizer.service.grpc_security import CallGuard, ServerTLS
from faro.optimizer.service.plan_client import MAX_RECEIVE_BYTES
from faro.optimizer.service.plans import PlanStore, to_proto
from faro.optimizer.service.whatif import (
    DEFAULT_MAX_REPLICAS,
    SolveCrashed,
    SolveError,
    SolveLimits,
    SolveRefused,
    SolveTimedOut,
    WhatIfSolver,
    check_request,
)
from faro.v1 import plan_pb2, plan_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

SERVICE = plan_pb2.DESCRIPTOR.services_by_name["PlanService"]
SERVICE_NAME = SERVICE.full_name


def problem_from_request(request: plan_pb2.SolveRequest, *,
                         default_max_replicas: int = DEFAULT_MAX_REPLICAS) -> Problem:
    """A ``Problem`` from a SolveRequest; proto3 zero values mean "unset" where a zero is meaningless."""
    jobs = []
    for i, job in enumerate(request.jobs):
        where = f"jobs[{i}]"
        if not job.rate_rps:
            raise InvalidInputError(f"{where}.rate_rps", "needs at least one horizon step")
        jobs.append(_job(job, where, default_max_replicas))
    quotas = tuple(Quota(name=q.name or f"quota-{i}", hard=dict(q.hard), used=dict(q.used),
                         namespace=q.namespace or None) for i, q in enumerate(request.quotas))
    return Problem(jobs=tuple(jobs), quotas=quotas, objective=request.objective or "sum")


def _job(job: plan_pb2.SolveJob, where: str, default_max: int) -> Job:
    try:
        return Job(name=job.name, namespace=job.namespace or "default",
                   slo=SLO(job.slo_latency_ms, job.slo_percentile or 99.0),
                   processing_time_ms=job.processing_time_ms, rate_rps=tuple(job.rate_rps),
                   resources=dict(job.resources) or {"cpu": 1.0}, weight=job.weight or 1.0,
                   min_replicas=job.min_replicas, max_replicas=job.max_replicas or default_max,
                   current_replicas=job.current_replicas)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where} ({job.namespace}/{job.name}) {exc.where}", exc.reason) from exc


def response_from_result(problem: Problem, result: Any) -> plan_pb2.SolveResponse:
    return plan_pb2.SolveResponse(
        status=result.status, message=result.message, objective_value=float(result.objective_value),
        bound=float(result.bound) if result.bound is not None else 0.0, solve_ms=float(result.solve_ms),
        allocations=[plan_pb2.Allocation(namespace=j.namespace, name=j.name, replicas=int(result.replicas[i]),
                                         latency_ms=float(result.latency_ms[i]), utility=float(result.utility[i]))
                     for i, j in enumerate(problem.jobs)] if result.ok else [],
    )


class PlanServicer(plan_pb2_grpc.PlanServiceServicer):
    """The three methods; ``guard`` decides who may call, ``whatif`` bounds and runs ``Solve``."""

    def __init__(self, store: PlanStore, *, is_leader: Callable[[], bool], leader_name: Callable[[], str],
                 guard: CallGuard, whatif: WhatIfSolver, telemetry: Any = None, poll_s: float = 1.0,
                 max_streams_per_caller: int = 16) -> None:
        self._store = store
        self._is_leader = is_leader
        self._leader_name = leader_name
        self._guard = guard
        self.whatif = whatif
        self._telemetry = telemetry
        self._poll_s = poll_s
        self._max_streams = max_streams_per_caller
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    def _require_leader(self, context: grpc.ServicerContext) -> None:
        if not self._is_leader():
            leader = self._leader_name()
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"this optimizer replica is not the leader (leader: {leader or 'unknown'}); retry")

    def _refuse(self, context: grpc.ServicerContext, method: str, code: grpc.StatusCode, message: str) -> None:
        if self._telemetry is not None:
            self._telemetry.grpc_refused.labels(method, code.name).inc()
        context.abort(code, message)

    def malformed(self, method: str, context: grpc.ServicerContext, message: str) -> None:
        """A request that is not valid protobuf (``grpc_decode``): the caller is checked as for any call, then
        INVALID_ARGUMENT."""
        self._guard.caller(context, method)
        self._refuse(context, method, grpc.StatusCode.INVALID_ARGUMENT, message)

    def GetPlan(self, request: plan_pb2.GetPlanRequest, context: grpc.ServicerContext) -> plan_pb2.Plan:
        self._guard.caller(context, "GetPlan")
        self._require_leader(context)
        plan = self._store.current()
        if plan is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no plan yet")
        return to_proto(plan)

    @contextlib.contextmanager
    def _stream_slot(self, caller: str, context: grpc.ServicerContext) -> Iterator[None]:
        with self._lock:
            mine = self._streams.get(caller, 0)
            if mine < self._max_streams:
                self._streams[caller] = mine + 1
        if mine >= self._max_streams:
            self._refuse(context, "WatchPlans", grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{caller} already has {mine} WatchPlans streams open (--grpc-max-streams-per-caller "
                         f"{self._max_streams})")
        try:
            yield
        finally:
            with self._lock:
                left = self._streams[caller] - 1
                if left:
                    self._streams[caller] = left
                else:
                    del self._streams[caller]

    def WatchPlans(self, request: plan_pb2.WatchPlansRequest, context: grpc.ServicerContext) -> Iterator[plan_pb2.Plan]:
        caller = self._guard.caller(context, "WatchPlans")
        self._require_leader(context)
        with self._stream_slot(caller, context):
            seen = request.after_generation
            while context.is_active() and not self._store.closed:
                plan = self._store.wait_newer(seen, self._poll_s)
                if not self._is_leader():
                    context.abort(grpc.StatusCode.UNAVAILABLE,
                                  "this optimizer replica lost the leader Lease; reconnect")
                if plan is not None:
                    seen = plan.generation
                    yield to_proto(plan)

    def Solve(self, request: plan_pb2.SolveRequest, context: grpc.ServicerContext) -> plan_pb2.SolveResponse:
        caller = self._guard.caller(context, "Solve")
        started = time.perf_counter()
        outcome, code, answer = self._solve(request, context, caller)
        if self._telemetry is not None:
            self._telemetry.whatif_solves.labels(outcome).inc()
            self._telemetry.whatif_seconds.observe(time.perf_counter() - started)
        if code is not None:
            log.info("what-if Solve from %s: %s (%s)", caller, code.name, answer)
            self._refuse(context, "Solve", code, str(answer))
        return answer

    def _solve(self, request: plan_pb2.SolveRequest, context: grpc.ServicerContext,
               caller: str) -> tuple[str, grpc.StatusCode | None, Any]:
        """(outcome for the metric, the status code of a refusal or None, its message or the response)."""
        whatif = self.whatif
        try:
            check_request(request, whatif.limits)
            problem = problem_from_request(request)
            with whatif.admit(caller):
                limit_s = whatif.time_limit_s(request.time_limit_s, context.time_remaining())
                result = whatif.run(problem, solver=request.solver or "auto", time_limit_s=limit_s)
        except SolveRefused as exc:
            return "refused", grpc.StatusCode[exc.code], str(exc)
        except InvalidInputError as exc:
            return "invalid", grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except SolveTimedOut as exc:
            return "timeout", grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
        except SolveCrashed as exc:
            return "crashed", grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        except SolveError as exc:
            log.error("what-if solve failed: %s", exc)
            return "error", None, plan_pb2.SolveResponse(status="error", message=str(exc))
        return "ok", None, response_from_result(problem, result)


class PlanServer:
    """A grpc.server with the PlanService and the health service; ``port`` is the bound port.

    ``tls`` None serves plaintext (``--grpc-insecure``). ``max_workers`` bounds concurrent calls, open streams
    included (beyond: RESOURCE_EXHAUSTED); ``max_receive_bytes`` bounds a request message."""

    def __init__(self, address: str, servicer: PlanServicer, *, tls: ServerTLS | None, max_workers: int = 64,
                 max_receive_bytes: int = 4 * 1024 * 1024) -> None:
        options = [
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", MAX_RECEIVE_BYTES),
            # Clients (plan_client) ping every 30 s to keep idle streams through proxies; allow it.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
            ("grpc.http2.max_ping_strikes", 0),
        ]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="faro-grpc"),
                                  options=options, maximum_concurrent_rpcs=max_workers)
        # Requests are parsed by our code (grpc_decode): a malformed one is INVALID_ARGUMENT, and grpcio's own
        # parse failure would leave the call's state behind for good.
        grpc_decode.add_servicer(self.server, servicer, SERVICE, on_malformed=servicer.malformed)
        self.servicer = servicer
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, tls.credentials())
        except RuntimeError as exc:
            raise InvalidInputError("--grpc-address", f"cannot listen on {address}: {exc}") from exc
        if self.port == 0:
            raise InvalidInputError("--grpc-address", f"cannot listen on {address}")

    def start(self) -> None:
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    def set_leader(self, leading: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if leading else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set(SERVICE_NAME, status)

    def stop(self, grace_s: float = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait(grace_s + 1)


__all__ = ["PlanServer", "PlanServicer", "SolveLimits", "problem_from_request", "response_from_result"]

"""The ``faro.v1.PlanService`` gRPC servicer and server (plus ``grpc.health.v1``).

Created by ``app.py``. ``WatchPlans`` sends the current plan at once (when newer than
``after_generation``), then every new one; ``GetPlan`` returns the current plan (NOT_FOUND before
the first). Only the leader serves plans: on a follower both answer UNAVAILABLE with the reason,
and open streams end with UNAVAILABLE when this replica loses the Lease, so adapters reconnect
(through the Service, whose endpoints are only the ready leader — see ``/readyz``). ``Solve`` is a
what-if that works on any replica: SolveRequest → ``Problem`` → solver → SolveResponse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.problem import SLO, Job, Problem, Quota
from faro.optimizer.service.plans import PlanStore, to_proto
from faro.v1 import plan_pb2, plan_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = plan_pb2.DESCRIPTOR.services_by_name["PlanService"].full_name


def problem_from_request(request: plan_pb2.SolveRequest, *, default_max_replicas: int = 100) -> Problem:
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


def default_solve(problem: Problem, *, solver: str = "auto") -> Any:
    from faro.optimizer.solve import solve

    return solve(problem, solver=solver)


class PlanServicer(plan_pb2_grpc.PlanServiceServicer):
    def __init__(self, store: PlanStore, *, is_leader: Callable[[], bool], leader_name: Callable[[], str],
                 solve: Callable[..., Any] = default_solve, poll_s: float = 1.0) -> None:
        self._store = store
        self._is_leader = is_leader
        self._leader_name = leader_name
        self._solve = solve
        self._poll_s = poll_s

    def _require_leader(self, context: grpc.ServicerContext) -> None:
        if not self._is_leader():
            leader = self._leader_name()
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"this optimizer replica is not the leader (leader: {leader or 'unknown'}); retry")

    def GetPlan(self, request: plan_pb2.GetPlanRequest, context: grpc.ServicerContext) -> plan_pb2.Plan:
        self._require_leader(context)
        plan = self._store.current()
        if plan is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no plan yet")
        return to_proto(plan)

    def WatchPlans(self, request: plan_pb2.WatchPlansRequest, context: grpc.ServicerContext) -> Iterator[plan_pb2.Plan]:
        self._require_leader(context)
        seen = request.after_generation
        while context.is_active() and not self._store.closed:
            plan = self._store.wait_newer(seen, self._poll_s)
            if not self._is_leader():
                context.abort(grpc.StatusCode.UNAVAILABLE, "this optimizer replica lost the leader Lease; reconnect")
            if plan is not None:
                seen = plan.generation
                yield to_proto(plan)

    def Solve(self, request: plan_pb2.SolveRequest, context: grpc.ServicerContext) -> plan_pb2.SolveResponse:
        try:
            problem = problem_from_request(request)
        except InvalidInputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            result = self._solve(problem, solver=request.solver or "auto")
        except InvalidInputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:
            log.exception("what-if solve failed")
            return plan_pb2.SolveResponse(status="error", message=str(exc))
        return response_from_result(problem, result)


class PlanServer:
    """A grpc.server with the PlanService and the health service; ``port`` is the bound port."""

    def __init__(self, address: str, servicer: PlanServicer, *, max_workers: int = 32) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="faro-grpc"))
        plan_pb2_grpc.add_PlanServiceServicer_to_server(servicer, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port(address)
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

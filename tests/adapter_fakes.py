"""Plan-side fakes for adapter tests and benchmarks: ``make_plan``, a real grpc.aio ``PlanService`` whose plans
the test pushes (``FakePlanService``), and ``LoopThread`` (an asyncio loop on a thread for sync clients).

Used by ``tests/test_adapter_*.py`` and ``bench/adapter.py``; never by the product.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from faro.v1 import plan_pb2, plan_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def make_plan(
    generation: int,
    replicas: dict[tuple[str, str], int],
    *,
    created_s: float,
    valid_for_s: float | None = 900.0,
) -> plan_pb2.Plan:
    """A Plan with one Target per ``(namespace, deployment) → desired replicas``."""
    plan = plan_pb2.Plan(generation=generation, created=timestamp(created_s), policy="test", kind="solve")
    if valid_for_s is not None:
        plan.valid_until.CopyFrom(timestamp(created_s + valid_for_s))
    for (ns, dep), n in replicas.items():
        plan.targets.add(namespace=ns, deployment=dep, desired_replicas=n)
    return plan


class FakePlanService(plan_pb2_grpc.PlanServiceServicer):
    """A real gRPC PlanService: ``WatchPlans`` sends the current plan, then every plan ``publish``-ed."""

    def __init__(self) -> None:
        self._plan: plan_pb2.Plan | None = None
        self._changed = asyncio.Condition()
        self.watchers = 0

    async def publish(self, plan: plan_pb2.Plan) -> None:
        async with self._changed:
            self._plan = plan
            self._changed.notify_all()

    async def WatchPlans(
        self, request: plan_pb2.WatchPlansRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[plan_pb2.Plan]:
        self.watchers += 1
        last: list[plan_pb2.Plan | None] = [None]
        after = request.after_generation

        def news() -> bool:
            return self._plan is not None and self._plan is not last[0] and self._plan.generation > after

        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(news)
                    plan = self._plan
                assert plan is not None
                last[0] = plan
                yield plan
        finally:
            self.watchers -= 1

    async def GetPlan(self, request: plan_pb2.GetPlanRequest, context: grpc.aio.ServicerContext) -> plan_pb2.Plan:
        if self._plan is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no plan yet")
        assert self._plan is not None
        return self._plan


async def start_plan_server(
    service: FakePlanService, *, tls: Any = None, port: int = 0
) -> tuple[grpc.aio.Server, int]:
    """Serve ``service`` on 127.0.0.1 (``port`` 0 = a free port) with ``tls`` (a ``ServerTLS``, e.g.
    ``pki.plan_api_certs(...).server_tls()``; None = plaintext); returns the server and its port."""
    server = grpc.aio.server()
    plan_pb2_grpc.add_PlanServiceServicer_to_server(service, server)
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, tls.credentials()) if tls is not None else server.add_insecure_port(address)
    await server.start()
    return server, bound


class LoopThread:
    """An asyncio loop in a daemon thread, so sync clients (http.client, kubectl, hypothesis) can talk to servers
    running on it. ``run(coro)`` runs a coroutine there and waits (``timeout_s``)."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="adapter-test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout_s: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()

"""End to end: the optimizer's real plan API (``faro.optimizer.service`` PlanServer) → adapter → HPA emulator.

The HPA emulator (``faro.optimizer.sim.hpa``) reads ``faro_desired_replicas`` over HTTPS the way the HPA
controller does (a failed read = no metric = hold) with its own fake 15 s sync clock; the adapter's TTL runs
on the real clock, kept short so that stopping the optimizer makes it stop serving within seconds.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from faro.adapter.app import Adapter, AdapterConfig
from faro.adapter.sources import Backoff
from faro.externalscaler import externalscaler_pb2 as kpb
from faro.externalscaler import externalscaler_pb2_grpc as kpb_grpc
from faro.optimizer.policy.base import Target
from faro.optimizer.service.grpc_api import PlanServer, PlanServicer
from faro.optimizer.service.grpc_security import CallGuard
from faro.optimizer.service.plans import PlanStore, PublishedPlan
from faro.optimizer.service.whatif import SolveLimits, WhatIfSolver
from faro.optimizer.sim.hpa import HPABehavior, HPASpec, HPAState, hpa_step
from pki import CertificateAuthority, PlanAPICerts, plan_api_certs

TTL_S = 6.0
URL = "https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas"


class Optimizer:
    """The optimizer's plan API alone (store + gRPC server, mTLS as the chart sets it up), restartable on the
    same port."""

    def __init__(self, certs: PlanAPICerts, port: int = 0) -> None:
        self.store = PlanStore()
        servicer = PlanServicer(self.store, is_leader=lambda: True, leader_name=lambda: "test", poll_s=0.2,
                                guard=CallGuard(mode="mtls", allowed_client_names=(certs.client_name,)),
                                whatif=WhatIfSolver(SolveLimits()))
        self.server = PlanServer(f"127.0.0.1:{port}", servicer, tls=certs.server_tls())
        self.port = self.server.port
        self.server.start()

    def publish(self, generation: int, replicas: int) -> None:
        now = time.time()
        target = Target(namespace="default", name="resnet", desired_replicas=replicas, current_replicas=0)
        self.store.publish(PublishedPlan(generation=generation, created_s=now, valid_until_s=now + 900,
                                         targets=(target,), kind="solve"))

    def stop(self) -> None:
        self.store.close()
        self.server.stop(0.5)


@dataclass
class HPA:
    """The HPA controller for one Deployment: reads the metric over HTTPS, steps the emulator every sync."""

    session: aiohttp.ClientSession
    url: str
    spec: HPASpec
    state: HPAState
    replicas: int
    ca_pem: bytes = b""
    now_s: float = 0.0

    async def read_metric(self) -> float | None:
        async with self.session.get(self.url, params={"labelSelector": "deployment=resnet"}) as resp:
            if resp.status != 200:
                return None
            body = await resp.json()
            return float(body["items"][0]["value"])

    async def sync(self) -> float | None:
        value = await self.read_metric()
        self.replicas, self.state = hpa_step(self.spec, self.state, now_s=self.now_s, current_replicas=self.replicas,
                                             metric_value=value)
        self.now_s += self.spec.sync_period_s
        return value


async def eventually(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.fixture
async def pieces(tmp_path: Path) -> AsyncIterator[tuple[Optimizer, Adapter, HPA, PlanAPICerts]]:
    ca = CertificateAuthority("serving-ca")
    cert, key = ca.issue("faro-adapter", server=True).write(tmp_path, "server")
    certs = plan_api_certs(tmp_path)
    optimizer = Optimizer(certs)
    adapter = Adapter(
        AdapterConfig(optimizer_address=f"127.0.0.1:{optimizer.port}", optimizer_tls=certs.client_tls(),
                      plan_ttl_s=TTL_S, mode="both",
                      secure_address="127.0.0.1:0", tls_cert_file=cert, tls_private_key_file=key,
                      keda_address="127.0.0.1:0", keda_tls_cert_file=cert, keda_tls_private_key_file=key,
                      metrics_address=None,
                      backoff=Backoff(initial_s=0.1, max_s=0.5)),
        authenticator=None,
        authorizer=None,
    )
    await adapter.start()
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), timeout=aiohttp.ClientTimeout(total=30))
    spec = HPASpec(min_replicas=1, max_replicas=20, behavior=HPABehavior.recommended_for_faro())
    hpa = HPA(session, URL.format(port=adapter.secure_port), spec, HPAState(), replicas=2, ca_pem=ca.cert_pem)
    try:
        yield optimizer, adapter, hpa, certs
    finally:
        await session.close()
        await adapter.stop()
        optimizer.stop()


async def test_hpa_replicas_follow_the_plan_and_hold_when_the_optimizer_is_gone(
    pieces: tuple[Optimizer, Adapter, HPA, PlanAPICerts],
) -> None:
    optimizer, adapter, hpa, certs = pieces

    # Before any plan: not ready, nothing served, the HPA holds.
    assert await hpa.sync() is None and hpa.replicas == 2

    optimizer.publish(1, 5)
    await eventually(lambda: _async(adapter.store.freshness().generation == 1))
    assert await hpa.sync() == 5.0 and hpa.replicas == 5

    optimizer.publish(2, 3)
    await eventually(lambda: _async(adapter.store.freshness().generation == 2))
    assert await hpa.sync() == 3.0 and hpa.replicas == 3

    # The KEDA surface serves the same plan.
    keda_tls = grpc.ssl_channel_credentials(root_certificates=hpa.ca_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{adapter.keda_port}", keda_tls) as channel:
        ref = kpb.ScaledObjectRef(name="resnet", namespace="default", scalerMetadata={"deployment": "resnet"})
        got = await kpb_grpc.ExternalScalerStub(channel).GetMetrics(
            kpb.GetMetricsRequest(scaledObjectRef=ref, metricName="faro_desired_replicas"), timeout=30)
        assert got.metricValues[0].metricValue == 3

    # The optimizer stops: after the TTL the adapter stops serving and the HPA holds whatever it has.
    port = optimizer.port
    optimizer.stop()
    await eventually(lambda: _async(not adapter.store.freshness().fresh), timeout_s=TTL_S + 60)
    hpa.replicas = 4  # e.g. someone scaled by hand: a held HPA leaves it alone
    assert await hpa.sync() is None and hpa.replicas == 4
    status = await hpa.session.get(hpa.url, params={"labelSelector": "deployment=resnet"})
    assert status.status == 503 and (await status.json())["reason"] == "ServiceUnavailable"

    # A restarted optimizer (generations start again at 1) is followed again after the adapter reconnects.
    restarted = Optimizer(certs, port)
    try:
        restarted.publish(1, 6)
        await eventually(lambda: _async(adapter.store.freshness().fresh), timeout_s=60)
        assert await hpa.sync() == 6.0 and hpa.replicas == 6
    finally:
        restarted.stop()


async def test_bad_requests_through_the_e2e_path_get_statuses_not_500(
    pieces: tuple[Optimizer, Adapter, HPA, PlanAPICerts],
) -> None:
    optimizer, adapter, hpa, _ = pieces
    optimizer.publish(1, 5)
    await eventually(lambda: _async(adapter.store.freshness().generation == 1))
    for selector, code in (("deployment==", 404), ("deployment in (", 400), ("deployment=gpt", 404)):
        async with hpa.session.get(hpa.url, params={"labelSelector": selector}) as resp:
            assert resp.status == code, selector
            assert (await resp.json())["kind"] == "Status"
    async with hpa.session.get(hpa.url.replace("faro_desired_replicas", "nope"),
                               params={"labelSelector": "deployment=resnet"}) as resp:
        assert resp.status == 404


async def _async(value: bool) -> bool:
    return value

"""The KEDA external scaler, called by a real gRPC client generated from KEDA's proto (``faro.externalscaler``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from adapter_fakes import FakePlanService, make_plan, start_plan_server
from faro.adapter.app import Adapter, AdapterConfig
from faro.externalscaler import externalscaler_pb2 as pb
from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc
from pki import CertificateAuthority, plan_api_certs


@dataclass
class Keda:
    stub: pb_grpc.ExternalScalerStub
    plans: FakePlanService
    adapter: Adapter


async def wait_until(predicate: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def keda(tmp_path: Path) -> AsyncIterator[Keda]:
    plans = FakePlanService()
    certs = plan_api_certs(tmp_path)
    server, port = await start_plan_server(plans, tls=certs.server_tls())
    adapter = Adapter(
        AdapterConfig(optimizer_address=f"127.0.0.1:{port}", optimizer_tls=certs.client_tls(), mode="keda",
                      keda_address="127.0.0.1:0", metrics_address=None),
        authenticator=None,
        authorizer=None,
    )
    await adapter.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{adapter.keda_port}")
    try:
        yield Keda(pb_grpc.ExternalScalerStub(channel), plans, adapter)
    finally:
        await channel.close()
        await adapter.stop()
        await server.stop(None)


def ref(deployment: str | None = "resnet", *, namespace: str = "default", **metadata: str) -> pb.ScaledObjectRef:
    md = dict(metadata)
    if deployment is not None:
        md["deployment"] = deployment
    return pb.ScaledObjectRef(name="so-" + (deployment or "x"), namespace=namespace, scalerMetadata=md)


async def publish(k: Keda, replicas: dict[tuple[str, str], int], generation: int = 1) -> None:
    await k.plans.publish(make_plan(generation, replicas, created_s=time.time()))
    await wait_until(lambda: k.adapter.store.freshness().generation == generation)


async def test_metric_spec_is_one_metric_with_target_one(keda: Keda) -> None:
    resp = await keda.stub.GetMetricSpec(ref(), timeout=30)
    assert [(s.metricName, s.targetSize, s.targetSizeFloat) for s in resp.metricSpecs] == [
        ("faro_desired_replicas", 1, 1.0)
    ]


async def test_metrics_are_the_plans_desired_replicas_as_int_and_float(keda: Keda) -> None:
    await publish(keda, {("default", "resnet"): 7, ("team-a", "bert"): 0})
    resp = await keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="faro_desired_replicas"),
                                      timeout=30)
    assert [(v.metricName, v.metricValue, v.metricValueFloat) for v in resp.metricValues] == [
        ("faro_desired_replicas", 7, 7.0)
    ]
    md = {"deployment": "bert", "namespace": "team-a"}  # the Deployment lives outside the ScaledObject's namespace
    other_ns = pb.ScaledObjectRef(name="so", namespace="keda", scalerMetadata=md)
    request = pb.GetMetricsRequest(scaledObjectRef=other_ns, metricName="faro_desired_replicas")
    resp = await keda.stub.GetMetrics(request)
    assert resp.metricValues[0].metricValue == 0


async def test_is_active_when_desired_replicas_are_positive(keda: Keda) -> None:
    await publish(keda, {("default", "resnet"): 3, ("default", "idle"): 0})
    assert (await keda.stub.IsActive(ref("resnet"), timeout=30)).result is True
    assert (await keda.stub.IsActive(ref("idle"), timeout=30)).result is False


async def test_the_scaled_objects_name_is_the_default_deployment(keda: Keda) -> None:
    await publish(keda, {("default", "so-x"): 2})
    request = pb.GetMetricsRequest(scaledObjectRef=ref(None), metricName="faro_desired_replicas")
    resp = await keda.stub.GetMetrics(request, timeout=30)
    assert resp.metricValues[0].metricValue == 2


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        pytest.param(pb.GetMetricsRequest(scaledObjectRef=ref("gpt"), metricName="faro_desired_replicas"),
                     grpc.StatusCode.NOT_FOUND, id="unknown-deployment"),
        pytest.param(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="queue_length"),
                     grpc.StatusCode.NOT_FOUND, id="unknown-metric"),
        pytest.param(pb.GetMetricsRequest(scaledObjectRef=ref("Not_Valid!"), metricName="faro_desired_replicas"),
                     grpc.StatusCode.INVALID_ARGUMENT, id="invalid-deployment-name"),
    ],
)
async def test_bad_requests_get_grpc_status_codes(
    keda: Keda, request_: pb.GetMetricsRequest, code: grpc.StatusCode
) -> None:
    await publish(keda, {("default", "resnet"): 3})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await keda.stub.GetMetrics(request_, timeout=30)
    assert err.value.code() == code


async def test_without_a_plan_metrics_are_unavailable(keda: Keda) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await keda.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="faro_desired_replicas"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_stream_is_active_pushes_changes_of_the_active_state(keda: Keda) -> None:
    await publish(keda, {("default", "resnet"): 2})
    stream = keda.stub.StreamIsActive(ref(), timeout=60)
    first = await asyncio.wait_for(stream.read(), 30)
    assert first.result is True
    await publish(keda, {("default", "resnet"): 0}, generation=2)
    second = await asyncio.wait_for(stream.read(), 30)
    assert second.result is False
    stream.cancel()


async def test_the_keda_server_can_serve_tls(tmp_path: Path) -> None:
    ca = CertificateAuthority("keda-ca")
    cert, key = ca.issue("faro-adapter", server=True, hosts=["localhost"]).write(tmp_path, "keda")
    plans = FakePlanService()
    certs = plan_api_certs(tmp_path)
    server, port = await start_plan_server(plans, tls=certs.server_tls())
    adapter = Adapter(
        AdapterConfig(optimizer_address=f"127.0.0.1:{port}", optimizer_tls=certs.client_tls(), mode="keda",
                      keda_address="127.0.0.1:0",
                      keda_tls_cert_file=cert, keda_tls_private_key_file=key, metrics_address=None),
        authenticator=None,
        authorizer=None,
    )
    await adapter.start()
    creds = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    channel = grpc.aio.secure_channel(f"localhost:{adapter.keda_port}", creds)
    try:
        resp = await pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref(), timeout=30)
        assert resp.metricSpecs[0].targetSize == 1
    finally:
        await channel.close()
        await adapter.stop()
        await server.stop(None)

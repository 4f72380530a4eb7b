"""The KEDA external scaler, called by a real gRPC client generated from KEDA's proto (``faro.externalscaler``),
over TLS with KEDA's client certificate as the chart sets it up (``tests/pki.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from adapter_fakes import FakePlanService, make_plan, start_plan_server
from faro.adapter.app import Adapter, AdapterConfig
from faro.externalscaler import externalscaler_pb2 as pb
from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc
from faro.optimizer.errors import InvalidInputError
from pki import CertificateAuthority, KeyPair, plan_api_certs


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


@dataclass(frozen=True)
class KedaPKI:
    """The adapter's serving pair (names localhost) and KEDA's client pair (CN keda), one CA, as the chart."""

    ca: CertificateAuthority
    ca_file: Path
    server: tuple[Path, Path]
    keda: KeyPair

    def credentials(self, client: KeyPair | None = None) -> grpc.ChannelCredentials:
        """What KEDA builds from the trigger's authParams caCert, tlsClientCert and tlsClientKey."""
        client = client if client is not None else self.keda
        return grpc.ssl_channel_credentials(root_certificates=self.ca.cert_pem, private_key=client.key_pem,
                                            certificate_chain=client.cert_pem)


@pytest.fixture
def keda_pki(tmp_path: Path) -> KedaPKI:
    ca = CertificateAuthority("faro-ca")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    return KedaPKI(ca, ca_file, ca.issue("faro-keda-scaler", server=True, hosts=["localhost"]).write(tmp_path, "s"),
                   ca.issue("keda"))


async def start_keda(pki: KedaPKI, tmp_path: Path, **config: object) -> tuple[Adapter, FakePlanService, Any]:
    plans = FakePlanService()
    certs = plan_api_certs(tmp_path)
    server, port = await start_plan_server(plans, tls=certs.server_tls())
    settings: dict[str, object] = {"keda_tls_cert_file": pki.server[0], "keda_tls_private_key_file": pki.server[1],
                                   "keda_client_ca_file": pki.ca_file, "keda_allowed_client_names": ("keda",)}
    adapter = Adapter(
        AdapterConfig(optimizer_address=f"127.0.0.1:{port}", optimizer_tls=certs.client_tls(), mode="keda",
                      keda_address="127.0.0.1:0", metrics_address=None, **{**settings, **config}),  # type: ignore[arg-type]
        authenticator=None,
        authorizer=None,
    )
    await adapter.start()
    return adapter, plans, server


@pytest.fixture
async def keda(keda_pki: KedaPKI, tmp_path: Path) -> AsyncIterator[Keda]:
    adapter, plans, server = await start_keda(keda_pki, tmp_path)
    channel = grpc.aio.secure_channel(f"localhost:{adapter.keda_port}", keda_pki.credentials())
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
    md = {"deployment": "bert", "namespace": "team-a"}  # the ScaledObject's own namespace, named explicitly
    same_ns = pb.ScaledObjectRef(name="so", namespace="team-a", scalerMetadata=md)
    request = pb.GetMetricsRequest(scaledObjectRef=same_ns, metricName="faro_desired_replicas")
    resp = await keda.stub.GetMetrics(request)
    assert resp.metricValues[0].metricValue == 0


@pytest.mark.parametrize("method", ["GetMetrics", "IsActive", "GetMetricSpec", "StreamIsActive"])
async def test_a_scaled_object_may_not_read_a_deployment_in_another_namespace(keda: Keda, method: str) -> None:
    await publish(keda, {("team-a", "bert"): 4})
    other_ns = pb.ScaledObjectRef(name="so", namespace="team-b", scalerMetadata={"deployment": "bert",
                                                                                 "namespace": "team-a"})
    call = {"GetMetrics": lambda: keda.stub.GetMetrics(pb.GetMetricsRequest(
                scaledObjectRef=other_ns, metricName="faro_desired_replicas"), timeout=30),
            "IsActive": lambda: keda.stub.IsActive(other_ns, timeout=30),
            "GetMetricSpec": lambda: keda.stub.GetMetricSpec(other_ns, timeout=30),
            "StreamIsActive": lambda: keda.stub.StreamIsActive(other_ns, timeout=30).read()}[method]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "team-b/so may read only Deployments in its own namespace" in err.value.details()


async def test_the_operator_can_allow_cross_namespace_reads(keda_pki: KedaPKI, tmp_path: Path) -> None:
    adapter, plans, server = await start_keda(keda_pki, tmp_path, keda_allow_cross_namespace=True)
    channel = grpc.aio.secure_channel(f"localhost:{adapter.keda_port}", keda_pki.credentials())
    try:
        await plans.publish(make_plan(1, {("team-a", "bert"): 4}, created_s=time.time()))
        await wait_until(lambda: adapter.store.freshness().generation == 1)
        other_ns = pb.ScaledObjectRef(name="so", namespace="keda", scalerMetadata={"deployment": "bert",
                                                                                   "namespace": "team-a"})
        resp = await pb_grpc.ExternalScalerStub(channel).GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=other_ns, metricName="faro_desired_replicas"), timeout=30)
        assert resp.metricValues[0].metricValue == 4
    finally:
        await channel.close()
        await adapter.stop()
        await server.stop(None)


@pytest.mark.parametrize("client", ["no-certificate", "other-ca", "plaintext"])
async def test_a_caller_without_a_certificate_from_the_ca_is_refused_at_the_handshake(
    keda: Keda, keda_pki: KedaPKI, client: str
) -> None:
    address = f"localhost:{keda.adapter.keda_port}"
    if client == "plaintext":
        channel = grpc.aio.insecure_channel(address)
    elif client == "no-certificate":
        channel = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=keda_pki.ca.cert_pem))
    else:
        channel = grpc.aio.secure_channel(address, keda_pki.credentials(CertificateAuthority("rogue").issue("keda")))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
    # The same server answers KEDA's certificate at once: the refusal was the handshake, not a dead server.
    assert (await keda.stub.GetMetricSpec(ref(), timeout=30)).metricSpecs


async def test_a_certificate_from_the_ca_with_another_name_is_permission_denied(keda: Keda, keda_pki: KedaPKI) -> None:
    channel = grpc.aio.secure_channel(f"localhost:{keda.adapter.keda_port}",
                                      keda_pki.credentials(keda_pki.ca.issue("eve")))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'eve'" in err.value.details()
    finally:
        await channel.close()


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


@pytest.mark.parametrize("method", ["IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"])
async def test_a_malformed_protobuf_is_invalid_argument_naming_the_message_type(
    keda: Keda, keda_pki: KedaPKI, method: str
) -> None:
    malformed = b"\xff\xff\xff\xff"  # wire type 7: no protobuf parser accepts it (grpcio's own parse said UNKNOWN)
    expected = "GetMetricsRequest" if method == "GetMetrics" else "ScaledObjectRef"

    async def send(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
        path = f"/externalscaler.ExternalScaler/{method}"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if method == "StreamIsActive":
                await channel.unary_stream(path)(malformed, timeout=30).read()
            else:
                await channel.unary_unary(path)(malformed, timeout=30)
        return err.value

    channel = grpc.aio.secure_channel(f"localhost:{keda.adapter.keda_port}", keda_pki.credentials())
    try:
        error = await send(channel)
    finally:
        await channel.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"not a valid externalscaler.{expected} message" in error.details()
    requests = keda.adapter.metrics.registry.get_sample_value(
        "faro_adapter_requests_total", {"surface": "keda", "handler": method, "code": "INVALID_ARGUMENT"})
    assert requests == 1
    # The client is checked first, as for any call.
    channel = grpc.aio.secure_channel(f"localhost:{keda.adapter.keda_port}",
                                      keda_pki.credentials(keda_pki.ca.issue("eve")))
    try:
        assert (await send(channel)).code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await channel.close()


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


async def test_without_a_client_ca_the_keda_server_is_tls_only(keda_pki: KedaPKI, tmp_path: Path) -> None:
    adapter, _, server = await start_keda(keda_pki, tmp_path, keda_client_ca_file=None,
                                              keda_allowed_client_names=())
    creds = grpc.ssl_channel_credentials(root_certificates=keda_pki.ca.cert_pem)  # KEDA with caCert only
    channel = grpc.aio.secure_channel(f"localhost:{adapter.keda_port}", creds)
    try:
        resp = await pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref(), timeout=30)
        assert resp.metricSpecs[0].targetSize == 1
    finally:
        await channel.close()
        await adapter.stop()
        await server.stop(None)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"keda_tls_cert_file": None, "keda_tls_private_key_file": None, "keda_client_ca_file": None,
                      "keda_allowed_client_names": ()}, "--keda-tls-cert-file/--keda-tls-private-key-file",
                     id="no-tls"),
        pytest.param({"keda_insecure": True}, "--keda-insecure: plaintext takes no", id="insecure-with-tls-flags"),
        pytest.param({"keda_client_ca_file": None}, "--keda-allowed-client-names: needs --keda-client-ca-file",
                     id="names-without-ca"),
    ],
)
def test_the_keda_port_is_tls_unless_told_insecure(keda_pki: KedaPKI, config: dict, message: str) -> None:
    settings = {"keda_tls_cert_file": keda_pki.server[0], "keda_tls_private_key_file": keda_pki.server[1],
                "keda_client_ca_file": keda_pki.ca_file, "keda_allowed_client_names": ("keda",), **config}
    with pytest.raises(InvalidInputError, match=message.replace("/", ".")):
        AdapterConfig(optimizer_address="x:1", mode="keda", **settings)

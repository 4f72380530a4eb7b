"""Test and benchmark support for the adapter: a throw-away PKI and a small real ``PlanService`` server.

Used by ``tests/test_adapter_*.py`` and ``bench/adapter.py`` (never by the running adapter). The PKI makes a
serving CA + certificate for 127.0.0.1/localhost, a front-proxy CA with client certificates, and a client CA
with user certificates, all with ``cryptography``. ``FakePlanService`` is a real grpc.aio ``PlanService``
whose plans the test pushes with ``publish``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from faro.v1 import plan_pb2, plan_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates (ECDSA P-256, 1 day)."""

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if server:
            sans: list[x509.GeneralName] = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )


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
    service: FakePlanService, *, port: int = 0
) -> tuple[grpc.aio.Server, int]:
    """Serve ``service`` on 127.0.0.1 (``port`` 0 = a free port); returns the server and its port."""
    server = grpc.aio.server()
    plan_pb2_grpc.add_PlanServiceServicer_to_server(service, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
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

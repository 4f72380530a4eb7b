"""Assembles and runs one adapter replica: plan source → ``PlanStore`` → HTTPS API and/or KEDA gRPC + /metrics.

Called by ``adapter/cli.py`` (``faro adapter``) and by tests and ``bench/adapter.py``, which build an
``AdapterConfig`` (ports 0 = pick a free port; the bound ports are read back from ``Adapter``) and inject the
auth pieces and the clock. Everything runs on one asyncio loop; only Kubernetes review calls use threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc
from aiohttp import web
from faro.adapter.auth import AuthConfigSource, Authenticator, Authorizer
from faro.adapter.keda import SERVICE as KEDA_SERVICE
from faro.adapter.keda import ExternalScalerServicer
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import PlanStore
from faro.adapter.server import RequestErrorLog, build_api_app, build_metrics_app
from faro.adapter.sources import Backoff, PlanFileSource, PlanWatcher
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.service import grpc_decode
from faro.optimizer.service.grpc_security import ServerTLS, files_stamp
from faro.optimizer.service.plan_client import PlanClientTLS
from prometheus_client import CollectorRegistry

log = logging.getLogger("faro.adapter")

RECONNECT_TTL_FRACTION = 0.25  # the reconnect back-off never exceeds this share of --plan-ttl-s

Mode = Literal["apiService", "keda", "both"]


@dataclass(frozen=True)
class AdapterConfig:
    """Validated settings of one replica (addresses are ``host:port``; port 0 picks a free one)."""

    optimizer_address: str | None = None
    optimizer_tls: PlanClientTLS = field(default_factory=PlanClientTLS)  # how to reach --optimizer-address
    plan_file: Path | None = None
    ignore_plan_expiry: bool = False
    plan_ttl_s: float = 600.0
    mode: Mode = "apiService"
    secure_address: str = "0.0.0.0:6443"
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    keda_address: str = "0.0.0.0:9443"
    keda_tls_cert_file: Path | None = None
    keda_tls_private_key_file: Path | None = None
    keda_client_ca_file: Path | None = None  # require KEDA's client certificate from this CA (mTLS)
    keda_allowed_client_names: tuple[str, ...] = ()  # CNs admitted with a client CA (empty: any it signed)
    keda_allow_cross_namespace: bool = False  # a ScaledObject may name a Deployment in another namespace
    keda_insecure: bool = False  # local development only: plaintext KEDA gRPC
    metrics_address: str | None = "0.0.0.0:8081"
    plan_file_poll_s: float = 1.0
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if (self.optimizer_address is None) == (self.plan_file is None):
            raise InvalidInputError("faro adapter", "give exactly one of --optimizer-address or --plan-file")
        if self.ignore_plan_expiry and self.plan_file is None:
            raise InvalidInputError("--ignore-plan-expiry", "only applies with --plan-file")
        if not self.plan_ttl_s > 0:
            raise InvalidInputError("--plan-ttl-s", f"must be > 0, got {self.plan_ttl_s!r}")
        if self.mode not in ("apiService", "keda", "both"):
            raise InvalidInputError("--mode", f"must be apiService, keda or both, got {self.mode!r}")
        for flag, address in (("--secure-address", self.secure_address), ("--keda-address", self.keda_address),
                              ("--metrics-address", self.metrics_address or "x:0")):
            split_address(address, flag)
        if self.mode != "keda" and not (self.tls_cert_file and self.tls_private_key_file):
            raise InvalidInputError(
                "--tls-cert-file/--tls-private-key-file", "both are required: the External Metrics API is HTTPS only"
            )
        if self.mode != "apiService":
            tls_flags = [flag for flag, given in (
                ("--keda-tls-cert-file", self.keda_tls_cert_file), ("--keda-tls-private-key-file",
                                                                    self.keda_tls_private_key_file),
                ("--keda-client-ca-file", self.keda_client_ca_file),
                ("--keda-allowed-client-names", self.keda_allowed_client_names)) if given]
            if self.keda_insecure and tls_flags:
                raise InvalidInputError("--keda-insecure", f"plaintext takes no {', '.join(tls_flags)}")
            if not self.keda_insecure and not (self.keda_tls_cert_file and self.keda_tls_private_key_file):
                raise InvalidInputError("--keda-tls-cert-file/--keda-tls-private-key-file", "are required: the KEDA "
                                        "scaler serves TLS only (--keda-insecure for local development)")
            if self.keda_allowed_client_names and not self.keda_client_ca_file:
                raise InvalidInputError("--keda-allowed-client-names", "needs --keda-client-ca-file")


def split_address(address: str, flag: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidInputError(flag, f"must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def server_ssl_context(cert_file: Path, key_file: Path, *, client_ca_pem: str | None) -> ssl.SSLContext:
    """TLS ≥ 1.2; with ``client_ca_pem``, client certificates are requested (not required) and verified."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInputError(f"--tls-cert-file {cert_file}", f"cannot load the certificate/key: {exc}") from exc
    if client_ca_pem:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        try:
            ctx.load_verify_locations(cadata=client_ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidInputError("client CAs", f"cannot load them: {exc}") from exc
    return ctx


class ReloadingServerTLS:
    """The HTTPS port's TLS: a new ``SSLContext`` when the certificate files change (kubelet rotates a mounted
    Secret in place) or the client CAs do (the auth ConfigMap), taken up by the next handshake (the listening
    context's ``sni_callback``, called at every ClientHello, swaps it in) — no restart."""

    def __init__(self, cert_file: Path, key_file: Path, *, client_ca_pem: str | None,
                 clock: Callable[[], float] = time.monotonic, check_every_s: float = 1.0) -> None:
        self._cert_file, self._key_file = cert_file, key_file
        self._client_ca_pem = client_ca_pem
        self._clock, self._check_every_s = clock, check_every_s
        self._stamp = self._files_stamp()
        self._current = server_ssl_context(cert_file, key_file, client_ca_pem=client_ca_pem)
        self._next_check = clock() + check_every_s
        self.listening = server_ssl_context(cert_file, key_file, client_ca_pem=client_ca_pem)
        self.listening.sni_callback = self._swap

    def _files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        return files_stamp((self._cert_file, self._key_file))

    def _rebuild(self, *, why: str) -> None:
        try:
            self._current = server_ssl_context(self._cert_file, self._key_file, client_ca_pem=self._client_ca_pem)
        except InvalidInputError as exc:  # e.g. a half-written rotation: keep the previous one
            log.warning("TLS %s, but cannot be loaded (%s); keeping the previous certificate and CAs", why, exc)
            return
        log.info("TLS reloaded: %s", why)

    def set_client_ca(self, client_ca_pem: str | None) -> None:
        if client_ca_pem != self._client_ca_pem:
            self._client_ca_pem = client_ca_pem
            self._rebuild(why="client CAs changed")

    def _swap(self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._check_every_s
            stamp = self._files_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._rebuild(why=f"{self._cert_file} changed")
        ssl_object.context = self._current


def _bind(address: str, flag: str) -> socket.socket:
    host, port = split_address(address, flag)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInputError(flag, f"cannot listen on {address}: {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Adapter:
    """One running replica. ``await start()``, read the ``*_port`` attributes, ``await stop()``."""

    def __init__(
        self,
        config: AdapterConfig,
        *,
        authenticator: Authenticator | None,
        authorizer: Authorizer | None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        client_ca_pem: str | None = None,
        auth_source: AuthConfigSource | None = None,
        auth_poll_s: float = 10.0,
    ) -> None:
        """``auth_source`` re-reads the auth ConfigMap every ``auth_poll_s``: new CAs apply without a restart."""
        self.config = config
        self.store = PlanStore(ttl_s=config.plan_ttl_s, clock=clock, ignore_expiry=config.ignore_plan_expiry)
        self.metrics = AdapterMetrics(registry or CollectorRegistry(), self.store)
        self._clock = clock
        self._authenticator = authenticator
        self._authorizer = authorizer
        for reviewer in (authenticator, authorizer):
            if reviewer is not None and reviewer.metrics is None:
                reviewer.metrics = self.metrics
        self._client_ca_pem = client_ca_pem
        self._auth_source = auth_source
        self._auth_poll_s = auth_poll_s
        self.tls: ReloadingServerTLS | None = None
        self._runners: list[web.AppRunner] = []
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.secure_port: int | None = None
        self.keda_port: int | None = None
        self.metrics_port: int | None = None
        self.watcher: PlanWatcher | None = None

    async def start(self) -> None:
        cfg = self.config
        if cfg.plan_file is not None:
            source = PlanFileSource(
                cfg.plan_file, store=self.store, metrics=self.metrics, poll_interval_s=cfg.plan_file_poll_s
            )
            source.load()  # fail fast on a bad file
            self._tasks.append(asyncio.create_task(source.run(), name="plan-file"))
        else:
            assert cfg.optimizer_address is not None
            # Reconnect within a quarter of the TTL once the optimizer is back: a plan that could have been fetched
            # must not go stale because the adapter was still sleeping off an outage.
            self.watcher = PlanWatcher(
                cfg.optimizer_address, store=self.store, metrics=self.metrics, tls=cfg.optimizer_tls,
                backoff=cfg.backoff.capped(cfg.plan_ttl_s * RECONNECT_TTL_FRACTION),
            )
            self._tasks.append(asyncio.create_task(self.watcher.run(), name="watch-plans"))

        if cfg.mode in ("apiService", "both"):
            assert cfg.tls_cert_file and cfg.tls_private_key_file
            self.tls = ReloadingServerTLS(cfg.tls_cert_file, cfg.tls_private_key_file,
                                          client_ca_pem=self._client_ca_pem)
            ctx = self.tls.listening
            app = build_api_app(
                self.store,
                metrics=self.metrics,
                clock=self._clock,
                authenticator=self._authenticator,
                authorizer=self._authorizer,
            )
            self.secure_port = await self._serve(app, cfg.secure_address, "--secure-address", ctx)
            if self._auth_source is not None and self._authenticator is not None:
                self._tasks.append(asyncio.create_task(self._watch_auth(), name="auth-configmap"))
            log.info("External Metrics API on https://%s (port %d)", cfg.secure_address, self.secure_port)
        if cfg.metrics_address:
            app = build_metrics_app(self.store, metrics=self.metrics, clock=self._clock)
            self.metrics_port = await self._serve(app, cfg.metrics_address, "--metrics-address", None)
        if cfg.mode in ("keda", "both"):
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024)])
            scaler = ExternalScalerServicer(self.store, metrics=self.metrics,
                                            allow_cross_namespace=cfg.keda_allow_cross_namespace,
                                            allowed_client_names=cfg.keda_allowed_client_names if
                                            cfg.keda_client_ca_file else None)
            # Requests parsed by our code: a malformed one is INVALID_ARGUMENT, not grpcio's UNKNOWN.
            grpc_decode.add_servicer(server, scaler, KEDA_SERVICE, on_malformed=scaler.malformed)
            host, port = split_address(cfg.keda_address, "--keda-address")
            bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if cfg.keda_insecure:
                self.keda_port = server.add_insecure_port(bind)
            else:
                assert cfg.keda_tls_cert_file and cfg.keda_tls_private_key_file
                tls = ServerTLS(cert_file=cfg.keda_tls_cert_file, key_file=cfg.keda_tls_private_key_file,
                                client_auth="mtls" if cfg.keda_client_ca_file else "none",
                                client_ca_file=cfg.keda_client_ca_file,
                                allowed_client_names=cfg.keda_allowed_client_names, flag_prefix="--keda")
                self.keda_port = server.add_secure_port(bind, tls.credentials())
            if not self.keda_port:
                raise InvalidInputError("--keda-address", f"cannot listen on {cfg.keda_address}")
            await server.start()
            self._grpc = server
            log.info("KEDA external scaler on %s (port %d, %s)", cfg.keda_address, self.keda_port,
                     "plaintext" if cfg.keda_insecure else "mTLS" if cfg.keda_client_ca_file else "TLS")

    async def _watch_auth(self) -> None:
        """Re-read the auth ConfigMap; a changed one (CA rotation, allowed names) applies to the next request and
        handshake. One that cannot be read or is invalid keeps the previous settings (logged, counted)."""
        assert self._auth_source is not None and self._authenticator is not None
        while True:
            await asyncio.sleep(self._auth_poll_s)
            try:
                new = await asyncio.to_thread(self._auth_source.load)
            except Exception as exc:  # unreadable or invalid: keep serving with what we have
                self.metrics.auth_config_reloads.labels("failed").inc()
                log.warning("cannot reload the auth ConfigMap (%s); keeping the previous CAs and settings", exc)
                continue
            if new == self._authenticator.config:
                continue
            self._authenticator.reconfigure(new)
            if self.tls is not None:
                self.tls.set_client_ca(new.trusted_ca_pem)
            self.metrics.auth_config_reloads.labels("applied").inc()
            log.info("auth ConfigMap changed: front-proxy and client CAs reloaded")

    async def _serve(self, app: web.Application, address: str, flag: str, ctx: ssl.SSLContext | None) -> int:
        sock = _bind(address, flag)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                               logger=RequestErrorLog(logging.getLogger("faro.adapter.http"), metrics=self.metrics))
        await runner.setup()
        self._runners.append(runner)
        site = web.SockSite(runner, sock, ssl_context=ctx)
        await site.start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

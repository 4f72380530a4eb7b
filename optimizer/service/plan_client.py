"""Client side of the plan gRPC API (``faro.v1.PlanService``): the one place flags become channel credentials.

Used by the adapter's ``PlanWatcher`` and by ``faro status``; the tests connect through it too. A command adds
the flags with ``add_arguments(parser)`` and builds ``PlanClientTLS`` with ``from_args(args)``; then
``tls.channel(address)`` (or ``tls.aio_channel``) opens a channel with the credentials, message-size limits and
keep-alive the server expects::

    tls = PlanClientTLS(ca_file=Path("ca.crt"), cert_file=Path("tls.crt"), key_file=Path("tls.key"))
    with tls.channel("faro-optimizer.faro-system.svc:50051") as channel:
        plan = plan_pb2_grpc.PlanServiceStub(channel).GetPlan(plan_pb2.GetPlanRequest(), timeout=10)

Files are read when a channel is made (a reconnect picks up rotated certificates) and the token file before
every call (projected ServiceAccount tokens rotate). See docs/security.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faro.optimizer.errors import InvalidInputError

if TYPE_CHECKING:  # grpc is imported where a channel is made: command parsers import this module
    import grpc

log = logging.getLogger(__name__)

MAX_RECEIVE_BYTES = 64 * 1024 * 1024  # a plan of ~300,000 Deployments; the server's send limit is the same
_TRUE = {"1", "true", "yes", "on"}


def _env(flag: str) -> str | None:
    return os.environ.get("FARO_" + flag.lstrip("-").replace("-", "_").upper())


@dataclass(frozen=True)
class PlanClientTLS:
    """How to reach the plan API: the CA that signed the optimizer's certificate (None: the system roots), a
    client certificate and key (``mtls`` servers), a bearer-token file (``token`` servers), a TLS name to expect
    when the address is not the certificate's (e.g. through ``kubectl port-forward``), or — local development
    only — plaintext."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    token_file: Path | None = None
    server_name: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise InvalidInputError("--optimizer-cert-file/--optimizer-key-file", "give both or neither")
        if self.insecure and (self.ca_file or self.cert_file or self.token_file or self.server_name):
            raise InvalidInputError("--optimizer-insecure", "plaintext takes no CA, certificate, token or server name")
        for flag, path in (("--optimizer-ca-file", self.ca_file), ("--optimizer-cert-file", self.cert_file),
                           ("--optimizer-key-file", self.key_file), ("--optimizer-token-file", self.token_file)):
            if path is not None:
                _read(flag, path)  # fail at start-up, naming the file

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials (files read now); None for plaintext."""
        import grpc

        if self.insecure:
            return None
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read("--optimizer-ca-file", self.ca_file) if self.ca_file else None,
            private_key=_read("--optimizer-key-file", self.key_file) if self.key_file else None,
            certificate_chain=_read("--optimizer-cert-file", self.cert_file) if self.cert_file else None,
        )
        if self.token_file is not None:
            token = grpc.metadata_call_credentials(_TokenFile(self.token_file), name="faro-token-file")
            creds = grpc.composite_channel_credentials(creds, token)
        return creds

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def channel(self, address: str) -> grpc.Channel:
        import grpc

        creds = self.credentials()
        if creds is None:
            return grpc.insecure_channel(address, options=self.options())
        return grpc.secure_channel(address, creds, options=self.options())

    def aio_channel(self, address: str) -> grpc.aio.Channel:
        import grpc

        creds = self.credentials()
        if creds is None:
            return grpc.aio.insecure_channel(address, options=self.options())
        return grpc.aio.secure_channel(address, creds, options=self.options())


class _TokenFile:
    """``authorization: Bearer <file contents>``, read before every call (a ``grpc.AuthMetadataPlugin``)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            token = self._path.read_text().strip()
        except OSError as exc:
            callback((), InvalidInputError(f"--optimizer-token-file {self._path}", f"cannot read: {exc}"))
            return
        callback((("authorization", f"Bearer {token}"),), None)


def _read(flag: str, path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{flag} {path}", f"cannot read: {exc.strerror or exc}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The client flags (each also read from ``FARO_<FLAG>``, e.g. ``FARO_OPTIMIZER_CA_FILE``)."""
    group = parser.add_argument_group("plan API client (TLS to the optimizer; see docs/security.md)")

    def opt(flag: str, help_text: str, **kw: Any) -> None:
        env = "FARO_" + flag.lstrip("-").replace("-", "_").upper()
        group.add_argument(flag, default=_env(flag), help=f"{help_text} (env {env})", **kw)

    opt("--optimizer-ca-file", "CA that signed the optimizer's certificate (default: the system roots)",
        type=Path, metavar="PATH")
    opt("--optimizer-cert-file", "client certificate for an mtls optimizer", type=Path, metavar="PATH")
    opt("--optimizer-key-file", "its key", type=Path, metavar="PATH")
    opt("--optimizer-token-file", "bearer token for a token-mode optimizer, read before every call "
        "(e.g. /var/run/secrets/kubernetes.io/serviceaccount/token)", type=Path, metavar="PATH")
    opt("--optimizer-server-name", "TLS name to expect when the address is not the certificate's "
        "(e.g. faro-optimizer.faro-system.svc through kubectl port-forward)", metavar="NAME")
    group.add_argument("--optimizer-insecure", action="store_true",
                       default=str(_env("--optimizer-insecure") or "").strip().lower() in _TRUE,
                       help="LOCAL DEVELOPMENT ONLY: plaintext to an optimizer started with --grpc-insecure "
                       "(env FARO_OPTIMIZER_INSECURE)")


def from_args(args: argparse.Namespace) -> PlanClientTLS:
    tls = PlanClientTLS(ca_file=args.optimizer_ca_file, cert_file=args.optimizer_cert_file,
                        key_file=args.optimizer_key_file, token_file=args.optimizer_token_file,
                        server_name=args.optimizer_server_name or None, insecure=bool(args.optimizer_insecure))
    if tls.insecure:
        banner = "!" * 100
        log.warning("%s\n--optimizer-insecure: plans travel in plaintext and the optimizer is not authenticated. "
                    "For local development only; never in a cluster.\n%s", banner, banner)
    return tls

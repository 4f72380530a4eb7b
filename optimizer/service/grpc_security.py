"""Who may call the plan gRPC API: TLS settings of the server and the per-call check.

Used by ``grpc_api.py`` (``PlanServer`` builds its port from ``ServerTLS``; ``PlanServicer`` asks ``CallGuard``
at the start of every call) and by ``faro optimizer`` (flags → ``ServerTLS``/``CallGuard``). Two ways in:

* ``mtls`` (default): the TLS handshake *requires* a client certificate that chains to ``client_ca_file``
  (the chart's CA); the certificate's CN must be in ``allowed_client_names`` (empty = any CN that CA signed).
  The caller is ``cert:<CN>``.
* ``token``: server-side TLS only; every call carries ``authorization: Bearer <token>``, which a TokenReview
  authenticates and a SubjectAccessReview authorises (``faro.optimizer.kube.auth``, the adapter's code) as
  ``get``/``watch`` on ``plans.faro.dev`` or ``create`` on ``solves.faro.dev`` at the cluster scope. The caller
  is the user name.

``insecure`` (``--grpc-insecure``, local development only) serves plaintext and checks nothing; the caller is
the peer address. The serving certificate, key and client CA are re-read when their files change (kubelet
rotates mounted Secrets), so a rotation needs no restart. ``grpc.health.v1`` is not guarded (like ``/healthz``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
from faro.optimizer.errors import InvalidInputError, TransientError
from faro.optimizer.kube.auth import AccessAuthorizer, Attributes, TokenAuthenticator, describe

log = logging.getLogger(__name__)

ClientAuth = Literal["mtls", "token"]
CLIENT_AUTH_MODES: tuple[str, ...] = ("mtls", "token")

API_GROUP = "faro.dev"
API_VERSION = "v1"
# What each method is, for SubjectAccessReview (token mode): verb and resource in API group faro.dev.
METHOD_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "GetPlan": ("get", "plans"),
    "WatchPlans": ("watch", "plans"),
    "Solve": ("create", "solves"),
}


@dataclass(frozen=True)
class ServerTLS:
    """TLS of a gRPC port (paths are PEM files; see the module docstring for the modes). Also the adapter's
    KEDA port (``flag_prefix="--keda"``, ``client_auth`` ``mtls`` with a client CA, or ``none``); error
    messages name the flags of the port's own command."""

    cert_file: Path
    key_file: Path
    client_auth: ClientAuth | Literal["none"] = "mtls"
    client_ca_file: Path | None = None
    allowed_client_names: tuple[str, ...] = ()
    flag_prefix: str = "--grpc"

    def __post_init__(self) -> None:
        f = self.flag_prefix
        if self.client_auth not in (*CLIENT_AUTH_MODES, "none"):
            raise InvalidInputError(f"{f}-client-auth", f"must be mtls or token, got {self.client_auth!r}")
        if self.client_auth == "mtls" and self.client_ca_file is None:
            raise InvalidInputError(f"{f}-client-ca-file", f"is required with {f}-client-auth mtls (the CA that "
                                    "signs the clients' certificates)")
        if self.client_auth != "mtls" and self.allowed_client_names:
            raise InvalidInputError(f"{f}-allowed-client-names", "applies only to client certificates (mtls)")
        self._read()  # fail at start-up, naming the file, rather than at the first handshake

    def _files(self) -> tuple[tuple[str, Path], ...]:
        f = self.flag_prefix
        files = [(f"{f}-tls-cert-file", self.cert_file), (f"{f}-tls-private-key-file", self.key_file)]
        if self.client_auth == "mtls" and self.client_ca_file is not None:
            files.append((f"{f}-client-ca-file", self.client_ca_file))
        return tuple(files)

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        contents = []
        for flag, path in self._files():
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise InvalidInputError(f"{flag} {path}", f"cannot read: {exc.strerror or exc}") from exc
            if b"-----BEGIN" not in data:
                raise InvalidInputError(f"{flag} {path}", "is not PEM")
            contents.append(data)
        cert, key = contents[0], contents[1]
        return cert, key, (contents[2] if len(contents) > 2 else None)

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        return files_stamp(path for _, path in self._files())

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self._read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that re-read the files when they change (checked at every new connection)."""
        stamp = [self.stamp()]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            now = self.stamp()
            if now == stamp[0]:
                return None
            try:
                config = self.configuration()
            except InvalidInputError as exc:  # half-written rotation: keep serving the previous one
                log.warning("TLS files changed but cannot be loaded (%s); keeping the previous ones", exc)
                return None
            stamp[0] = now
            log.info("TLS certificate/CA of %s reloaded", self.cert_file)
            return config

        return grpc.dynamic_ssl_server_credentials(self.configuration(), fetch,
                                                   require_client_authentication=self.client_auth == "mtls")


def files_stamp(paths: Iterable[Path]) -> tuple[tuple[int, int, int], ...]:
    """(mtime, size, inode) of every file, (0, 0, 0) for a missing one: a change means a rotation (kubelet
    swaps a mounted Secret's files by a symlink rename). Also used by the adapter's HTTPS port."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class CallGuard:
    """The per-call check: returns the caller's identity or aborts the call (UNAUTHENTICATED, PERMISSION_DENIED,
    UNAVAILABLE when a review could not be made)."""

    def __init__(self, *, mode: ClientAuth | Literal["insecure"], allowed_client_names: tuple[str, ...] = (),
                 tokens: TokenAuthenticator | None = None, access: AccessAuthorizer | None = None,
                 on_refused: Callable[[str, grpc.StatusCode], None] | None = None) -> None:
        if mode == "token" and (tokens is None or access is None):
            raise ValueError("token mode needs a TokenAuthenticator and an AccessAuthorizer")
        self.mode = mode
        self._allowed = frozenset(allowed_client_names)
        self._tokens = tokens
        self._access = access
        self._on_refused = on_refused

    def report_to(self, telemetry: Any) -> None:
        """Count refusals and review calls in the optimizer's ``Telemetry``."""
        self._on_refused = lambda method, code: telemetry.grpc_refused.labels(method, code.name).inc()
        for reviews in (self._tokens, self._access):
            if reviews is not None:
                reviews.on_review = lambda kind, outcome: telemetry.auth_reviews.labels(kind, outcome).inc()

    def caller(self, context: grpc.ServicerContext, method: str) -> str:
        if self.mode == "insecure":
            return f"peer:{_peer_host(context.peer())}"
        if self.mode == "mtls":
            return self._certificate_caller(context, method)
        return self._token_caller(context, method)

    def _refuse(self, context: grpc.ServicerContext, method: str, code: grpc.StatusCode, message: str) -> None:
        if self._on_refused is not None:
            self._on_refused(method, code)
        log.info("plan API %s refused (%s): %s", method, code.name, message)
        context.abort(code, message)

    def _certificate_caller(self, context: grpc.ServicerContext, method: str) -> str:
        # The handshake required and verified the certificate; only its name is left to check.
        names = [v.decode(errors="replace") for v in context.auth_context().get("x509_common_name", [])]
        if not names:
            self._refuse(context, method, grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        name = names[0]
        if self._allowed and name not in self._allowed:
            self._refuse(context, method, grpc.StatusCode.PERMISSION_DENIED,
                         f"client certificate CN {name!r} is not in --grpc-allowed-client-names")
        return f"cert:{name}"

    def _token_caller(self, context: grpc.ServicerContext, method: str) -> str:
        assert self._tokens is not None and self._access is not None
        values = [v for k, v in context.invocation_metadata() if k == "authorization"]
        scheme, _, token = (values[0] if len(values) == 1 else "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._refuse(context, method, grpc.StatusCode.UNAUTHENTICATED,
                         "send exactly one `authorization: Bearer <token>` metadata entry")
        try:
            user = self._tokens.authenticate(token)
            if user is None:
                self._refuse(context, method, grpc.StatusCode.UNAUTHENTICATED,
                             "the bearer token was not accepted by TokenReview")
            assert user is not None
            attrs = method_attributes(method)
            if not self._access.allowed(user, attrs):
                self._refuse(context, method, grpc.StatusCode.PERMISSION_DENIED, describe(user, attrs))
        except TransientError as exc:
            self._refuse(context, method, grpc.StatusCode.UNAVAILABLE, str(exc))
        return user.name


def method_attributes(method: str) -> Attributes:
    """The SubjectAccessReview attributes of a PlanService method (cluster-scoped, API group faro.dev)."""
    verb, resource = METHOD_ATTRIBUTES[method]
    return Attributes(verb=verb, api_group=API_GROUP, version=API_VERSION, resource=resource, is_resource=True)


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` → ``127.0.0.1`` (the port changes per connection; the host is the caller)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0] or rest
    return peer

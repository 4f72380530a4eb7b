"""Delegated authentication and authorisation, as an aggregated API server must do it.

Called by ``adapter/server.py`` for every request except the health endpoints. Mirrors what
``k8s.io/apiserver``'s delegating authenticator/authorizer do (and the ConfigMap
``kube-system/extension-apiserver-authentication`` they read):

1. **Front proxy** (request header): when the TLS client certificate was issued by the
   ``requestheader-client-ca-file`` CA and its CN is in ``requestheader-allowed-names`` (empty = any), the user is
   the first non-empty ``X-Remote-User`` (configurable header names), groups from ``X-Remote-Group`` and extras
   from ``X-Remote-Extra-<key>``. The headers are ignored from anyone else.
2. **Client certificate**: a certificate issued by ``client-ca-file`` names the user (CN) and groups (O).
3. **Bearer token**: a ``TokenReview`` decides (answers cached ``token_ttl_s``).
4. Otherwise 401. Then a ``SubjectAccessReview`` authorises the request (answers cached ``allowed_ttl_s`` /
   ``denied_ttl_s``); members of ``system:masters`` are always allowed, as in the generic API server.

TLS: the server *requests* a client certificate but does not require one; the handshake verifies any presented
certificate against the union of both CAs, and ``Authenticator`` then checks which CA issued it (with
``cryptography``) so a client-CA certificate can never assert front-proxy headers.

TokenReview and SubjectAccessReview (and their caches) are ``faro.optimizer.kube.auth``'s, shared with the
optimizer's plan API; a cache hit is answered on the event loop, a miss runs the blocking review in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from faro.adapter.errors import ForbiddenError, UnauthenticatedError
from faro.adapter.metrics import AdapterMetrics
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.kube.auth import (
    AccessAuthorizer,
    AccessReviewer,
    Attributes,
    KubeReviewer,
    TokenAuthenticator,
    TokenReviewer,
    UserInfo,
    describe,
)

__all__ = ["Attributes", "Authenticator", "Authorizer", "KubeReviewer", "UserInfo"]

log = logging.getLogger("faro.adapter.auth")

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"
EXTERNAL_METRICS_GROUP = "external.metrics.k8s.io"
EXTERNAL_METRICS_VERSION = "v1beta1"


def request_attributes(method: str, path: str, *, route: Mapping[str, str] | None = None) -> Attributes:
    """Attributes of an HTTP request the way ``k8s.io/apiserver`` RequestInfo derives them (GET only here).

    ``route`` is what the router matched for the metric route (``namespace``, ``metric``): the attributes are
    then built from exactly what the handler will serve, not from a second parse of the path (which would
    differ for a percent-encoded ``/``; the server also refuses those outright).
    """
    verb = "get" if method in ("GET", "HEAD") else method.lower()
    if route is not None and "namespace" in route and "metric" in route:
        return Attributes(verb="list" if verb == "get" else verb, namespace=route["namespace"],
                          api_group=EXTERNAL_METRICS_GROUP, version=EXTERNAL_METRICS_VERSION,
                          resource=route["metric"], is_resource=True)
    parts = [p for p in path.split("/") if p]
    if (
        len(parts) >= 6
        and parts[:3] == ["apis", EXTERNAL_METRICS_GROUP, EXTERNAL_METRICS_VERSION]
        and parts[3] == "namespaces"
    ):
        name = parts[6] if len(parts) > 6 else ""
        if verb == "get" and not name:
            verb = "list"
        return Attributes(
            verb=verb,
            namespace=parts[4],
            api_group=EXTERNAL_METRICS_GROUP,
            version=EXTERNAL_METRICS_VERSION,
            resource=parts[5],
            name=name,
            is_resource=True,
        )
    return Attributes(verb=verb, path=path)


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The front-proxy settings of ``extension-apiserver-authentication``."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)


@dataclass(frozen=True)
class AuthConfig:
    requestheader: RequestHeaderConfig | None = None
    client_ca_pem: str | None = None

    @property
    def trusted_ca_pem(self) -> str:
        """Every CA a client certificate may chain to (loaded into the TLS context)."""
        parts = [self.requestheader.client_ca_pem if self.requestheader else "", self.client_ca_pem or ""]
        return "\n".join(p.strip() for p in parts if p.strip()) + "\n"


def _json_list(data: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"ConfigMap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME} key {key}"
        raise InvalidInputError(where, str(exc)) from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(
            f"ConfigMap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME} key {key}", "must be a JSON list of strings"
        )
    return tuple(value) or default


def auth_config_from_configmap(data: Mapping[str, str], *, requestheader_ca_pem: str | None = None) -> AuthConfig:
    """Build the config from the ConfigMap's ``data`` (``requestheader_ca_pem`` overrides the CA in it)."""
    ca = requestheader_ca_pem or data.get("requestheader-client-ca-file") or ""
    requestheader = None
    if ca.strip():
        _load_certs(ca, "requestheader-client-ca-file")
        requestheader = RequestHeaderConfig(
            client_ca_pem=ca,
            allowed_names=_json_list(data, "requestheader-allowed-names", ()),
            username_headers=_json_list(data, "requestheader-username-headers", ("X-Remote-User",)),
            group_headers=_json_list(data, "requestheader-group-headers", ("X-Remote-Group",)),
            extra_headers_prefixes=_json_list(data, "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
        )
    client_ca = data.get("client-ca-file") or None
    if client_ca:
        _load_certs(client_ca, "client-ca-file")
    if requestheader is None and client_ca is None:
        raise InvalidInputError(
            f"ConfigMap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}",
            "has neither requestheader-client-ca-file nor client-ca-file, so the adapter could not authenticate "
            "kube-apiserver's aggregation layer (the HPA's path) nor any client certificate; check that "
            "kube-apiserver runs with --requestheader-client-ca-file, or pass --requestheader-client-ca-file "
            "(--disable-auth for local development only)",
        )
    return AuthConfig(requestheader=requestheader, client_ca_pem=client_ca)


class AuthConfigSource:
    """Reads ``kube-system/extension-apiserver-authentication`` into an ``AuthConfig`` (the CLI's
    ``--requestheader-client-ca-file`` overrides the front-proxy CA); the adapter calls ``load`` again every
    few seconds so that a CA rotation applies without a restart. ``load`` blocks (the Kubernetes client)."""

    def __init__(self, read: Callable[[], Mapping[str, str]], *, requestheader_ca_pem: str | None = None) -> None:
        self._read = read
        self._override = requestheader_ca_pem

    def load(self) -> AuthConfig:
        return auth_config_from_configmap(self._read(), requestheader_ca_pem=self._override)


def _load_certs(pem: str, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise InvalidInputError(where, f"not a PEM certificate bundle: {exc}") from exc
    return certs


@dataclass
class Authenticator:
    """Who is asking: front-proxy headers, client certificate or bearer token (see the module docstring)."""

    config: AuthConfig
    token_reviewer: TokenReviewer | None
    clock: Callable[[], float]
    metrics: AdapterMetrics | None = None
    token_ttl_s: float = 10.0
    _front_proxy_cas: list[x509.Certificate] = field(init=False)
    _client_cas: list[x509.Certificate] = field(init=False)
    _issuer_cache: dict[bytes, tuple[str, str, tuple[str, ...]]] = field(init=False, default_factory=dict)
    _tokens: TokenAuthenticator | None = field(init=False)

    def __post_init__(self) -> None:
        self.reconfigure(self.config)
        self._tokens = None
        if self.token_reviewer is not None:
            self._tokens = TokenAuthenticator(self.token_reviewer, clock=self.clock, ttl_s=self.token_ttl_s,
                                              on_review=self._count)

    def reconfigure(self, config: AuthConfig) -> None:
        """Use ``config`` from the next request on (a rotated CA in the auth ConfigMap)."""
        rh = config.requestheader
        front_proxy = _load_certs(rh.client_ca_pem, "requestheader-client-ca-file") if rh else []
        client = _load_certs(config.client_ca_pem, "client-ca-file") if config.client_ca_pem else []
        self._front_proxy_cas, self._client_cas = front_proxy, client
        self._issuer_cache = {}
        self.config = config

    def _classify(self, der: bytes) -> tuple[str, str, tuple[str, ...]]:
        """("front-proxy" | "client" | "", CN, O values) of a peer certificate the TLS handshake verified."""
        hit = self._issuer_cache.get(der)
        if hit is not None:
            return hit
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return ("", "", ())
        cn = ",".join(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
        orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        kind = ""
        for label, cas in (("front-proxy", self._front_proxy_cas), ("client", self._client_cas)):
            if any(_issued_by(cert, ca) for ca in cas):
                kind = label
                break
        result = (kind, cn, orgs)
        if len(self._issuer_cache) > 1024:
            self._issuer_cache.clear()
        self._issuer_cache[der] = result
        return result

    async def authenticate(self, *, peer_cert_der: bytes | None, headers: Mapping[str, str]) -> UserInfo:
        """The user, or UnauthenticatedError (401). ``headers`` must be case-insensitive (aiohttp's are)."""
        rh = self.config.requestheader
        if peer_cert_der:
            kind, cn, orgs = self._classify(peer_cert_der)
            if kind == "front-proxy" and rh is not None:
                if rh.allowed_names and cn not in rh.allowed_names:
                    raise UnauthenticatedError(
                        f"front-proxy client certificate CN {cn!r} is not in requestheader-allowed-names"
                    )
                user = _user_from_headers(rh, headers)
                if user is not None:
                    return user
            elif kind == "client" and cn:
                return UserInfo(name=cn, groups=(*orgs, "system:authenticated"))
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and self._tokens is not None:
            hit, user = self._tokens.cached(token)
            if not hit:
                user = await asyncio.to_thread(self._tokens.authenticate, token)  # TransientError: 503
            if user is not None:
                return user
            raise UnauthenticatedError("the bearer token was not accepted by TokenReview")
        raise UnauthenticatedError("no valid front-proxy certificate, client certificate or bearer token")

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.auth_reviews.labels(kind, outcome).inc()


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported key types
        return False
    return True


def _user_from_headers(rh: RequestHeaderConfig, headers: Mapping[str, str]) -> UserInfo | None:
    getall = getattr(headers, "getall", None)

    def values(name: str) -> list[str]:
        if getall is not None:
            return list(getall(name, []))
        v = headers.get(name)
        return [v] if v is not None else []

    name = next((v.strip() for h in rh.username_headers for v in values(h) if v.strip()), "")
    if not name:
        return None
    groups = tuple(g.strip() for h in rh.group_headers for v in values(h) for g in [v] if g.strip())
    if "system:authenticated" not in groups:  # as kube-apiserver's authenticator adds it to every authenticated user
        groups = (*groups, "system:authenticated")
    extra: dict[str, list[str]] = {}
    for prefix in rh.extra_headers_prefixes:
        low = prefix.lower()
        for key in headers:
            if key.lower().startswith(low) and len(key) > len(prefix):
                extra.setdefault(key[len(prefix) :].lower(), []).extend(values(key))
    return UserInfo(
        name=name, groups=groups, extra=tuple(sorted((k, tuple(dict.fromkeys(v))) for k, v in extra.items()))
    )


@dataclass
class Authorizer:
    """SubjectAccessReview per (user, attributes), cached; ``system:masters`` always allowed."""

    reviewer: AccessReviewer
    clock: Callable[[], float]
    metrics: AdapterMetrics | None = None
    allowed_ttl_s: float = 10.0
    denied_ttl_s: float = 10.0
    _access: AccessAuthorizer = field(init=False)

    def __post_init__(self) -> None:
        self._access = AccessAuthorizer(self.reviewer, clock=self.clock, allowed_ttl_s=self.allowed_ttl_s,
                                        denied_ttl_s=self.denied_ttl_s, on_review=self._count)

    async def authorize(self, user: UserInfo, attrs: Attributes) -> None:
        """Return if allowed; raise ForbiddenError (403) or TransientError when the review itself failed."""
        hit, ok = self._access.cached(user, attrs)
        if not hit:
            ok = await asyncio.to_thread(self._access.allowed, user, attrs)
        if not ok:
            raise ForbiddenError(describe(user, attrs))

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.auth_reviews.labels(kind, outcome).inc()


def load_auth_configmap(api_client: Any) -> dict[str, str]:
    """``data`` of ``kube-system/extension-apiserver-authentication`` (InvalidInputError when unreadable)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        cm = client.CoreV1Api(api_client).read_namespaced_config_map(AUTH_CONFIGMAP_NAME, AUTH_CONFIGMAP_NAMESPACE)
    except ApiException as exc:
        raise InvalidInputError(
            f"ConfigMap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}",
            f"cannot read it ({exc.status} {exc.reason}); bind the adapter's ServiceAccount to the Role "
            "extension-apiserver-authentication-reader, or use --disable-auth for local development",
        ) from exc
    return dict(cm.data or {})

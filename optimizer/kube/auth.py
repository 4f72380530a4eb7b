"""Delegated authentication and authorisation against the Kubernetes API: TokenReview and SubjectAccessReview.

The one implementation shared by the adapter's HTTPS API (``faro.adapter.auth``, which adds the front-proxy and
client-certificate paths of an aggregated API server) and the optimizer's plan gRPC API
(``faro.optimizer.service.grpc_security``, bearer tokens in ``token`` mode). Mirrors ``k8s.io/apiserver``'s
delegating authenticator and authorizer: answers are cached (allowed, denied and token answers for 10 s by
default), concurrent identical reviews share one call, and members of ``system:masters`` are always allowed.

The Kubernetes calls block; ``TokenAuthenticator.authenticate`` and ``AccessAuthorizer.allowed`` run them on the
calling thread (the optimizer's gRPC worker threads; the adapter's asyncio code first asks ``cached`` and only
on a miss moves to a thread). A failed review raises ``TransientError``; a rejected one is an answer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from faro.optimizer.errors import TransientError

log = logging.getLogger("faro.optimizer.kube.auth")

ALWAYS_ALLOWED_GROUPS = ("system:masters",)


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # sorted (key, values) pairs: hashable for caches


@dataclass(frozen=True)
class Attributes:
    """What a request does, as a SubjectAccessReview sees it (resource or non-resource request)."""

    verb: str
    path: str = ""
    namespace: str = ""
    api_group: str = ""
    version: str = ""
    resource: str = ""
    name: str = ""
    is_resource: bool = False


class TokenReviewer(Protocol):
    def review_token(self, token: str) -> UserInfo | None:
        """The user a bearer token belongs to, None when the API server says it is not authenticated."""
        ...


class AccessReviewer(Protocol):
    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        """Whether ``user`` may do ``attrs`` (a SubjectAccessReview)."""
        ...


ReviewCounter = Callable[[str, str], None]
"""Called with (kind, outcome) after every review call: ("tokenreview", "authenticated" | "rejected" | "error"),
("subjectaccessreview", "allowed" | "denied" | "error")."""


class ReviewCache:
    """An expiring map with single-flight loading, safe across threads (clock injected, no module state)."""

    _MISS = object()

    def __init__(self, *, clock: Callable[[], float], max_entries: int = 4096) -> None:
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, threading.Event] = {}

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) for an unexpired entry, else (False, None); never blocks on a load."""
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] > self._clock():
                return True, hit[1]
        return False, None

    def get(self, key: Hashable, load: Callable[[], tuple[Any, float]]) -> Any:
        """The cached value, or ``load()``'s (value, ttl_s) — one load at a time per key; a failed load is
        not cached and the waiting callers each try again."""
        while True:
            with self._lock:
                hit = self._data.get(key)
                now = self._clock()
                if hit is not None and hit[0] > now:
                    return hit[1]
                pending = self._inflight.get(key)
                if pending is None:
                    done = self._inflight[key] = threading.Event()
                    break
            pending.wait()
        try:
            value, ttl_s = load()
            with self._lock:
                if len(self._data) >= self._max:
                    self._data = {k: v for k, v in self._data.items() if v[0] > now}
                    if len(self._data) >= self._max:
                        self._data.clear()
                self._data[key] = (self._clock() + ttl_s, value)
            return value
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            done.set()


class TokenAuthenticator:
    """Bearer token → user through TokenReview, cached ``ttl_s`` by the token's SHA-256 (never the token)."""

    def __init__(self, reviewer: TokenReviewer, *, clock: Callable[[], float], ttl_s: float = 10.0,
                 on_review: ReviewCounter | None = None) -> None:
        self._reviewer = reviewer
        self._ttl_s = ttl_s
        self._cache = ReviewCache(clock=clock)
        self.on_review = on_review

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def cached(self, token: str) -> tuple[bool, UserInfo | None]:
        return self._cache.peek(self._key(token))

    def authenticate(self, token: str) -> UserInfo | None:
        """The user, None when TokenReview rejects the token; TransientError when the review failed."""
        return self._cache.get(self._key(token), lambda: self._review(token))

    def _review(self, token: str) -> tuple[UserInfo | None, float]:
        try:
            user = self._reviewer.review_token(token)
        except Exception as exc:
            self._count("error")
            log.warning("TokenReview failed: %s", exc)
            raise TransientError(f"TokenReview failed: {exc}") from exc
        self._count("authenticated" if user else "rejected")
        return user, self._ttl_s

    def _count(self, outcome: str) -> None:
        if self.on_review is not None:
            self.on_review("tokenreview", outcome)


class AccessAuthorizer:
    """(user, attributes) → allowed through SubjectAccessReview, cached; ``always_allow_groups`` skip the review."""

    def __init__(self, reviewer: AccessReviewer, *, clock: Callable[[], float], allowed_ttl_s: float = 10.0,
                 denied_ttl_s: float = 10.0, always_allow_groups: tuple[str, ...] = ALWAYS_ALLOWED_GROUPS,
                 on_review: ReviewCounter | None = None) -> None:
        self._reviewer = reviewer
        self._allowed_ttl_s = allowed_ttl_s
        self._denied_ttl_s = denied_ttl_s
        self._always = always_allow_groups
        self._cache = ReviewCache(clock=clock)
        self.on_review = on_review

    def cached(self, user: UserInfo, attrs: Attributes) -> tuple[bool, bool]:
        if any(g in self._always for g in user.groups):
            return True, True
        hit, value = self._cache.peek((user, attrs))
        return hit, bool(value)

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        """Whether the review allows it; TransientError when the review itself failed."""
        if any(g in self._always for g in user.groups):
            return True
        return bool(self._cache.get((user, attrs), lambda: self._review(user, attrs)))

    def _review(self, user: UserInfo, attrs: Attributes) -> tuple[bool, float]:
        try:
            ok = self._reviewer.allowed(user, attrs)
        except Exception as exc:
            self._count("error")
            log.warning("SubjectAccessReview failed: %s", exc)
            raise TransientError(f"SubjectAccessReview failed: {exc}") from exc
        self._count("allowed" if ok else "denied")
        return ok, self._allowed_ttl_s if ok else self._denied_ttl_s

    def _count(self, outcome: str) -> None:
        if self.on_review is not None:
            self.on_review("subjectaccessreview", outcome)


def describe(user: UserInfo, attrs: Attributes) -> str:
    """The API server's wording of a denial: ``User "eve" cannot list resource "x" in API group "g" ...``."""
    if attrs.is_resource:
        where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
        what = f'{attrs.verb} resource "{attrs.resource}" in API group "{attrs.api_group}"{where}'
    else:
        what = f'{attrs.verb} path "{attrs.path}"'
    return f'User "{user.name}" cannot {what}'


class KubeReviewer:
    """``TokenReviewer`` and ``AccessReviewer`` over the official ``kubernetes`` client (blocking calls)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._client = client
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)

    def review_token(self, token: str) -> UserInfo | None:
        c = self._client
        review = self._authn.create_token_review(c.V1TokenReview(spec=c.V1TokenReviewSpec(token=token)))
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        u = status.user
        extra = tuple(sorted((k, tuple(v or ())) for k, v in (u.extra or {}).items()))
        return UserInfo(name=u.username or "", groups=tuple(u.groups or ()), uid=u.uid or "", extra=extra)

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        c = self._client
        spec = c.V1SubjectAccessReviewSpec(
            user=user.name, groups=list(user.groups), uid=user.uid or None, extra={k: list(v) for k, v in user.extra}
        )
        if attrs.is_resource:
            spec.resource_attributes = c.V1ResourceAttributes(
                verb=attrs.verb,
                group=attrs.api_group,
                version=attrs.version,
                resource=attrs.resource,
                namespace=attrs.namespace,
                name=attrs.name or None,
            )
        else:
            spec.non_resource_attributes = c.V1NonResourceAttributes(path=attrs.path, verb=attrs.verb)
        review = self._authz.create_subject_access_review(c.V1SubjectAccessReview(spec=spec))
        return bool(review.status and review.status.allowed)

"""A small Kubernetes API server for tests: the real REST + watch protocol over HTTP on 127.0.0.1.

No kube-apiserver can run on the development machines, so the optimizer (``faro.optimizer.kube``,
``faro.optimizer.service``) and the adapter are tested against this server through the official
``kubernetes`` client and a generated kubeconfig (``kubeconfig()``). It serves:

* list (``resourceVersion`` of the list, ``labelSelector`` with ``=``, ``==``, ``!=``, ``key``,
  ``!key``), get, create (``generateName`` too), replace (PUT, with optimistic concurrency on
  ``metadata.resourceVersion``), patch (JSON merge patch, strategic merge patch — lists of named
  items merged by ``name`` — and JSON patch), delete, the ``status`` subresource;
* watch streams (chunked JSON lines) with ADDED/MODIFIED/DELETED events replayed from the given
  ``resourceVersion``, BOOKMARK events when ``allowWatchBookmarks=true``, ``timeoutSeconds``, and an
  ERROR event carrying a 410 ``Expired`` Status for a resourceVersion older than the last
  ``compact()``; ``drop_watches()`` cuts every open watch connection;
* authentication and RBAC as kube-apiserver does them (``rbac.py``): a bearer token maps to a user —
  ``ADMIN_TOKEN`` (``test-token``, the default of ``kubeconfig()``) to a ``system:masters`` member,
  ``service_account_token()`` to a ServiceAccount, ``user_token()`` / ``token_users`` to anyone; an
  unknown token is a 401 ``Unauthorized`` Status, no token is ``system:anonymous``. Every request is
  authorised against the Roles, ClusterRoles and bindings stored here (kube's bootstrap roles at
  start, a rendered chart through ``load()``), and one not granted gets kube's 403 ``Forbidden`` Status
  and lands in ``denials``. TokenReview and SubjectAccessReview are answered from the same tokens and
  RBAC. The ConfigMap ``kube-system/extension-apiserver-authentication`` exists when a test creates it.

Every object it stores is validated against the real OpenAPI schema with ``kubernetes-validate``
(strict); an invalid object is rejected with a 422 ``Invalid`` Status, as kube-apiserver would, and
recorded in ``validation_errors``; ``check()`` (called by every fixture at teardown) fails when any
object was invalid or any request was denied. Every request is recorded in ``audit`` as
``AuditEntry(verb, api_group, resource, namespace, name, subresource, user, allowed)`` and, when env
``FARO_KUBEAPI_AUDIT_FILE`` is set, appended to that file as one JSON line.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

from .rbac import ANONYMOUS, BOOTSTRAP, UNAUTHORIZED_STATUS, Attributes, RBACAuthorizer, User, forbidden_status
from .rbac import service_account_user as _sa_user

SCHEMA_VERSION = "1.33"
ADMIN_TOKEN = "test-token"
ADMIN = User("test-admin", ("system:masters", "system:authenticated"))


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    create_only: bool = False  # reviews: answered, never stored

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    ResourceType("apps", "v1", "deployments", "Deployment"),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet"),
    ResourceType("", "v1", "pods", "Pod"),
    ResourceType("", "v1", "resourcequotas", "ResourceQuota"),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "events", "Event"),
    ResourceType("events.k8s.io", "v1", "events", "Event"),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False, create_only=True),
    ResourceType(
        "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False, create_only=True
    ),
)


@dataclass(frozen=True)
class AuditEntry:
    verb: str  # get list watch create update patch delete
    api_group: str
    resource: str
    namespace: str
    name: str
    subresource: str
    user: str = ""
    allowed: bool = True


@dataclass(frozen=True)
class _Change:
    rv: int
    rtype: ResourceType
    kind: str  # ADDED MODIFIED DELETED
    obj: dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; ``strategic`` also merges lists of dicts by their ``name`` key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif (strategic and isinstance(value, list) and isinstance(result.get(key), list)
              and all(isinstance(v, dict) and "name" in v for v in value + result[key])):
            merged = {item["name"]: item for item in result[key]}
            for item in value:
                merged[item["name"]] = merge_patch(merged.get(item["name"], {}), item, strategic=True)
            result[key] = list(merged.values())
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/replace/remove/test (enough for what clients send to these resources)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise ApiError(422, "Invalid", f"test failed at {op['path']}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {kind!r}")
    return doc


class KubeApiServer:
    """The store, the watch fan-out and the HTTP front end. Use as a context manager or start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", bookmark_interval_s: float = 1.0,
                 schema_version: str = SCHEMA_VERSION, audit_file: str | None = None) -> None:
        self.bookmark_interval_s = bookmark_interval_s
        self.schema_version = schema_version
        self.audit: list[AuditEntry] = []
        self.validation_errors: list[str] = []
        self.token_users: dict[str, dict[str, Any]] = {}  # bearer token -> TokenReview status.user
        self.denials: list[tuple[AuditEntry, str]] = []  # (request, Status message) of every 403
        self._tokens: dict[str, User] = {ADMIN_TOKEN: ADMIN}
        self.rbac = RBACAuthorizer(self._rbac_get, self._rbac_list)
        self.fail_requests: Callable[[AuditEntry], int | None] = lambda entry: None  # inject HTTP errors
        self._audit_file = audit_file if audit_file is not None else os.environ.get("FARO_KUBEAPI_AUDIT_FILE")
        self._lock = threading.Condition()
        self._rv = 100
        self._compacted_rv = 0
        self._store: dict[ResourceType, dict[tuple[str, str], dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._history: list[_Change] = []
        self._watch_epoch = 0  # bumped by drop_watches()
        self._closed = False
        self._httpd = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.load(BOOTSTRAP)

    # ---------------------------------------------------------------- lifecycle and test controls
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kubeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: Path, *, token: str = ADMIN_TOKEN) -> Path:
        """Write a kubeconfig pointing at this server (default: the admin token); load it with ``kubernetes.config``."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def check(self) -> None:
        """Fail when an object failed its schema or a request was denied (fixtures call it at teardown;
        a test that provokes denials on purpose asserts them and clears ``denials``)."""
        assert self.validation_errors == [], f"objects failed the OpenAPI schema: {self.validation_errors}"
        assert self.denials == [], "requests RBAC does not allow:\n" + "\n".join(m for _, m in self.denials)

    # ---------------------------------------------------------------- identities and RBAC
    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token of ServiceAccount ``namespace/name`` (created here if it does not exist)."""
        rtype = self._rtype("", "serviceaccounts")
        with self._lock:
            if (namespace, name) not in self._store[rtype]:
                self.create(rtype, namespace, {"metadata": {"name": name, "namespace": namespace}})
        return self.user_token(_sa_user(namespace, name))

    def user_token(self, user: User) -> str:
        """A bearer token that authenticates as ``user``."""
        token = f"{user.name}:{uuid.uuid4().hex}"
        self._tokens[token] = user
        return token

    def authenticate(self, token: str | None) -> User | None:
        """The user of a bearer token; ``ANONYMOUS`` without one; None for a token nobody issued."""
        if token is None:
            return ANONYMOUS
        if token in self.token_users:
            info = self.token_users[token]
            return User(info.get("username", ""), tuple(info.get("groups") or ()), info.get("uid", ""))
        return self._tokens.get(token)

    def load(self, objects: Any) -> list[dict[str, Any]]:
        """Create every object of a kind this server serves (a rendered chart, the bootstrap roles);
        returns the objects of other kinds (Services, APIServices ...), which it does not store."""
        skipped = []
        for obj in objects:
            group, _, _version = str(obj.get("apiVersion", "")).rpartition("/")
            rtype = next((r for r in RESOURCES if r.group == group and r.kind == obj.get("kind")
                          and not r.create_only), None)
            if rtype is None:
                skipped.append(obj)
                continue
            self.create(rtype, (obj.get("metadata") or {}).get("namespace", ""), obj)
        return skipped

    def _rbac_get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        rtype = next(r for r in RESOURCES if r.group == "rbac.authorization.k8s.io" and r.kind == kind)
        with self._lock:
            return self._store[rtype].get((namespace, name))

    def _rbac_list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        rtype = next(r for r in RESOURCES if r.group == "rbac.authorization.k8s.io" and r.kind == kind)
        with self._lock:
            return [o for (ns, _), o in sorted(self._store[rtype].items()) if namespace is None or ns == namespace]

    def compact(self) -> int:
        """Forget history: watches from an older resourceVersion now get 410 Gone. Returns the cut."""
        with self._lock:
            self._compacted_rv = self._rv
            self._history.clear()
            return self._rv

    def drop_watches(self) -> None:
        """Close every open watch connection (clients must resume from their last resourceVersion)."""
        with self._lock:
            self._watch_epoch += 1
            self._lock.notify_all()

    def objects(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        rtype = self._rtype(group, plural)
        with self._lock:
            return [copy.deepcopy(o) for (ns, _), o in sorted(self._store[rtype].items())
                    if namespace is None or ns == namespace]

    def verbs(self, resource: str) -> list[str]:
        return [e.verb for e in self.audit if e.resource == resource]

    # ---------------------------------------------------------------- store
    def _rtype(self, group: str, plural: str) -> ResourceType:
        for rtype in RESOURCES:
            if rtype.group == group and rtype.plural == plural:
                return rtype
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{plural})")

    def _validate(self, obj: dict[str, Any]) -> None:
        try:
            kubernetes_validate.validate(obj, self.schema_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            meta = obj.get("metadata", {})
            where = f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"
            message = f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}"
            self.validation_errors.append(message)
            raise ApiError(422, "Invalid", message) from exc

    def _commit(self, rtype: ResourceType, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store (or delete) under the lock, with a new resourceVersion, and wake the watches."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            self._store[rtype].pop(key, None)
        else:
            self._validate(obj)
            self._store[rtype][key] = obj
        self._history.append(_Change(self._rv, rtype, kind, copy.deepcopy(obj)))
        self._lock.notify_all()
        return copy.deepcopy(obj)

    def create(self, rtype: ResourceType, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.setdefault("metadata", {})
        if rtype.create_only:
            return self._review(rtype, obj)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{rtype.kind}: metadata.name or generateName is required")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if rtype.namespaced:
            meta["namespace"] = namespace
        with self._lock:
            if (meta.get("namespace", ""), meta["name"]) in self._store[rtype]:
                raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{meta["name"]}" already exists')
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
            if rtype.plural in ("deployments", "replicasets"):
                meta["generation"] = 1
            return self._commit(rtype, "ADDED", obj)

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._store[rtype].get((namespace if rtype.namespaced else "", name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{rtype.plural}.{rtype.group} "{name}" not found')
            return copy.deepcopy(obj)

    def update(self, rtype: ResourceType, namespace: str, name: str, change: Callable[[dict], dict], *,
               subresource: str = "", expect_rv: str | None = None) -> dict[str, Any]:
        with self._lock:
            current = self.get(rtype, namespace, name)
            if expect_rv and expect_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.plural} "{name}": '
                               "the object has been modified; please apply your changes to the latest version")
            new = change(copy.deepcopy(current))
            new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
            for field in ("uid", "creationTimestamp", "name", "namespace", "generation"):
                if field in current["metadata"]:
                    new.setdefault("metadata", {})[field] = current["metadata"][field]
            if subresource == "status":
                new = {**current, "status": new.get("status", {})}
            elif "status" in current:
                new["status"] = current["status"]  # the main resource never changes status
            if subresource != "status" and new.get("spec") != current.get("spec") and "generation" in new["metadata"]:
                new["metadata"]["generation"] = current["metadata"]["generation"] + 1
            return self._commit(rtype, "MODIFIED", new)

    def delete(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            current = self.get(rtype, namespace, name)
            return self._commit(rtype, "DELETED", current)

    def list(self, rtype: ResourceType, namespace: str | None, selector: str) -> dict[str, Any]:
        with self._lock:
            items = [copy.deepcopy(o) for (ns, _), o in sorted(self._store[rtype].items())
                     if (namespace is None or ns == namespace)
                     and _matches(o["metadata"].get("labels") or {}, selector)]
            rv = self._rv
        for item in items:  # list items carry no apiVersion/kind, as from kube-apiserver
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {"apiVersion": rtype.api_version, "kind": rtype.kind + "List",
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    def _review(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        if rtype.plural == "tokenreviews":
            token = spec.get("token") or ""
            user = self.authenticate(token) if token else None
            obj["status"] = ({"authenticated": True, "user": user.to_review()} if user else
                             {"authenticated": False, "error": "invalid bearer token"})
        else:
            user = User(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""))
            if spec.get("nonResourceAttributes"):
                nra = spec["nonResourceAttributes"]
                attrs = Attributes(user, nra.get("verb", ""), is_resource=False, path=nra.get("path", ""))
            else:
                ra = spec.get("resourceAttributes") or {}
                attrs = Attributes(user, ra.get("verb", ""), api_group=ra.get("group", ""),
                                   resource=ra.get("resource", ""), subresource=ra.get("subresource", ""),
                                   namespace=ra.get("namespace", ""), name=ra.get("name", ""))
            allowed, reason = self.rbac.authorize(attrs)
            obj["status"] = {"allowed": allowed, **({"reason": reason} if reason else {})}
        self._validate(obj)
        return obj

    # ---------------------------------------------------------------- watch
    def watch_lines(self, rtype: ResourceType, namespace: str | None, selector: str, since: str,
                    *, bookmarks: bool, timeout_s: float | None) -> Iterator[str | None]:
        """Yield JSON event lines until timeout (then end), or ``None`` on drop_watches()/stop().

        A resourceVersion older than the last compact() yields one ERROR event with a 410 Status.
        """
        import time  # the test server may read the clock; the optimizer's pure layers never do

        deadline = time.monotonic() + timeout_s if timeout_s else None

        def visible(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            return ((namespace is None or meta.get("namespace") == namespace)
                    and _matches(meta.get("labels") or {}, selector))

        with self._lock:
            epoch = self._watch_epoch
            if since in ("", "0"):
                last = self._rv
                pending = [("ADDED", copy.deepcopy(o)) for o in self._store[rtype].values() if visible(o)]
            else:
                last = int(since)
                if last < self._compacted_rv:
                    gone = ApiError(410, "Expired", f"too old resource version: {last} ({self._compacted_rv})")
                    yield json.dumps({"type": "ERROR", "object": gone.status()})
                    return
                pending = []
        next_bookmark = time.monotonic() + self.bookmark_interval_s
        while True:
            for kind, obj in pending:
                yield json.dumps({"type": kind, "object": obj})
            with self._lock:
                while True:
                    if self._closed or self._watch_epoch != epoch:
                        yield None  # dropped: the handler cuts the connection without a clean end
                        return
                    changes = [c for c in self._history if c.rv > last and c.rtype == rtype]
                    now = time.monotonic()
                    if changes or (deadline and now >= deadline) or (bookmarks and now >= next_bookmark):
                        break
                    wake = min(d for d in (deadline, next_bookmark if bookmarks else None, now + 5.0) if d)
                    self._lock.wait(max(0.01, wake - now))
                rv_now = self._rv
            if deadline and time.monotonic() >= deadline and not changes:
                return
            pending = [(c.kind, c.obj) for c in changes if visible(c.obj)]
            if changes:
                last = changes[-1].rv
            elif bookmarks:
                last = max(last, rv_now)
                next_bookmark = time.monotonic() + self.bookmark_interval_s
                mark = {"apiVersion": rtype.api_version, "kind": rtype.kind,
                        "metadata": {"resourceVersion": str(last)}}
                pending = [("BOOKMARK", mark)]

    # ---------------------------------------------------------------- audit
    def record(self, entry: AuditEntry) -> None:
        self.audit.append(entry)
        if self._audit_file:
            with open(self._audit_file, "a") as fh:
                fh.write(json.dumps(asdict(entry)) + "\n")


def _parse_path(path: str) -> tuple[str, str, str | None, str, str, str]:
    """-> (group, version, namespace, plural, name, subresource) of a REST path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"no route for {path}")
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise ApiError(404, "NotFound", f"no route for {path}")
    return group, version, namespace, rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""


_NON_RESOURCE_VERBS = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put", "PATCH": "patch", "DELETE": "delete"}


def _handler_for(server: KubeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def _dispatch(self, method: str) -> None:
            try:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("Authorization")
                scheme, _, token = (auth or "").partition(" ")
                user = server.authenticate(token.strip() if auth and scheme.lower() == "bearer" else None)
                if user is None:
                    self._send(401, UNAUTHORIZED_STATUS)
                    return
                try:
                    group, _version, namespace, plural, name, sub = _parse_path(url.path)
                except ApiError:  # a non-resource URL: authorised by path, then not found
                    attrs = Attributes(user, _NON_RESOURCE_VERBS.get(method, method.lower()), is_resource=False,
                                       path=url.path)
                    allowed, reason = server.rbac.authorize(attrs)
                    if not allowed:
                        self._deny(AuditEntry(attrs.verb, "", "", "", "", "", user.name, False), attrs, reason)
                        return
                    raise
                watching = method == "GET" and query.get("watch") in ("true", "1")
                verb = {"GET": "watch" if watching else ("get" if name else "list"), "POST": "create",
                        "PUT": "update", "PATCH": "patch",
                        "DELETE": "delete" if name else "deletecollection"}[method]
                attrs = Attributes(user, verb, api_group=group, resource=plural, subresource=sub,
                                   namespace=namespace or "", name=name)
                allowed, reason = server.rbac.authorize(attrs)
                entry = AuditEntry(verb, group, plural, namespace or "", name, sub, user.name, allowed)
                if not allowed:
                    self._deny(entry, attrs, reason)
                    return
                server.record(entry)
                rtype = server._rtype(group, plural)
                injected = server.fail_requests(entry)
                if injected:
                    raise ApiError(injected, "InternalError" if injected >= 500 else "Forbidden", "injected failure")
                ns = namespace or ""
                if watching:
                    self._watch(rtype, namespace, query)
                elif method == "GET":
                    if name:
                        self._send(200, server.get(rtype, ns, name))
                    else:
                        self._send(200, server.list(rtype, namespace, query.get("labelSelector", "")))
                elif method == "POST":
                    self._send(201, server.create(rtype, ns, self._body()))
                elif method == "PUT":
                    body = self._body()
                    expect = (body.get("metadata") or {}).get("resourceVersion")
                    self._send(200, server.update(rtype, ns, name, lambda _: body, subresource=sub, expect_rv=expect))
                elif method == "PATCH":
                    self._patch(rtype, ns, name, sub)
                elif method == "DELETE":
                    if not name:
                        raise ApiError(405, "MethodNotAllowed", "deletecollection is not supported here")
                    obj = server.delete(rtype, ns, name)
                    self._send(200, obj)
            except ApiError as exc:
                self._send(exc.code, exc.status())
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _deny(self, entry: AuditEntry, attrs: Attributes, reason: str) -> None:
            status = forbidden_status(attrs, reason)
            server.record(entry)
            server.denials.append((entry, status["message"]))
            self._send(403, status)

        def _patch(self, rtype: ResourceType, ns: str, name: str, sub: str) -> None:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            patch = self._body()
            if ctype == "application/json-patch+json":
                change = lambda obj: json_patch(obj, patch)  # noqa: E731
            elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                strategic = ctype.startswith("application/strategic")
                change = lambda obj: merge_patch(obj, patch, strategic=strategic)  # noqa: E731
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unknown patch format: {ctype}")
            self._send(200, server.update(rtype, ns, name, change, subresource=sub))

        def _watch(self, rtype: ResourceType, namespace: str | None, query: dict[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
            lines = server.watch_lines(rtype, namespace, query.get("labelSelector", ""),
                                       query.get("resourceVersion", ""),
                                       bookmarks=query.get("allowWatchBookmarks") == "true", timeout_s=timeout)
            try:
                for line in lines:
                    if line is None:
                        self.connection.shutdown(2)  # socket.SHUT_RDWR: an abrupt drop, no final chunk
                        self.close_connection = True
                        return
                    data = (line + "\n").encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
            self.close_connection = True

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler

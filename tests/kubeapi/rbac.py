"""Kubernetes RBAC evaluated the way kube-apiserver's RBAC authorizer does, for the test API server.

Used by ``server.py`` (every request and every SubjectAccessReview is authorised here) and by
``tests/test_rbac_*.py`` (static checks of the rendered chart). The matching rules follow
``pkg/apis/rbac/v1/evaluation_helpers.go`` (verbs and apiGroups with ``*``, resources with ``*`` and
``*/subresource``, ``resourceNames``, nonResourceURLs with a trailing ``*``), the rule walk follows
``pkg/registry/rbac/validation/rule.go`` (ClusterRoleBindings, then RoleBindings of the request's
namespace; a ServiceAccount subject without a namespace takes the binding's), and the decision
follows ``plugin/pkg/auth/authorizer/rbac/rbac.go`` (allow on the first rule that matches; a denial
carries ``RBAC: <errors>`` when bindings point at missing roles). Aggregated ClusterRoles are not
evaluated: the chart does not use aggregation (``test_rbac_least_privilege`` checks it).

Denials are answered with the ``metav1.Status`` kube-apiserver writes
(``responsewriters.ForbiddenStatusError``), e.g. ``deployments.apps is forbidden: User
"system:serviceaccount:faro-system:faro-optimizer" cannot list resource "deployments" in API group
"apps" at the cluster scope``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    def to_review(self) -> dict[str, Any]:
        """The ``status.user`` of a TokenReview."""
        return {"username": self.name, "groups": list(self.groups), **({"uid": self.uid} if self.uid else {})}


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def service_account_user(namespace: str, name: str) -> User:
    """The user a ServiceAccount token authenticates as (``serviceaccount.UserInfo``)."""
    return User(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@dataclass(frozen=True)
class Attributes:
    """``authorizer.Attributes`` of one request."""

    user: User
    verb: str
    is_resource: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


# ------------------------------------------------------------------ evaluation_helpers.go
def verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or ())


def api_group_matches(rule: Mapping[str, Any], group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or ())


def resource_matches(rule: Mapping[str, Any], combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or ():
        if resource in ("*", combined):
            return True
        if subresource and resource == "*/" + subresource:
            return True
    return False


def resource_name_matches(rule: Mapping[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def non_resource_url_matches(rule: Mapping[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path) or (url.endswith("*") and path.startswith(url.rstrip("*"))):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    """``RuleAllows`` of rbac.go."""
    if attrs.is_resource:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (verb_matches(rule, attrs.verb) and api_group_matches(rule, attrs.api_group)
                and resource_matches(rule, combined, attrs.subresource) and resource_name_matches(rule, attrs.name))
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# ------------------------------------------------------------------ rule.go
def applies_to(user: User, subject: Mapping[str, Any], namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{subject.get('name')}"
    return False


def _describe_subject(subject: Mapping[str, Any], namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace") or namespace}/{subject.get("name")}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


@dataclass(frozen=True)
class Grant:
    """One rule reaching a user, with where it applies ("" = every namespace and cluster scope)."""

    source: str  # e.g. 'ClusterRoleBinding "x" of ClusterRole "y" to Group "z"'
    namespace: str
    rule: Mapping[str, Any]


# get(kind, namespace, name) -> object or None; list(kind, namespace or None) -> objects
Getter = Callable[[str, str, str], Mapping[str, Any] | None]
Lister = Callable[[str, str | None], Iterable[Mapping[str, Any]]]


@dataclass
class RBACAuthorizer:
    """The RBAC authorizer over a store of Roles, ClusterRoles and their bindings."""

    get_object: Getter
    list_objects: Lister
    errors_seen: list[str] = field(default_factory=list)

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> RBACAuthorizer:
        """Over a fixed list of objects (a rendered chart plus ``BOOTSTRAP``): no server needed."""
        kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
        by_kind: dict[str, list[Mapping[str, Any]]] = {k: [] for k in kinds}
        for obj in objects:
            if obj.get("kind") in by_kind and str(obj.get("apiVersion", "")).startswith(RBAC_GROUP):
                by_kind[obj["kind"]].append(obj)

        def ns_of(obj: Mapping[str, Any]) -> str:
            return (obj.get("metadata") or {}).get("namespace") or ""

        def get(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
            return next((o for o in by_kind[kind] if o["metadata"]["name"] == name and ns_of(o) == namespace), None)

        def list_(kind: str, namespace: str | None) -> list[Mapping[str, Any]]:
            return [o for o in by_kind[kind] if namespace is None or ns_of(o) == namespace]

        return cls(get, list_)

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
        if ref.get("kind") == "ClusterRole":
            role = self.get_object("ClusterRole", "", ref.get("name", ""))
            what = f'clusterroles.{RBAC_GROUP} "{ref.get("name")}" not found'
        elif ref.get("kind") == "Role":
            role = self.get_object("Role", namespace, ref.get("name", ""))
            what = f'roles.{RBAC_GROUP} "{ref.get("name")}" not found'
        else:
            raise LookupError(f"unsupported role reference kind: {ref.get('kind')!r}")
        if role is None:
            raise LookupError(what)
        return list(role.get("rules") or ())

    def visit(self, user: User, namespace: str) -> Iterator[tuple[Grant | None, str | None]]:
        """``VisitRulesFor``: (grant, None) per rule that reaches ``user`` for a request in ``namespace``,
        (None, error) per binding whose role is missing."""
        for binding in self.list_objects("ClusterRoleBinding", None):
            subject = next((s for s in binding.get("subjects") or () if applies_to(user, s, "")), None)
            if subject is None:
                continue
            ref = binding["roleRef"]
            try:
                rules = self._role_rules(ref, "")
            except LookupError as exc:
                yield None, str(exc)
                continue
            source = (f'ClusterRoleBinding "{binding["metadata"]["name"]}" of {ref["kind"]} "{ref["name"]}" '
                      f"to {_describe_subject(subject, '')}")
            for rule in rules:
                yield Grant(source, "", rule), None
        if not namespace:
            return
        for binding in self.list_objects("RoleBinding", namespace):
            subject = next((s for s in binding.get("subjects") or () if applies_to(user, s, namespace)), None)
            if subject is None:
                continue
            ref = binding["roleRef"]
            try:
                rules = self._role_rules(ref, namespace)
            except LookupError as exc:
                yield None, str(exc)
                continue
            source = (f'RoleBinding "{binding["metadata"]["name"]}/{namespace}" of {ref["kind"]} "{ref["name"]}" '
                      f"to {_describe_subject(subject, namespace)}")
            for rule in rules:
                yield Grant(source, namespace, rule), None

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as ``RBACAuthorizer.Authorize`` returns them."""
        errors: list[str] = []
        for grant, error in self.visit(attrs.user, attrs.namespace):
            if grant is not None and rule_allows(attrs, grant.rule):
                return True, f"RBAC: allowed by {grant.source}"
            if error:
                errors.append(error)
        if errors:
            self.errors_seen.extend(errors)
            return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")
        return False, ""

    def grants(self, user: User) -> list[Grant]:
        """Every rule that reaches ``user`` anywhere: cluster-wide ones, then each namespace's."""
        out = [g for g, _ in self.visit(user, "") if g is not None]
        bindings = self.list_objects("RoleBinding", None)
        namespaces = sorted({(b.get("metadata") or {}).get("namespace", "") for b in bindings})
        for ns in namespaces:
            out.extend(g for g, _ in self.visit(user, ns) if g is not None and g.namespace)
        return out


# ------------------------------------------------------------------ responses
def forbidden_status(attrs: Attributes, reason: str = "") -> dict[str, Any]:
    """The 403 ``metav1.Status`` kube-apiserver writes for a request RBAC did not allow."""
    msg = f'User "{attrs.user.name}" cannot {attrs.verb}'
    if not attrs.is_resource:
        msg += f' path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        msg += f' resource "{resource}" in API group "{attrs.api_group}"'
        msg += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    if reason:
        msg += ": " + reason
    qualified = ""
    if attrs.is_resource and attrs.resource:
        qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if not qualified:
        message = f"forbidden: {msg}"
    elif attrs.name:
        message = f'{qualified} "{attrs.name}" is forbidden: {msg}'
    else:
        message = f"{qualified} is forbidden: {msg}"
    details: dict[str, Any] = {"group": attrs.api_group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": "Forbidden", "details": details, "code": 403}


UNAUTHORIZED_STATUS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


# ------------------------------------------------------------------ bootstrap policy
def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}


def _cluster_binding(name: str, role: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects}


def _group(name: str) -> dict[str, Any]:
    return {"apiGroup": RBAC_GROUP, "kind": "Group", "name": name}


# The part of kube-apiserver's bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy) that the
# components under test can meet: cluster-admin for system:masters (the tests' admin token), discovery and
# self-reviews for every authenticated user, and the two roles the chart binds.
BOOTSTRAP: tuple[dict[str, Any], ...] = (
    _cluster_role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                    {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    _cluster_binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
    _cluster_role("system:discovery", [{"nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
        "/version", "/version/"], "verbs": ["get"]}]),
    _cluster_binding("system:discovery", "system:discovery", [_group("system:authenticated")]),
    _cluster_role("system:basic-user", [{"apiGroups": ["authorization.k8s.io"], "verbs": ["create"],
                                         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}]),
    _cluster_binding("system:basic-user", "system:basic-user", [_group("system:authenticated")]),
    _cluster_role("system:public-info-viewer", [{"nonResourceURLs": [
        "/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
    _cluster_binding("system:public-info-viewer", "system:public-info-viewer",
                     [_group("system:authenticated"), _group("system:unauthenticated")]),
    _cluster_role("system:auth-delegator", [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]),
    {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "Role",
     "metadata": {"name": "extension-apiserver-authentication-reader", "namespace": "kube-system"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"],
                "resourceNames": ["extension-apiserver-authentication"]}]},
)

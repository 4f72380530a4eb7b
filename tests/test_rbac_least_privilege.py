"""The chart's RBAC is least privilege: it grants nothing beyond the design's list (DESIGN.md §4,
helper-contracts.md), and every API call the real optimizer and adapter make is allowed by it.

The calls are observed by running ``faro optimizer`` and ``faro adapter`` as processes against the test
API server (``tests/kubeapi``), whose audit records each request; objects are seeded through the
server's Python API so only the components' own requests are audited. The RBAC evaluation follows
Kubernetes' rules (apiGroups/resources/verbs/resourceNames, RoleBinding scope) and includes the two
bootstrap roles the chart binds (``system:auth-delegator``, ``extension-apiserver-authentication-reader``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helm_render import NAMESPACE, render_chart

pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")

OPTIMIZER = ("faro-system", "faro-optimizer")
ADAPTER = ("faro-system", "faro-adapter")
HPA_CONTROLLER = ("kube-system", "horizontal-pod-autoscaler")

# Built-in roles of every cluster (kubernetes plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
BOOTSTRAP_CLUSTER_ROLES = {
    "system:auth-delegator": [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ],
}
BOOTSTRAP_ROLES = {
    ("kube-system", "extension-apiserver-authentication-reader"): [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"],
         "resourceNames": ["extension-apiserver-authentication"]},
    ],
}  # fmt: skip

# The design's list: (api group, resource, verb, namespace scope) per ServiceAccount. Scope "*" = any
# namespace or cluster-wide, otherwise that namespace only; None in the name slot = any name.
DESIGN: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {
    OPTIMIZER: {
        *{("apps", r, v, "*") for r in ("deployments", "replicasets") for v in ("list", "watch")},
        *{("", r, v, "*") for r in ("pods", "resourcequotas") for v in ("list", "watch")},
        *{("autoscaling", "horizontalpodautoscalers", v, "*") for v in ("list", "watch")},
        *{(g, "events", v, "*") for g in ("", "events.k8s.io") for v in ("create", "patch")},
        *{("coordination.k8s.io", "leases", v, NAMESPACE) for v in ("get", "create", "update")},
    },
    ADAPTER: {
        ("", "configmaps", "get", "kube-system"),
        ("", "configmaps", "list", "kube-system"),
        ("", "configmaps", "watch", "kube-system"),
        ("authentication.k8s.io", "tokenreviews", "create", "*"),
        ("authorization.k8s.io", "subjectaccessreviews", "create", "*"),
    },
    HPA_CONTROLLER: {("external.metrics.k8s.io", "*", v, "*") for v in ("get", "list", "watch")},
}


@dataclass(frozen=True)
class Grant:
    rule: Mapping[str, Any]
    namespace: str  # "*" for a ClusterRoleBinding


def grants(objects: Iterable[Mapping[str, Any]], subject: tuple[str, str]) -> list[Grant]:
    """Every rule bound to ServiceAccount ``subject`` by the rendered bindings (plus bootstrap roles)."""
    objects = list(objects)
    cluster_roles = {o["metadata"]["name"]: o.get("rules", []) for o in objects if o["kind"] == "ClusterRole"}
    cluster_roles.update(BOOTSTRAP_CLUSTER_ROLES)
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o.get("rules", []) for o in objects
             if o["kind"] == "Role"}  # fmt: skip
    roles.update(BOOTSTRAP_ROLES)
    out: list[Grant] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        sa = [(s.get("namespace"), s["name"]) for s in binding["subjects"] if s["kind"] == "ServiceAccount"]
        if subject not in sa:
            continue
        ref = binding["roleRef"]
        scope = "*" if binding["kind"] == "ClusterRoleBinding" else binding["metadata"]["namespace"]
        if ref["kind"] == "ClusterRole":
            rules = cluster_roles.get(ref["name"])
        else:
            rules = roles.get((binding["metadata"]["namespace"], ref["name"]))
        assert rules is not None, f"{binding['kind']} {binding['metadata']['name']} binds a missing {ref}"
        out.extend(Grant(rule, scope) for rule in rules)
    return out


def allowed(grants_: Iterable[Grant], *, verb: str, group: str, resource: str, namespace: str, name: str,
            subresource: str = "") -> bool:  # fmt: skip
    full = f"{resource}/{subresource}" if subresource else resource
    for g in grants_:
        if g.namespace != "*" and g.namespace != namespace:
            continue
        rule = g.rule
        if not ({group, "*"} & set(rule["apiGroups"]) and {full, "*"} & set(rule["resources"])):
            continue
        if not {verb, "*"} & set(rule["verbs"]):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue  # create, list and watch carry no name: a named rule never allows them
        return True
    return False


def granted_tuples(grants_: Iterable[Grant]) -> set[tuple[str, str, str, str]]:
    return {(grp, res, verb, g.namespace) for g in grants_ for grp in g.rule["apiGroups"]
            for res in g.rule["resources"] for verb in g.rule["verbs"]}  # fmt: skip


VARIANTS = {
    "defaults": {},
    "mode-keda": {"mode": "keda"},
    "mode-both": {"mode": "both"},
    "one-namespace": {"optimizer": {"watchNamespace": "ml-serving"}},
    "with-replicasets-and-pods": {"optimizer": {"rbac": {"readReplicaSetsAndPods": True}}},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render_chart(values) for name, values in VARIANTS.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("subject", [OPTIMIZER, ADAPTER, HPA_CONTROLLER], ids=lambda s: s[1])
def test_nothing_beyond_the_design_list_is_granted(rendered, variant, subject):
    design = DESIGN[subject]
    for grp, res, verb, scope in granted_tuples(grants(rendered[variant], subject)):
        ok = (grp, res, verb, "*") in design or (grp, res, verb, scope) in design
        if variant == "one-namespace" and scope == "ml-serving":
            ok = ok or (grp, res, verb, "*") in design
        assert ok, f"{variant}: {subject[1]} is granted {verb} {grp or 'core'}/{res} in {scope}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_rule_touches_secrets_or_uses_wildcards_outside_external_metrics(rendered, variant):
    for obj in rendered[variant]:
        for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
            assert "secrets" not in rule["resources"], obj["metadata"]["name"]
            assert "*" not in rule["verbs"], obj["metadata"]["name"]
            if "*" in rule["resources"] or "*" in rule["apiGroups"]:
                assert rule["apiGroups"] == ["external.metrics.k8s.io"], obj["metadata"]["name"]


def test_lease_access_is_limited_to_the_named_lease_in_the_release_namespace(rendered):
    g = grants(rendered["defaults"], OPTIMIZER)
    lease = {"group": "coordination.k8s.io", "resource": "leases"}
    assert allowed(g, verb="update", namespace=NAMESPACE, name="faro-optimizer", **lease)
    assert not allowed(g, verb="update", namespace=NAMESPACE, name="someone-elses-lease", **lease)
    assert not allowed(g, verb="get", namespace="kube-system", name="faro-optimizer", **lease)
    assert not allowed(g, verb="delete", namespace=NAMESPACE, name="faro-optimizer", **lease)


def test_the_hpa_controller_may_read_external_metrics_only_when_faro_owns_the_apiservice(rendered):
    def can_read(variant: str) -> bool:
        return allowed(grants(rendered[variant], HPA_CONTROLLER), verb="get", group="external.metrics.k8s.io",
                       resource="faro_desired_replicas", namespace="ml-serving", name="")  # fmt: skip

    assert can_read("defaults") and can_read("mode-both")
    assert not can_read("mode-keda")


def test_watching_one_namespace_grants_reads_there_only(rendered):
    g = grants(rendered["one-namespace"], OPTIMIZER)
    read = {"verb": "watch", "group": "apps", "resource": "deployments", "name": ""}
    assert allowed(g, namespace="ml-serving", **read)
    assert not allowed(g, namespace="other", **read)


# ------------------------------------------------------------------ the real components' calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


def _wait_for(predicate, *, timeout_s: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return predicate()


def _faro(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FARO_KUBEAPI_AUDIT_FILE", None)
    return subprocess.Popen([sys.executable, "-m", "faro.optimizer.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip


def _assert_all_allowed(audit, grants_, who: str) -> None:
    denied = [
        e
        for e in audit
        if not allowed(grants_, verb=e.verb, group=e.api_group, resource=e.resource, namespace=e.namespace,
                       name=e.name, subresource=e.subresource)
    ]  # fmt: skip
    assert not denied, f"{who} made calls its RBAC does not allow: {denied}"


@pytest.fixture
def apiserver():
    kubeapi = pytest.importorskip("kubeapi")
    server = kubeapi.KubeApiServer(bookmark_interval_s=0.5, audit_file="").start()
    yield server
    server.stop()


def _seed(server, group: str, plural: str, namespace: str, body: dict) -> None:
    server.create(server._rtype(group, plural), namespace, body)


@pytest.mark.slow
def test_every_call_the_real_optimizer_makes_is_allowed_by_the_chart_rbac(rendered, apiserver, tmp_path: Path):
    from kubeapi.objects import deployment, hpa, quota

    _seed(apiserver, "apps", "deployments", "team-a", deployment("good"))
    # An invalid SLO: the optimizer records a Warning Event on it.
    bad = deployment("bad", annotations={"faro.dev/slo-latency-ms": "-5"})
    _seed(apiserver, "apps", "deployments", "team-a", bad)
    _seed(apiserver, "", "resourcequotas", "team-a", quota("q", {"requests.cpu": "8"}))
    _seed(apiserver, "autoscaling", "horizontalpodautoscalers", "team-a", hpa("good"))
    kubeconfig = apiserver.kubeconfig(tmp_path / "kubeconfig")
    proc = _faro(
        "optimizer", f"--kubeconfig={kubeconfig}", "--metrics-source=none", "--interval-s=2", "--reactive-interval-s=1",
        f"--grpc-address=127.0.0.1:{_free_port()}", f"--metrics-address=127.0.0.1:{_free_port()}",
        "--leader-elect", "--lease-name=faro-optimizer", f"--lease-namespace={NAMESPACE}",
        "--lease-duration-s=6", "--renew-deadline-s=4", "--retry-period-s=1", "--log-format=json",
    )  # fmt: skip

    def seen(resource: str, verb: str) -> bool:
        return any(e.resource == resource and e.verb == verb for e in list(apiserver.audit))

    try:
        ok = _wait_for(lambda: seen("leases", "update") and seen("events", "create") and seen("deployments", "watch"),
                       timeout_s=60, proc=proc)  # fmt: skip
    finally:
        output = _stop(proc)
    assert ok, f"the optimizer did not renew its lease, record an event and watch in time:\n{output[-3000:]}"
    audit = list(apiserver.audit)
    _assert_all_allowed(audit, grants(rendered["defaults"], OPTIMIZER), "faro optimizer")
    # And the optimizer uses what it is granted for: no dead grants beyond the design's optional ones.
    used = {(e.api_group, e.resource) for e in audit}
    assert {("apps", "deployments"), ("", "resourcequotas"), ("autoscaling", "horizontalpodautoscalers"),
            ("coordination.k8s.io", "leases")} <= used  # fmt: skip


@pytest.mark.slow
def test_every_call_the_real_adapter_makes_is_allowed_by_the_chart_rbac(rendered, apiserver, tmp_path: Path):
    from adapter_fakes import make_plan
    from google.protobuf import json_format
    from pki import CertificateAuthority

    serving_ca, front_ca = CertificateAuthority("serving-ca"), CertificateAuthority("front-proxy-ca")
    cert, key = serving_ca.issue("faro-adapter", server=True).write(tmp_path, "server")
    _seed(apiserver, "", "configmaps", "kube-system", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {"requestheader-client-ca-file": front_ca.cert_pem.decode(),
                 "requestheader-allowed-names": '["front-proxy-client"]',
                 "requestheader-username-headers": '["X-Remote-User"]',
                 "requestheader-group-headers": '["X-Remote-Group"]',
                 "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'},
    })  # fmt: skip
    apiserver.token_users["hpa-token"] = {
        "username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    }
    plan = tmp_path / "plan.json"
    plan.write_text(json_format.MessageToJson(make_plan(1, {("team-a", "good"): 3}, created_s=time.time())))
    port = _free_port()
    proc = _faro(
        "adapter", f"--kubeconfig={apiserver.kubeconfig(tmp_path / 'kubeconfig')}", f"--plan-file={plan}",
        "--mode=apiService", f"--secure-address=127.0.0.1:{port}", f"--tls-cert-file={cert}",
        f"--tls-private-key-file={key}", f"--metrics-address=127.0.0.1:{_free_port()}", "--log-format=json",
    )  # fmt: skip
    context = ssl.create_default_context(cadata=serving_ca.cert_pem.decode())
    url = f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/faro_desired_replicas"
    request = urllib.request.Request(f"{url}?labelSelector=deployment%3Dgood",
                                     headers={"Authorization": "Bearer hpa-token"})  # fmt: skip
    body: dict[str, Any] = {}

    def answered() -> bool:
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                body.update(json.load(response))
                return True
        except OSError:
            return False

    try:
        ok = _wait_for(answered, timeout_s=60, proc=proc)
    finally:
        output = _stop(proc)
    assert ok, f"the adapter did not answer:\n{output[-3000:]}"
    assert body["items"][0]["value"] == "3"
    audit = list(apiserver.audit)
    assert {"tokenreviews", "subjectaccessreviews", "configmaps"} <= {e.resource for e in audit}
    _assert_all_allowed(audit, grants(rendered["defaults"], ADAPTER), "faro adapter")

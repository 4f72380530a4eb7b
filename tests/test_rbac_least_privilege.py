"""The chart's RBAC is least privilege: it grants nothing beyond the design's list (DESIGN.md §4), and the
test API server, enforcing the rendered RBAC the way kube-apiserver does, lets the real components do
their work — graded by the server, not by this file.

Static checks evaluate the rendered Roles/ClusterRoles/bindings with kube's RBAC rules
(``tests/kubeapi/rbac.py``). The process tests load a rendered chart (every mode) into the test API
server (``tests/kubeapi``), run ``faro optimizer`` and ``faro adapter`` with their ServiceAccounts'
bearer tokens, and the server answers any call the RBAC does not grant with kube's 403 Status and
records it: ``KubeApiServer.check`` then fails the test. Objects are seeded through the server's
Python API (not audited). The adapter is driven through both of its callers' paths: the HPA
controller's bearer token (TokenReview + SubjectAccessReview) and the aggregator's front-proxy
certificate (SubjectAccessReview), both answered from the same RBAC. One test narrows a rendered Role
by one verb and shows that the grading then fails.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from helm_render import NAMESPACE, render_chart
from kubeapi import BOOTSTRAP, Attributes, KubeApiServer, RBACAuthorizer, service_account_user
from kubeapi.rbac import Grant

pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")

OPTIMIZER = ("faro-system", "faro-optimizer")
ADAPTER = ("faro-system", "faro-adapter")
HPA_CONTROLLER = ("kube-system", "horizontal-pod-autoscaler")

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


# The bootstrap roles the chart binds (the rest of kube's bootstrap policy reaches every authenticated user
# and is not the chart's doing, so the design-list check leaves it out).
CHART_BOUND_BOOTSTRAP = [o for o in BOOTSTRAP
                         if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] in (
                             "system:auth-delegator", "extension-apiserver-authentication-reader")]


def authorizer(objects: Iterable[Mapping[str, Any]]) -> RBACAuthorizer:
    """kube's RBAC authorizer (``tests/kubeapi/rbac.py``) over rendered objects + the roles they bind."""
    return RBACAuthorizer.from_objects([*objects, *CHART_BOUND_BOOTSTRAP])


def grants(objects: Iterable[Mapping[str, Any]], subject: tuple[str, str]) -> list[Grant]:
    """Every rule the rendered bindings give ServiceAccount ``subject``; a binding to a missing role fails."""
    objects = list(objects)
    authz = authorizer(objects)
    user = service_account_user(*subject)
    for ns in {"", *((o["metadata"].get("namespace") or "") for o in objects)}:
        errors = [e for _, e in authz.visit(user, ns) if e]
        assert not errors, f"{subject[1]}: {errors}"
    return authz.grants(user)


def allowed(objects: Iterable[Mapping[str, Any]], subject: tuple[str, str], *, verb: str, group: str,
            resource: str, namespace: str, name: str, subresource: str = "") -> bool:  # fmt: skip
    attrs = Attributes(service_account_user(*subject), verb, api_group=group, resource=resource,
                       subresource=subresource, namespace=namespace, name=name)
    return authorizer(objects).authorize(attrs)[0]


def granted_tuples(grants_: Iterable[Grant]) -> set[tuple[str, str, str, str]]:
    out = set()
    for g in grants_:
        assert not g.rule.get("nonResourceURLs"), f"{g.source} grants non-resource URLs"
        out |= {(grp, res, verb, g.namespace or "*") for grp in g.rule["apiGroups"]
                for res in g.rule["resources"] for verb in g.rule["verbs"]}  # fmt: skip
    return out


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
    g = rendered["defaults"]
    lease = {"group": "coordination.k8s.io", "resource": "leases"}
    assert allowed(g, OPTIMIZER, verb="update", namespace=NAMESPACE, name="faro-optimizer", **lease)
    assert not allowed(g, OPTIMIZER, verb="update", namespace=NAMESPACE, name="someone-elses-lease", **lease)
    assert not allowed(g, OPTIMIZER, verb="get", namespace="kube-system", name="faro-optimizer", **lease)
    assert not allowed(g, OPTIMIZER, verb="delete", namespace=NAMESPACE, name="faro-optimizer", **lease)


def test_the_hpa_controller_may_read_external_metrics_only_when_faro_owns_the_apiservice(rendered):
    def can_read(variant: str) -> bool:
        return allowed(rendered[variant], HPA_CONTROLLER, verb="get", group="external.metrics.k8s.io",
                       resource="faro_desired_replicas", namespace="ml-serving", name="")  # fmt: skip

    assert can_read("defaults") and can_read("mode-both")
    assert not can_read("mode-keda")


def test_watching_one_namespace_grants_reads_there_only(rendered):
    read = {"verb": "watch", "group": "apps", "resource": "deployments", "name": ""}
    assert allowed(rendered["one-namespace"], OPTIMIZER, namespace="ml-serving", **read)
    assert not allowed(rendered["one-namespace"], OPTIMIZER, namespace="other", **read)
    assert not allowed(rendered["one-namespace"], OPTIMIZER, namespace="", **read)  # no cluster-wide watch


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_chart_uses_no_role_aggregation(rendered, variant):
    # The test API server's RBAC does not evaluate aggregationRule (kubeapi/rbac.py); keep it unneeded.
    assert not [o["metadata"]["name"] for o in rendered[variant] if o.get("aggregationRule")]


# ------------------------------------------------------------------ kube's RBAC rules, table-driven

POD_READER = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}


@pytest.mark.parametrize(
    ("rule", "attrs", "expected"),
    [
        pytest.param(POD_READER, {"verb": "get", "resource": "pods"}, True, id="exact"),
        pytest.param(POD_READER, {"verb": "watch", "resource": "pods"}, False, id="other-verb"),
        pytest.param(POD_READER, {"verb": "get", "resource": "pods", "api_group": "apps"}, False, id="other-group"),
        pytest.param(POD_READER, {"verb": "get", "resource": "pods", "subresource": "status"}, False,
                     id="subresource-not-implied"),
        pytest.param({**POD_READER, "resources": ["pods/status"]},
                     {"verb": "get", "resource": "pods", "subresource": "status"}, True, id="subresource"),
        pytest.param({**POD_READER, "resources": ["*/status"]},
                     {"verb": "get", "resource": "deployments", "subresource": "status"}, True, id="star-subresource"),
        pytest.param({**POD_READER, "resources": ["*/status"]}, {"verb": "get", "resource": "deployments"}, False,
                     id="star-subresource-not-main"),
        pytest.param({**POD_READER, "verbs": ["*"]}, {"verb": "delete", "resource": "pods"}, True, id="star-verb"),
        pytest.param({**POD_READER, "apiGroups": ["*"]}, {"verb": "get", "resource": "pods", "api_group": "x.io"},
                     True, id="star-group"),
        pytest.param({**POD_READER, "resourceNames": ["a"]}, {"verb": "get", "resource": "pods", "name": "a"}, True,
                     id="named"),
        pytest.param({**POD_READER, "resourceNames": ["a"]}, {"verb": "get", "resource": "pods", "name": "b"}, False,
                     id="other-name"),
        pytest.param({**POD_READER, "resourceNames": ["a"]}, {"verb": "list", "resource": "pods"}, False,
                     id="named-rule-never-allows-list"),
        pytest.param({"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
                     {"verb": "get", "is_resource": False, "path": "/healthz"}, True, id="url"),
        pytest.param({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
                     {"verb": "get", "is_resource": False, "path": "/apis/apps/v1"}, True, id="url-prefix"),
        pytest.param({"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
                     {"verb": "post", "is_resource": False, "path": "/apis/x"}, False, id="url-verb"),
        pytest.param({"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
                     {"verb": "get", "resource": "healthz"}, False, id="url-rule-not-for-resources"),
    ],
)
def test_rules_match_as_kubes_rbac_authorizer_matches_them(rule, attrs, expected):
    from kubeapi.rbac import User, rule_allows

    assert rule_allows(Attributes(User("u"), **attrs), rule) is expected


def test_a_role_binding_reaches_only_its_namespace_and_a_missing_role_is_the_denials_reason():
    from kubeapi.rbac import User

    user = User("u", ("g",))
    objects = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"},
         "rules": [POD_READER]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "b", "namespace": "a"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
         "subjects": [{"kind": "Group", "name": "g"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "c", "namespace": "c"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
         "subjects": [{"kind": "User", "name": "u"}]},
    ]
    authz = RBACAuthorizer.from_objects(objects)
    ok, reason = authz.authorize(Attributes(user, "get", resource="pods", namespace="a"))
    assert ok and reason == 'RBAC: allowed by RoleBinding "b/a" of ClusterRole "reader" to Group "g"'
    assert authz.authorize(Attributes(user, "get", resource="pods", namespace="b")) == (False, "")
    assert authz.authorize(Attributes(user, "get", resource="pods")) == (False, "")  # cluster scope
    assert authz.authorize(Attributes(user, "get", resource="pods", namespace="c")) == (
        False, 'RBAC: roles.rbac.authorization.k8s.io "gone" not found')


# ------------------------------------------------------------------ the real components, graded by the server


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


def cluster(kubeapi_factory, objects: list[dict[str, Any]]) -> KubeApiServer:
    """A test API server holding kube's bootstrap roles and the rendered chart (every object it serves)."""
    server = kubeapi_factory(audit_file="")
    server.load(objects)
    return server


OPTIMIZER_VARIANTS = {  # chart values, namespace the optimizer watches (None = all)
    "mode-apiService": ({"mode": "apiService"}, None),
    "mode-keda": ({"mode": "keda"}, None),
    "mode-both": ({"mode": "both"}, None),
    "one-namespace": ({"optimizer": {"watchNamespace": "ml-serving"}}, "ml-serving"),
}


def run_optimizer(server: KubeApiServer, tmp_path: Path, *, namespace: str | None) -> str:
    """Run ``faro optimizer`` as its ServiceAccount until it has renewed its lease, recorded an Event and
    watched Deployments, then grade it: ``server.check()`` fails on any call RBAC did not allow."""
    from kubeapi.objects import deployment, hpa, quota
    from pki import plan_api_certs

    ns = namespace or "team-a"
    create = lambda group, plural, body: server.create(server._rtype(group, plural), ns, body)  # noqa: E731
    create("apps", "deployments", deployment("good", namespace=ns))
    # An invalid SLO: the optimizer records a Warning Event on it.
    create("apps", "deployments", deployment("bad", namespace=ns, annotations={"faro.dev/slo-latency-ms": "-5"}))
    create("", "resourcequotas", quota("q", {"requests.cpu": "8"}, namespace=ns))
    create("autoscaling", "horizontalpodautoscalers", hpa("good", namespace=ns))
    token = server.service_account_token(*OPTIMIZER)
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", token=token)
    user = service_account_user(*OPTIMIZER).name
    proc = _faro(
        "optimizer", f"--kubeconfig={kubeconfig}", "--metrics-source=none", "--interval-s=2", "--reactive-interval-s=1",
        f"--grpc-address=127.0.0.1:{_free_port()}", f"--metrics-address=127.0.0.1:{_free_port()}",
        *plan_api_certs(tmp_path).server_flags(),
        "--leader-elect", "--lease-name=faro-optimizer", f"--lease-namespace={NAMESPACE}",
        "--lease-duration-s=6", "--renew-deadline-s=4", "--retry-period-s=1", "--log-format=json",
        *([f"--namespace={namespace}"] if namespace else []),
    )  # fmt: skip

    def seen(resource: str, verb: str) -> bool:
        return any(e.resource == resource and e.verb == verb and e.user == user for e in list(server.audit))

    try:
        ok = _wait_for(lambda: seen("leases", "update") and seen("events", "create") and seen("deployments", "watch"),
                       timeout_s=60, proc=proc)  # fmt: skip
    finally:
        output = _stop(proc)
    server.check()
    assert ok, f"the optimizer did not renew its lease, record an event and watch in time:\n{output[-3000:]}"
    used = {(e.api_group, e.resource) for e in server.audit if e.user == user}
    assert {("apps", "deployments"), ("", "resourcequotas"), ("autoscaling", "horizontalpodautoscalers"),
            ("coordination.k8s.io", "leases")} <= used  # fmt: skip
    return output


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(OPTIMIZER_VARIANTS))
def test_the_real_optimizer_does_its_work_with_only_the_chart_rbac(kubeapi_factory, variant, tmp_path: Path):
    values, namespace = OPTIMIZER_VARIANTS[variant]
    run_optimizer(cluster(kubeapi_factory, render_chart(values)), tmp_path, namespace=namespace)


@pytest.mark.slow
def test_narrowing_a_rendered_role_by_one_verb_fails_the_grading(kubeapi_factory, tmp_path: Path):
    objects = copy.deepcopy(render_chart({}))
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "faro-optimizer-leader-election")
    rule = next(r for r in role["rules"] if "update" in r["verbs"])
    rule["verbs"].remove("update")
    server = cluster(kubeapi_factory, objects)
    expected = ('leases.coordination.k8s.io "faro-optimizer" is forbidden: User '
                '"system:serviceaccount:faro-system:faro-optimizer" cannot update resource "leases" in API group '
                '"coordination.k8s.io" in the namespace "faro-system"')
    with pytest.raises(AssertionError, match="requests RBAC does not allow") as failed:
        run_optimizer(server, tmp_path, namespace=None)
    assert expected in str(failed.value)
    entry, _ = server.denials[0]
    assert (entry.verb, entry.resource, entry.name, entry.allowed) == ("update", "leases", "faro-optimizer", False)
    server.denials.clear()  # seen and asserted: the fixture's own check passes


def test_the_server_answers_403_with_kubes_status_and_401_for_an_unknown_token(kubeapi_factory, tmp_path: Path):
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    server = cluster(kubeapi_factory, render_chart({}))
    token = server.service_account_token(*OPTIMIZER)
    api = config.new_client_from_config(config_file=str(server.kubeconfig(tmp_path / "kc", token=token)))
    core = client.CoreV1Api(api)
    core.list_resource_quota_for_all_namespaces()  # granted cluster-wide
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_secret("faro-system")
    body = json.loads(denied.value.body)
    assert denied.value.status == 403
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": 'secrets is forbidden: User "system:serviceaccount:faro-system:faro-optimizer" cannot list '
                   'resource "secrets" in API group "" in the namespace "faro-system"',
        "details": {"group": "", "kind": "secrets"},
    }  # fmt: skip
    assert [e.resource for e, _ in server.denials] == ["secrets"]
    server.denials.clear()
    bad = config.new_client_from_config(config_file=str(server.kubeconfig(tmp_path / "bad", token="forged")))
    with pytest.raises(ApiException) as unauthenticated:
        client.CoreV1Api(bad).list_resource_quota_for_all_namespaces()
    assert unauthenticated.value.status == 401 and json.loads(unauthenticated.value.body)["reason"] == "Unauthorized"
    api.close()
    bad.close()


def _auth_configmap(front_ca_pem: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {"requestheader-client-ca-file": front_ca_pem,
                 "requestheader-allowed-names": '["front-proxy-client"]',
                 "requestheader-username-headers": '["X-Remote-User"]',
                 "requestheader-group-headers": '["X-Remote-Group"]',
                 "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'},
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["apiService", "both", "keda"])
def test_the_real_adapter_serves_its_callers_with_only_the_chart_rbac(kubeapi_factory, mode, tmp_path: Path):
    from adapter_fakes import make_plan
    from google.protobuf import json_format
    from pki import CertificateAuthority

    server = cluster(kubeapi_factory, render_chart({"mode": mode}))
    serving_ca, front_ca = CertificateAuthority("serving-ca"), CertificateAuthority("front-proxy-ca")
    cert, key = serving_ca.issue("faro-adapter", server=True).write(tmp_path, "server")
    front_proxy = front_ca.issue("front-proxy-client").write(tmp_path, "front-proxy")
    server.load([_auth_configmap(front_ca.cert_pem.decode())])
    hpa_token = server.service_account_token(*HPA_CONTROLLER)  # the chart grants it external metrics
    stranger_token = server.service_account_token("team-a", "default")  # granted nothing
    hpa_user = service_account_user(*HPA_CONTROLLER)
    adapter_user = service_account_user(*ADAPTER).name
    plan = tmp_path / "plan.json"
    plan.write_text(json_format.MessageToJson(make_plan(1, {("team-a", "good"): 3}, created_s=time.time())))
    kubeconfig = server.kubeconfig(tmp_path / "kubeconfig", token=server.service_account_token(*ADAPTER))
    https, keda = mode != "keda", mode != "apiService"
    port, keda_port = _free_port(), _free_port()
    proc = _faro(
        "adapter", f"--kubeconfig={kubeconfig}", f"--plan-file={plan}", f"--mode={mode}",
        f"--metrics-address=127.0.0.1:{_free_port()}", "--log-format=json",
        *([f"--secure-address=127.0.0.1:{port}", f"--tls-cert-file={cert}", f"--tls-private-key-file={key}"]
          if https else []),
        *([f"--keda-address=127.0.0.1:{keda_port}", f"--keda-tls-cert-file={cert}",
           f"--keda-tls-private-key-file={key}"] if keda else []),
    )  # fmt: skip
    url = (f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/faro_desired_replicas"
           "?labelSelector=deployment%3Dgood")

    def get(headers: dict[str, str], *, cert: tuple[Path, Path] | None = None) -> tuple[int, dict[str, Any]]:
        context = ssl.create_default_context(cadata=serving_ca.cert_pem.decode())
        if cert:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context,
                                        timeout=10) as response:  # fmt: skip
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def keda_value() -> int:
        import grpc
        from faro.externalscaler import externalscaler_pb2 as pb
        from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc

        creds = grpc.ssl_channel_credentials(root_certificates=serving_ca.cert_pem)
        with grpc.secure_channel(f"127.0.0.1:{keda_port}", creds) as channel:
            ref = pb.ScaledObjectRef(name="good", namespace="team-a")
            reply = pb_grpc.ExternalScalerStub(channel).GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=ref, metricName="faro_desired_replicas"), timeout=10)
            return reply.metricValues[0].metricValue

    def answering() -> bool:
        try:
            return get({"Authorization": f"Bearer {hpa_token}"})[0] == 200 if https else keda_value() == 3
        except Exception:
            return False

    by_token = by_front_proxy = stranger = eve = (0, {})
    try:
        ok = _wait_for(answering, timeout_s=60, proc=proc)
        if ok and https:
            by_token = get({"Authorization": f"Bearer {hpa_token}"})
            by_front_proxy = get({"X-Remote-User": hpa_user.name, "X-Remote-Group": "system:serviceaccounts"},
                                 cert=front_proxy)
            stranger = get({"Authorization": f"Bearer {stranger_token}"})
            eve = get({"X-Remote-User": "eve", "X-Remote-Group": "system:authenticated"}, cert=front_proxy)
        keda_answer = keda_value() if ok and keda else None
    finally:
        output = _stop(proc)
    server.check()  # the grade: every call the adapter made was allowed by the chart's RBAC
    assert ok, f"the adapter did not answer:\n{output[-3000:]}"
    if https:
        assert by_token[0] == 200 and by_token[1]["items"][0]["value"] == "3"
        assert by_front_proxy[0] == 200 and by_front_proxy[1]["items"][0]["value"] == "3"
        assert (stranger[0], stranger[1].get("reason")) == (403, "Forbidden")  # the SAR said no
        assert (eve[0], eve[1].get("reason")) == (403, "Forbidden")
        used = {e.resource for e in server.audit if e.user == adapter_user and e.allowed}
        assert {"tokenreviews", "subjectaccessreviews", "configmaps"} <= used
    if keda:
        assert keda_answer == 3

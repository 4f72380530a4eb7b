"""Delegated auth against the test Kubernetes API server, through the real ``faro adapter`` process.

The ConfigMap ``kube-system/extension-apiserver-authentication`` is created in ``tests/kubeapi``; the adapter
reads it at start-up, sends TokenReviews and SubjectAccessReviews there, and trusts front-proxy headers only
with a front-proxy certificate whose CN is allowed.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from adapter_fakes import make_plan
from faro.adapter.auth import Attributes, KubeReviewer, UserInfo, load_auth_configmap
from google.protobuf import json_format
from pki import CertificateAuthority

HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
METRIC = (
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas?labelSelector=deployment%3Dresnet"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_auth_configmap(kube_client: Any, front_proxy_ca_pem: str) -> None:
    from kubernetes import client

    client.CoreV1Api(kube_client).create_namespaced_config_map("kube-system", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="extension-apiserver-authentication", namespace="kube-system"),
        data={
            "requestheader-client-ca-file": front_proxy_ca_pem,
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        },
    ))


def grant_external_metrics(kubeapi: Any, subject: dict[str, str], verbs: list[str]) -> None:
    """A ClusterRole + ClusterRoleBinding letting ``subject`` use ``verbs`` on external metrics (RBAC in kubeapi)."""
    name = f"external-metrics-{subject['name'].replace(':', '-')}"
    kubeapi.load([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": verbs}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [subject]},
    ])


def test_kube_reviewer_asks_token_and_access_reviews_of_the_api_server(kubeapi: Any, kube_client: Any) -> None:
    kubeapi.token_users["t0k"] = {"username": "bob", "groups": ["g1"], "uid": "u1"}
    grant_external_metrics(kubeapi, {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
                           ["list"])
    reviewer = KubeReviewer(kube_client)
    bob = reviewer.review_token("t0k")
    assert bob == UserInfo("bob", ("g1",), uid="u1")
    assert reviewer.review_token("nope") is None
    attrs = Attributes(verb="list", namespace="default", api_group="external.metrics.k8s.io", version="v1beta1",
                       resource="faro_desired_replicas", is_resource=True)
    assert reviewer.allowed(bob, attrs) is True
    assert reviewer.allowed(UserInfo("eve"), attrs) is False
    assert reviewer.allowed(bob, Attributes(verb="get", path="/apis")) is False


def test_a_missing_auth_configmap_is_a_clear_error(kube_client: Any) -> None:
    from faro.optimizer.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="extension-apiserver-authentication-reader"):
        load_auth_configmap(kube_client)


class Process:
    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "faro.optimizer.cli", "adapter", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def https_get(port: int, ca_pem: bytes, path: str, *, cert: tuple[Path, Path] | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body.decode()


def wait_healthy(proc: Process, port: int, ca_pem: bytes, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"adapter exited: {proc.proc.stderr.read() if proc.proc.stderr else ''}")
        try:
            if https_get(port, ca_pem, "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("adapter did not become healthy")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Any]:
    serving = CertificateAuthority("serving-ca")
    front = CertificateAuthority("front-proxy-ca")
    plan = tmp_path / "plan.json"
    plan.write_text(json_format.MessageToJson(make_plan(1, {("default", "resnet"): 4}, created_s=time.time())))
    return {
        "serving_ca": serving.cert_pem,
        "server": serving.issue("faro-adapter", server=True).write(tmp_path, "server"),
        "front_ca": front.cert_pem,
        "front_proxy": front.issue("front-proxy-client").write(tmp_path, "front-proxy"),
        "plan": plan,
    }


@pytest.mark.slow
def test_the_adapter_process_authenticates_and_authorises_through_the_api_server(
    kubeapi: Any, kube_client: Any, files: dict[str, Any], tmp_path: Path
) -> None:
    create_auth_configmap(kube_client, files["front_ca"].decode())
    kubeapi.token_users["hpa-token"] = {"username": HPA_USER, "groups": ["system:serviceaccounts"]}
    grant_external_metrics(kubeapi, {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                                     "namespace": "kube-system"}, ["get", "list", "watch"])
    port = free_port()
    proc = Process([
        "--plan-file", str(files["plan"]), "--secure-address", f"127.0.0.1:{port}",
        "--tls-cert-file", str(files["server"][0]), "--tls-private-key-file", str(files["server"][1]),
        "--metrics-address", f"127.0.0.1:{free_port()}", "--kubeconfig", str(kubeapi.kubeconfig(tmp_path / "kc")),
    ])
    try:
        wait_healthy(proc, port, files["serving_ca"])
        get = lambda **kw: https_get(port, files["serving_ca"], METRIC, **kw)  # noqa: E731
        code, body = get(headers={"Authorization": "Bearer hpa-token"})
        assert code == 200 and body["items"][0]["value"] == "4"
        code, body = get(cert=files["front_proxy"], headers={"X-Remote-User": HPA_USER})
        assert code == 200
        assert get(cert=files["front_proxy"], headers={"X-Remote-User": "eve"})[0] == 403
        assert get(headers={"X-Remote-User": HPA_USER})[0] == 401
        assert get(headers={"Authorization": "Bearer wrong"})[0] == 401
    finally:
        proc.stop()
    calls = {(e.verb, e.resource, e.namespace, e.name) for e in kubeapi.audit}
    assert ("get", "configmaps", "kube-system", "extension-apiserver-authentication") in calls
    assert ("create", "tokenreviews", "", "") in {(v, r, n, m) for v, r, n, m in calls if r == "tokenreviews"}
    assert any(r == "subjectaccessreviews" and v == "create" for v, r, _, _ in calls)


@pytest.mark.slow
def test_disable_auth_serves_anyone_and_warns_loudly(files: dict[str, Any]) -> None:
    port = free_port()
    proc = Process([
        "--plan-file", str(files["plan"]), "--secure-address", f"127.0.0.1:{port}",
        "--tls-cert-file", str(files["server"][0]), "--tls-private-key-file", str(files["server"][1]),
        "--metrics-address", f"127.0.0.1:{free_port()}",
    ], env={"FARO_DISABLE_AUTH": "true"})
    try:
        wait_healthy(proc, port, files["serving_ca"])
        code, body = https_get(port, files["serving_ca"], METRIC)
        assert code == 200 and body["items"][0]["value"] == "4"
    finally:
        err = proc.stop()
    assert "--disable-auth" in err and "ANYONE" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "exactly one of --optimizer-address or --plan-file", id="no-source"),
        pytest.param(["--plan-file", "/nonexistent/plan.json", "--disable-auth", "--tls-cert-file", "a",
                      "--tls-private-key-file", "b"], "--plan-file /nonexistent/plan.json", id="unreadable-plan-file"),
        pytest.param(["--optimizer-address", "x:1", "--mode", "keda", "--keda-address", "nope"],
                     "--keda-address", id="bad-address"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "faro.optimizer.cli", "adapter", *args], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def _configmap_data(front_proxy_ca_pem: str) -> dict[str, str]:
    return {"requestheader-client-ca-file": front_proxy_ca_pem, "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]', "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'}


def _adapter(files: dict[str, Any], kubeconfig: Path, port: int, *extra: str) -> Process:
    return Process([
        "--plan-file", str(files["plan"]), "--secure-address", f"127.0.0.1:{port}",
        "--tls-cert-file", str(files["server"][0]), "--tls-private-key-file", str(files["server"][1]),
        "--metrics-address", f"127.0.0.1:{free_port()}", "--kubeconfig", str(kubeconfig), *extra,
    ])


@pytest.mark.slow
def test_a_rotated_front_proxy_ca_in_the_configmap_is_trusted_without_a_restart(
    kubeapi: Any, kube_client: Any, files: dict[str, Any], tmp_path: Path
) -> None:
    from kubernetes import client

    create_auth_configmap(kube_client, files["front_ca"].decode())
    grant_external_metrics(kubeapi, {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                                     "namespace": "kube-system"}, ["get", "list", "watch"])
    rotated = CertificateAuthority("front-proxy-ca-2")
    new_proxy = rotated.issue("front-proxy-client").write(tmp_path, "front-proxy-2")
    port = free_port()
    proc = _adapter(files, kubeapi.kubeconfig(tmp_path / "kc"), port, "--auth-config-poll-s", "0.2")
    headers = {"X-Remote-User": HPA_USER}

    def as_proxy(cert: tuple[Path, Path]) -> int:
        try:
            return https_get(port, files["serving_ca"], METRIC, cert=cert, headers=headers)[0]
        except OSError:  # ssl.SSLError, ConnectionResetError: a certificate from an untrusted CA fails the handshake
            return -1

    try:
        wait_healthy(proc, port, files["serving_ca"])
        assert as_proxy(files["front_proxy"]) == 200
        assert as_proxy(new_proxy) == -1  # not trusted yet
        client.CoreV1Api(kube_client).patch_namespaced_config_map(
            "extension-apiserver-authentication", "kube-system", {"data": _configmap_data(rotated.cert_pem.decode())})
        deadline = time.monotonic() + 60
        while as_proxy(new_proxy) != 200:
            assert time.monotonic() < deadline and proc.proc.poll() is None, "the rotated CA was never trusted"
            time.sleep(0.2)
        assert as_proxy(files["front_proxy"]) in (-1, 401)  # the old CA is gone: no identity from its certificate
    finally:
        err = proc.stop()
    assert "auth ConfigMap changed" in err


@pytest.mark.slow
def test_front_proxy_users_are_in_system_authenticated(
    kubeapi: Any, kube_client: Any, files: dict[str, Any], tmp_path: Path
) -> None:
    """The access review of a front-proxy user carries system:authenticated, as kube-apiserver adds it to every
    authenticated user: a grant to that group (graded by the test API server's RBAC) lets carol in."""
    create_auth_configmap(kube_client, files["front_ca"].decode())
    grant_external_metrics(kubeapi, {"kind": "Group", "name": "system:authenticated",
                                     "apiGroup": "rbac.authorization.k8s.io"}, ["get", "list"])
    port = free_port()
    proc = _adapter(files, kubeapi.kubeconfig(tmp_path / "kc"), port)
    try:
        wait_healthy(proc, port, files["serving_ca"])
        code, _ = https_get(port, files["serving_ca"], METRIC, cert=files["front_proxy"],
                            headers={"X-Remote-User": "carol"})
        assert code == 200
    finally:
        proc.stop()


def test_an_auth_configmap_with_neither_ca_stops_the_adapter_with_one_clear_line(
    kubeapi: Any, kube_client: Any, files: dict[str, Any], tmp_path: Path
) -> None:
    from kubernetes import client

    client.CoreV1Api(kube_client).create_namespaced_config_map("kube-system", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="extension-apiserver-authentication", namespace="kube-system"),
        data={"requestheader-allowed-names": '["front-proxy-client"]'}))
    out = subprocess.run([sys.executable, "-m", "faro.optimizer.cli", "adapter", "--plan-file", str(files["plan"]),
                          "--secure-address", "127.0.0.1:0", "--tls-cert-file", str(files["server"][0]),
                          "--tls-private-key-file", str(files["server"][1]), "--metrics-address", "",
                          "--kubeconfig", str(kubeapi.kubeconfig(tmp_path / "kc"))],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert "has neither requestheader-client-ca-file nor client-ca-file" in out.stderr
    assert "Traceback" not in out.stderr

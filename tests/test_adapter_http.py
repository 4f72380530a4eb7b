"""The adapter's HTTPS External Metrics API with real TLS clients, real certificates and kubectl.

One adapter per module runs on a background loop (``LoopThread``) serving a plan file, with delegated auth
configured the way ``kube-system/extension-apiserver-authentication`` would (front-proxy CA, allowed names,
client CA) and fake TokenReview/SubjectAccessReview answers injected.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from adapter_fakes import LoopThread, make_plan
from faro.adapter.app import Adapter, AdapterConfig
from faro.adapter.auth import Attributes, Authenticator, Authorizer, UserInfo, auth_config_from_configmap
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pki import CertificateAuthority, KeyPair

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas"
FRONT_PROXY_HEADERS = {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                       "X-Remote-Group": "system:serviceaccounts"}
HPA_USER = FRONT_PROXY_HEADERS["X-Remote-User"]


@dataclass
class FakeReviewer:
    """TokenReview/SubjectAccessReview answers; records every review it is asked for."""

    tokens: dict[str, UserInfo] = field(default_factory=dict)
    allowed_users: set[str] = field(default_factory=set)
    calls: list[tuple[UserInfo, Attributes]] = field(default_factory=list)

    def review_token(self, token: str) -> UserInfo | None:
        return self.tokens.get(token)

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        self.calls.append((user, attrs))
        return user.name in self.allowed_users


@dataclass
class PKI:
    dir: Path
    serving_ca: CertificateAuthority
    server: tuple[Path, Path]
    front_proxy_ca: CertificateAuthority
    front_proxy: tuple[Path, Path]
    intruder: tuple[Path, Path]       # front-proxy CA, CN not in allowed names
    client_ca: CertificateAuthority
    alice: KeyPair                     # client CA user certificate
    alice_files: tuple[Path, Path]
    rogue: tuple[Path, Path]           # a CA nobody trusts


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    serving_ca, front_ca, client_ca = (CertificateAuthority(n) for n in ("serving-ca", "front-proxy-ca", "client-ca"))
    alice = client_ca.issue("alice", organizations=["team-a"])
    return PKI(
        dir=d,
        serving_ca=serving_ca,
        server=serving_ca.issue("faro-adapter", server=True).write(d, "server"),
        front_proxy_ca=front_ca,
        front_proxy=front_ca.issue("front-proxy-client").write(d, "front-proxy"),
        intruder=front_ca.issue("intruder").write(d, "intruder"),
        client_ca=client_ca,
        alice=alice,
        alice_files=alice.write(d, "alice"),
        rogue=CertificateAuthority("rogue-ca").issue("front-proxy-client").write(d, "rogue"),
    )


@dataclass
class Served:
    adapter: Adapter
    reviewer: FakeReviewer
    pki: PKI
    port: int
    metrics_port: int


def write_plan(path: Path, replicas: dict[tuple[str, str], int], *, created_s: float, valid_for_s: float) -> None:
    path.write_text(json_format.MessageToJson(make_plan(3, replicas, created_s=created_s, valid_for_s=valid_for_s)))


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def served(pki: PKI, loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    plan_path = tmp_path_factory.mktemp("plan") / "plan.json"
    write_plan(plan_path, {("default", "resnet"): 7, ("default", "bert"): 2}, created_s=time.time(), valid_for_s=3600)
    config = AdapterConfig(
        plan_file=plan_path,
        plan_ttl_s=3600,
        secure_address="127.0.0.1:0",
        tls_cert_file=pki.server[0],
        tls_private_key_file=pki.server[1],
        metrics_address="127.0.0.1:0",
    )
    auth_config = auth_config_from_configmap({
        "requestheader-client-ca-file": pki.front_proxy_ca.cert_pem.decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "client-ca-file": pki.client_ca.cert_pem.decode(),
    })
    reviewer = FakeReviewer(
        tokens={"good-token": UserInfo("bob", ("system:authenticated",))},
        allowed_users={HPA_USER, "alice", "bob", "cache-probe", "route-probe", "system:kube-aggregator"},
    )
    adapter = Adapter(
        config,
        authenticator=Authenticator(auth_config, token_reviewer=reviewer, clock=time.monotonic),
        authorizer=Authorizer(reviewer, clock=time.monotonic),
        client_ca_pem=auth_config.trusted_ca_pem,
    )
    loop_thread.run(adapter.start())
    assert adapter.secure_port and adapter.metrics_port
    yield Served(adapter, reviewer, pki, adapter.secure_port, adapter.metrics_port)
    loop_thread.run(adapter.stop())


def client_context(pki: PKI, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.serving_ca.cert_pem.decode())
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def get(
    served: Served, path: str, *, cert: tuple[Path, Path] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=client_context(served.pki, cert), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body.decode(errors="replace")


def as_front_proxy(served: Served, path: str, **headers: str) -> tuple[int, Any]:
    return get(served, path, cert=served.pki.front_proxy, headers={**FRONT_PROXY_HEADERS, **headers})


# --- discovery and the metric ------------------------------------------------------------------------------

def test_discovery_documents_have_the_shapes_kubernetes_clients_expect(served: Served) -> None:
    gv = {"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}
    assert as_front_proxy(served, "/apis") == (200, {
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{"name": "external.metrics.k8s.io", "versions": [gv], "preferredVersion": gv}],
    })
    assert as_front_proxy(served, "/apis/external.metrics.k8s.io") == (200, {
        "kind": "APIGroup", "apiVersion": "v1", "name": "external.metrics.k8s.io", "versions": [gv],
        "preferredVersion": gv,
    })
    assert as_front_proxy(served, "/apis/external.metrics.k8s.io/v1beta1") == (200, {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "external.metrics.k8s.io/v1beta1",
        "resources": [{"name": "faro_desired_replicas", "singularName": "", "namespaced": True,
                       "kind": "ExternalMetricValueList", "verbs": ["get"]}],
    })


def test_the_aggregators_availability_probe_gets_200(served: Served) -> None:
    # kube-aggregator probes the group-version with its front-proxy certificate as system:kube-aggregator.
    code, _ = get(served, "/apis/external.metrics.k8s.io/v1beta1", cert=served.pki.front_proxy,
                  headers={"X-Remote-User": "system:kube-aggregator"})
    assert code == 200


def test_the_metric_answers_one_value_for_the_selected_deployment(served: Served) -> None:
    code, body = as_front_proxy(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet")
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList" and body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    (item,) = body["items"]
    assert item["metricName"] == "faro_desired_replicas"
    assert item["metricLabels"] == {"deployment": "resnet"}
    assert item["value"] == "7"
    assert time.strptime(item["timestamp"], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        pytest.param(METRIC_PATH + "?labelSelector=deployment%3Dgpt", 404, "NotFound", id="unknown-deployment"),
        pytest.param(METRIC_PATH.replace("faro_desired_replicas", "cpu") + "?labelSelector=deployment%3Dresnet",
                     404, "NotFound", id="unknown-metric"),
        pytest.param(METRIC_PATH + "?labelSelector=deployment%3D%3D%3D", 400, "BadRequest", id="bad-selector"),
        pytest.param(METRIC_PATH, 400, "BadRequest", id="no-selector"),
        pytest.param(METRIC_PATH + "?labelSelector=deployment", 400, "BadRequest", id="selector-matches-several"),
        pytest.param("/apis/metrics.k8s.io/v1beta1", 404, "NotFound", id="unknown-path"),
    ],
)
def test_bad_requests_get_a_status_with_their_api_meaning(served: Served, path: str, code: int, reason: str) -> None:
    got, body = as_front_proxy(served, path)
    assert (got, body["kind"], body["status"], body["reason"]) == (code, "Status", "Failure", reason)
    assert body["code"] == code
    assert body["message"]


# --- authentication and authorisation ------------------------------------------------------------------------

def test_health_endpoints_need_no_authentication(served: Served) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        code, body = get(served, path)
        assert code == 200, (path, body)


@pytest.mark.parametrize(
    ("cert", "headers"),
    [
        pytest.param(None, {}, id="no-credentials"),
        pytest.param(None, FRONT_PROXY_HEADERS, id="headers-without-certificate"),
        pytest.param("intruder", FRONT_PROXY_HEADERS, id="front-proxy-cert-with-disallowed-cn"),
        pytest.param("front_proxy", {}, id="front-proxy-cert-without-user-header"),
        pytest.param(None, {"Authorization": "Bearer bad-token"}, id="rejected-token"),
    ],
)
def test_requests_without_a_verified_identity_get_401(
    served: Served, cert: str | None, headers: dict[str, str]
) -> None:
    code, body = get(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet",
                     cert=getattr(served.pki, cert) if cert else None, headers=headers)
    assert (code, body["reason"]) == (401, "Unauthorized")


def test_a_certificate_from_an_untrusted_ca_fails_the_tls_handshake(served: Served) -> None:
    def handshake(cert: tuple[Path, Path]) -> str:
        context = client_context(served.pki, cert)
        # TLS 1.2: the server judges the client certificate inside the handshake (with 1.3 the client's
        # handshake completes first and the refusal only shows as a closed connection afterwards).
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        raw = socket.create_connection(("127.0.0.1", served.port), timeout=30)  # a dead port fails here
        with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())

    assert handshake(served.pki.front_proxy) == "TLSv1.2"  # the server is up and completes trusted handshakes
    with pytest.raises(ssl.SSLError) as err:  # ConnectionRefusedError (a dead server) is not an SSLError
        handshake(served.pki.rogue)
    assert "EOF" in str(err.value) or "ALERT" in str(err.value.reason), err.value  # aborted mid-handshake
    assert handshake(served.pki.front_proxy) == "TLSv1.2"  # and it is still up


def test_a_user_the_access_review_denies_gets_403(served: Served) -> None:
    code, body = as_front_proxy(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet", **{"X-Remote-User": "eve"})
    assert (code, body["reason"]) == (403, "Forbidden")
    assert 'User "eve" cannot list resource "faro_desired_replicas"' in body["message"]


def test_the_access_review_sees_the_front_proxy_user_groups_and_resource(served: Served) -> None:
    before = len(served.reviewer.calls)
    code, _ = as_front_proxy(served, METRIC_PATH + "?labelSelector=deployment%3Dbert",
                             **{"X-Remote-User": "cache-probe", "X-Remote-Extra-Scopes": "a"})
    assert code == 200
    user, attrs = served.reviewer.calls[before]
    # kube-apiserver adds system:authenticated to every authenticated user, front-proxy ones included.
    assert user.name == "cache-probe" and user.groups == ("system:serviceaccounts", "system:authenticated")
    assert user.extra == (("scopes", ("a",)),)
    assert attrs == Attributes(verb="list", namespace="default", api_group="external.metrics.k8s.io",
                               version="v1beta1", resource="faro_desired_replicas", is_resource=True)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/apis/external.metrics.k8s.io/v1beta1/namespaces/default%2Fx/faro_desired_replicas",
                     id="encoded-slash-in-the-namespace"),
        pytest.param("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas%2fx",
                     id="encoded-slash-in-the-metric"),
        pytest.param("/apis/external.metrics.k8s.io%2Fv1beta1", id="encoded-slash-in-discovery"),
    ],
)
def test_an_encoded_slash_is_not_found_and_never_reviewed(served: Served, path: str) -> None:
    # Decoded, these paths have other segments than the router's parameters: an access review would judge
    # another namespace/resource than the handler serves. No name Kubernetes allows contains a slash.
    before = len(served.reviewer.calls)
    code, body = as_front_proxy(served, path + "?labelSelector=deployment%3Dresnet")
    assert (code, body["reason"]) == (404, "NotFound") and "%2F" in body["message"]
    assert len(served.reviewer.calls) == before
    assert get(served, path)[0] == 401  # without credentials: unauthenticated first, as kube-apiserver answers


def test_the_access_review_is_built_from_what_the_router_matched(served: Served) -> None:
    # %74 is "t": the path decodes to the metric route; the review names exactly what the handler serves.
    before = len(served.reviewer.calls)
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/defaul%74/faro_desired_replicas"
    code, _ = as_front_proxy(served, path + "?labelSelector=deployment%3Dresnet", **{"X-Remote-User": "route-probe"})
    assert code == 200
    _, attrs = served.reviewer.calls[before]
    assert (attrs.namespace, attrs.resource, attrs.verb) == ("default", "faro_desired_replicas", "list")


def test_access_reviews_are_cached(served: Served) -> None:
    for _ in range(3):
        assert as_front_proxy(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet",
                              **{"X-Remote-User": "cache-probe"})[0] == 200
    probes = [c for c in served.reviewer.calls if c[0].name == "cache-probe" and c[1].resource]
    assert len(set(probes)) == len(probes)  # one review per distinct (user, request) within the TTL


def test_a_client_ca_certificate_names_the_user_and_cannot_assert_front_proxy_headers(served: Served) -> None:
    before = len(served.reviewer.calls)
    code, _ = get(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet", cert=served.pki.alice_files,
                  headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"})
    assert code == 200
    assert served.reviewer.calls[before][0] == UserInfo("alice", ("team-a", "system:authenticated"))


def test_a_bearer_token_is_authenticated_by_token_review(served: Served) -> None:
    code, body = get(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet",
                     headers={"Authorization": "Bearer good-token"})
    assert code == 200 and body["items"][0]["value"] == "7"


def test_metrics_are_served_on_the_plain_http_address(served: Served) -> None:
    as_front_proxy(served, METRIC_PATH + "?labelSelector=deployment%3Dresnet")
    conn = http.client.HTTPConnection("127.0.0.1", served.metrics_port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    assert "faro_adapter_plan_fresh 1.0" in text
    assert 'faro_adapter_requests_total{code="200",handler="metric",surface="http"}' in text
    assert 'faro_adapter_auth_reviews_total{kind="subjectaccessreview",outcome="denied"}' in text


# --- kubectl ------------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_get_raw_returns_the_metric(served: Served, tmp_path: Path) -> None:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "adapter", "cluster": {
            "server": f"https://127.0.0.1:{served.port}",
            "certificate-authority-data": b64(served.pki.serving_ca.cert_pem)}}],
        "users": [{"name": "alice", "user": {
            "client-certificate-data": b64(served.pki.alice.cert_pem),
            "client-key-data": b64(served.pki.alice.key_pem)}}],
        "contexts": [{"name": "adapter", "context": {"cluster": "adapter", "user": "alice"}}],
        "current-context": "adapter",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(path), "get", "--raw",
         "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas?labelSelector=deployment%3Dresnet"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert [(i["metricName"], i["value"]) for i in body["items"]] == [("faro_desired_replicas", "7")]
    missing = subprocess.run(
        ["kubectl", "--kubeconfig", str(path), "get", "--raw",
         "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/faro_desired_replicas?labelSelector=deployment%3Dgpt"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr + missing.stdout


# --- fuzz ---------------------------------------------------------------------------------------------------

_SEGMENTS = st.sampled_from(["apis", "external.metrics.k8s.io", "v1beta1", "namespaces", "default",
                             "faro_desired_replicas", "", "..", "%2F", "healthz", "readyz", "x" * 300])
_SAFE_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(st.one_of(_SEGMENTS, _SAFE_TEXT), max_size=8),
    selector=st.one_of(st.none(), st.text(max_size=60)),
    header_name=st.sampled_from(["X-Remote-User", "X-Remote-Group", "X-Remote-Extra-A", "Authorization", "Accept",
                                 "X-Other"]),
    header_value=_SAFE_TEXT,
    with_cert=st.booleans(),
)
def test_fuzzed_requests_never_get_a_500(
    served: Served, segments: list[str], selector: str | None, header_name: str, header_value: str, with_cert: bool
) -> None:
    path = "/" + "/".join(urllib.parse.quote(s, safe="%.") for s in segments)
    if selector is not None:
        path += "?labelSelector=" + urllib.parse.quote(selector, safe="")
    headers = {**FRONT_PROXY_HEADERS, header_name: header_value.strip()} if with_cert else {header_name: header_value}
    code, body = get(served, path, cert=served.pki.front_proxy if with_cert else None, headers=headers)
    assert code < 500 or code == 503, (path, headers, body)
    if code >= 400 and isinstance(body, dict):
        assert body["kind"] == "Status" and body["code"] == code


def _unparsed(served: Served) -> float:
    return served.adapter.metrics.registry.get_sample_value(
        "faro_adapter_requests_total", {"surface": "http", "handler": "unparsed", "code": "400"}) or 0.0


def test_a_request_line_over_the_parser_limit_is_one_log_line_not_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp refuses a request line over 8 KiB in its parser (a plain 400) and logged a traceback for each
    # one: a log any client could fill.
    caplog.set_level(logging.DEBUG)
    before = _unparsed(served)
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    with client_context(served.pki, None).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    settle_by = time.monotonic() + 30
    while _unparsed(served) == before and time.monotonic() < settle_by:
        time.sleep(0.01)
    assert _unparsed(served) == before + 1
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("aiohttp", "faro.adapter.http"))]
    assert len(lines) == 1 and "does not parse as HTTP: 400 LineTooLong" in lines[0], lines
    assert len(lines[0]) < 300  # the 9,000 bytes are not copied into the log


def test_refused_requests_are_logged_at_most_once_a_second_and_all_counted(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
    from faro.adapter.metrics import AdapterMetrics
    from faro.adapter.provider import PlanStore
    from faro.adapter.server import RequestErrorLog
    from prometheus_client import CollectorRegistry

    now = [100.0]
    metrics = AdapterMetrics(CollectorRegistry(), PlanStore(ttl_s=60, clock=lambda: now[0]))
    errors = RequestErrorLog(logging.getLogger("test.unparsed"), metrics=metrics, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="test.unparsed")
    for _ in range(12):
        errors.exception("Error handling request from %s", "10.0.0.9", exc_info=LineTooLong("x" * 9000, 8190))
        now[0] += 0.25  # 12 bad requests in 3 s
    errors.debug("Error handling request from %s", "10.0.0.9", exc_info=BadHttpMessage("not http"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # at 100, 101, 102 and 103 s
    assert [line.endswith("(and 3 more since the last such line)") for line in lines] == [False, True, True, True]
    assert "BadHttpMessage: 'not http'" in lines[-1]
    assert not [r for r in caplog.records if r.exc_info]
    assert metrics.registry.get_sample_value(
        "faro_adapter_requests_total", {"surface": "http", "handler": "unparsed", "code": "400"}) == 13
    # A bug in a handler is not the client's doing: its traceback stays.
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        errors.exception("Error handling request from %s", "10.0.0.9", exc_info=exc)
    assert caplog.records[-1].exc_info and caplog.records[-1].levelno == logging.ERROR


# --- staleness with auth disabled --------------------------------------------------------------------------

def test_an_expired_plan_file_answers_503_and_readyz_still_reports_it(
    pki: PKI, loop_thread: LoopThread, tmp_path: Path
) -> None:
    plan_path = tmp_path / "plan.json"
    write_plan(plan_path, {("default", "resnet"): 7}, created_s=time.time() - 120, valid_for_s=60)
    config = AdapterConfig(plan_file=plan_path, secure_address="127.0.0.1:0", tls_cert_file=pki.server[0],
                           tls_private_key_file=pki.server[1], metrics_address=None)
    adapter = Adapter(config, authenticator=None, authorizer=None)
    loop_thread.run(adapter.start())
    try:
        local = Served(adapter, FakeReviewer(), pki, adapter.secure_port or 0, 0)
        code, body = get(local, METRIC_PATH + "?labelSelector=deployment%3Dresnet")  # no credentials: auth disabled
        assert (code, body["reason"]) == (503, "ServiceUnavailable")
        assert "valid_until" in body["message"]
        code, text = get(local, "/readyz")
        assert (code, text) == (200, "ok\n")  # ready (the APIService stays available); nothing else revealed
    finally:
        loop_thread.run(adapter.stop())

"""charts/faro rendered by real Helm (helm-python-sdk binds Helm's Go SDK): every mode and TLS option
renders objects that validate strictly for Kubernetes 1.29-1.34, wire together (Services, ports,
Secrets, caBundle), run locked down, and pass the optimizer and adapter only flags they accept."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from helm_render import by_key, render_chart, render_chart_files, validate_object, validate_values

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")

SUPPORTED = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]
NS = "faro-system"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

VARIANTS = {
    "defaults": {},
    "mode-keda": {"mode": "keda"},
    "mode-both": {"mode": "both", "adapter": {"keda": {"allowCrossNamespace": True}}},
    "keda-cert-manager-cluster-issuer": {"mode": "keda", "tls": {"mode": "certManager", "certManager": {
        "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}},
    "keda-insecure-dev": {"mode": "keda", "adapter": {"keda": {"insecure": True}}},
    "tls-cert-manager": {"tls": {"mode": "certManager"}},
    "tls-cert-manager-cluster-issuer": {
        "tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    },
    "tls-existing-secret": {"tls": {"mode": "existingSecret", "existingSecret": {
        "name": "my-tls", "caBundle": PEM, "optimizerName": "my-plan-tls", "adapterClientName": "my-client-tls"}}},
    "monitoring-and-network-policy": {"serviceMonitor": {"enabled": True}, "networkPolicy": {
        "apiServerFrom": [{"ipBlock": {"cidr": "10.0.0.10/32"}}],
        "planApiFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "one-namespace": {"optimizer": {"watchNamespace": "ml-serving"}},
    "ray-serve-actuator": {
        "optimizer": {
            "actuator": "ray-serve",
            "ray": {"dashboardUrl": "http://ray-head.ray.svc:8265", "tokenSecret": {"name": "ray-token"}},
            "clusterCap": {"cpu": "320", "memory": "1Ti", "nvidia.com/gpu": 8},
            "policy": "faro-penaltysum",
            "metricsPreset": "ray-serve",
        }
    },
    "plan-api-token": {"optimizer": {"planApi": {"clientAuth": "token"}}},
    "plan-api-insecure-dev": {"optimizer": {"planApi": {"insecure": True}}},
    "no-leader-election-one-replica": {
        "optimizer": {"replicas": 1, "leaderElection": {"enabled": False}, "hpaTolerance": 0},
        "adapter": {"replicas": 1},
    },
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    return {name: by_key(render_chart(values)) for name, values in VARIANTS.items()}


def _one(objects, kind, name=None):
    found = [o for (k, _, n), o in objects.items() if k == kind and (name is None or n == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kinds(objects):
    return sorted({k for k, _, _ in objects})


def _container(deployment):
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize(
    ("variant", "version"), [pytest.param(n, v, id=f"{n}@{v}") for n in VARIANTS for v in SUPPORTED]
)
def test_every_variant_validates_strictly_for_each_supported_kubernetes_version(rendered, variant, version):
    for (kind, _, name), obj in rendered[variant].items():
        try:
            validate_object(obj, version)
        except Exception as exc:
            pytest.fail(f"{variant}: {kind} {name} is invalid for {version}: {exc}")


def test_defaults_run_two_optimizers_with_leader_election_and_two_adapters(rendered):
    objects = rendered["defaults"]
    optimizer = _one(objects, "Deployment", "faro-optimizer")
    adapter = _one(objects, "Deployment", "faro-adapter")
    assert optimizer["spec"]["replicas"] == 2
    assert adapter["spec"]["replicas"] == 2
    args = _container(optimizer)["args"]
    assert args[0] == "optimizer"
    assert "--leader-elect" in args
    assert f"--lease-namespace={NS}" in args
    assert _container(adapter)["args"][0] == "adapter"
    for name in ("faro-optimizer", "faro-adapter"):
        assert _one(objects, "PodDisruptionBudget", name)["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(
    ("variant", "has_apiservice", "has_keda"),
    [("defaults", True, False), ("mode-keda", False, True), ("mode-both", True, True)],
)
def test_mode_decides_the_apiservice_and_the_keda_service(rendered, variant, has_apiservice, has_keda):
    objects = rendered[variant]
    assert (("APIService", "", "v1beta1.external.metrics.k8s.io") in objects) is has_apiservice
    assert (("Service", NS, "faro-keda-scaler") in objects) is has_keda
    # The HPA controller needs to read external metrics only from Faro's own APIService.
    assert (("ClusterRole", "", "faro-external-metrics-reader") in objects) is has_apiservice
    args = _container(_one(objects, "Deployment", "faro-adapter"))["args"]
    assert f"--mode={VARIANTS[variant].get('mode', 'apiService')}" in args
    assert any(a.startswith("--keda-address=") for a in args) is has_keda


def test_apiservice_points_at_the_adapter_service_whose_443_targets_the_named_https_port(rendered):
    objects = rendered["defaults"]
    apiservice = _one(objects, "APIService")
    assert apiservice["spec"]["group"] == "external.metrics.k8s.io"
    assert apiservice["spec"]["version"] == "v1beta1"
    ref = apiservice["spec"]["service"]
    service = objects[("Service", ref["namespace"], ref["name"])]
    (https,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
    assert https["port"] == 443
    assert https["targetPort"] == "https"
    deployment = _one(objects, "Deployment", "faro-adapter")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    assert f"--secure-address=0.0.0.0:{ports['https']}" in _container(deployment)["args"]


def test_the_keda_scaler_is_mtls_from_the_release_ca_handed_to_keda_by_a_cluster_trigger_authentication(
    rendered, tmp_path: Path
):
    objects = rendered["mode-keda"]
    adapter = _one(objects, "Deployment", "faro-adapter")
    tls_dir = _mounted(adapter, "faro-adapter-tls")
    args = _container(adapter)["args"]
    assert {f"--keda-tls-cert-file={tls_dir}/tls.crt", f"--keda-tls-private-key-file={tls_dir}/tls.key",
            f"--keda-client-ca-file={tls_dir}/ca.crt", "--keda-allowed-client-names=keda"} <= set(args)
    assert "--keda-allow-cross-namespace" not in args and "--keda-allow-cross-namespace" in _container(
        _one(rendered["mode-both"], "Deployment", "faro-adapter"))["args"]
    auth = _one(objects, "ClusterTriggerAuthentication", "faro-keda")
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"caCert": ("faro-keda-scaler-client", "ca.crt"), "tlsClientCert": ("faro-keda-scaler-client",
                    "tls.crt"), "tlsClientKey": ("faro-keda-scaler-client", "tls.key")}
    secret = objects[("Secret", "keda", "faro-keda-scaler-client")]  # where KEDA reads cluster-object Secrets
    keda_ca, keda_cert = tmp_path / "keda-ca.crt", tmp_path / "keda.crt"
    keda_ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    keda_cert.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    adapter_ca = _secret_file(objects, "faro-adapter-tls", "ca.crt", tmp_path / "adapter-ca.crt")
    serving = _secret_file(objects, "faro-adapter-tls", "tls.crt", tmp_path / "serving.crt")
    # KEDA verifies the scaler with caCert; the adapter verifies KEDA's certificate with its own ca.crt.
    _openssl("verify", "-CAfile", str(keda_ca), "-purpose", "sslserver", str(serving))
    _openssl("verify", "-CAfile", str(adapter_ca), "-purpose", "sslclient", str(keda_cert))
    assert "CN=keda" in _openssl("x509", "-in", str(keda_cert), "-noout", "-subject").replace(" ", "")
    assert "DNS:faro-keda-scaler.faro-system.svc" in _openssl("x509", "-in", str(serving), "-noout", "-ext",
                                                               "subjectAltName")
    assert ("ClusterTriggerAuthentication", "", "faro-keda") not in rendered["defaults"]


def test_keda_with_cert_manager_issues_kedas_certificate_in_kedas_namespace_from_the_cluster_issuer(rendered):
    objects = rendered["keda-cert-manager-cluster-issuer"]
    certificate = objects[("Certificate", "keda", "faro-keda-scaler-client")]
    assert certificate["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert certificate["spec"]["commonName"] == "keda" and "client auth" in certificate["spec"]["usages"]
    assert _one(objects, "ClusterTriggerAuthentication")["spec"]["secretTargetRef"][0]["name"] == \
        certificate["spec"]["secretName"]


def test_the_insecure_dev_keda_port_is_plaintext_and_needs_no_trigger_authentication(rendered):
    objects = rendered["keda-insecure-dev"]
    args = _container(_one(objects, "Deployment", "faro-adapter"))["args"]
    assert "--keda-insecure" in args and not any(a.startswith("--keda-tls") for a in args)
    assert "ClusterTriggerAuthentication" not in _kinds(objects)


def test_keda_service_targets_the_adapters_keda_port(rendered):
    objects = rendered["mode-keda"]
    service = _one(objects, "Service", "faro-keda-scaler")
    deployment = _one(objects, "Deployment", "faro-adapter")
    ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "keda"
    assert f"--keda-address=0.0.0.0:{ports['keda']}" in _container(deployment)["args"]


def _env(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_adapter_subscribes_to_the_optimizer_service_grpc_port(rendered):
    objects = rendered["defaults"]
    service = _one(objects, "Service", "faro-optimizer")
    (grpc,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    env = _env(_container(_one(objects, "Deployment", "faro-adapter")))
    assert env["FARO_OPTIMIZER_ADDRESS"] == f"faro-optimizer.{NS}.svc:{grpc['port']}"


def _secret_file(objects, name, key, path: Path) -> Path:
    path.write_bytes(base64.b64decode(_one(objects, "Secret", name)["data"][key]))
    return path


def _mounted(deployment, secret_name: str) -> str:
    """The mount path of the volume holding ``secret_name`` in the only container."""
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
    (mount,) = [m["mountPath"] for m in _container(deployment)["volumeMounts"] if m["name"] == volume]
    return mount


def test_the_plan_api_is_mtls_from_one_ca_the_adapter_client_name_is_the_allowed_one(rendered, tmp_path: Path):
    objects = rendered["defaults"]
    optimizer = _one(objects, "Deployment", "faro-optimizer")
    adapter = _one(objects, "Deployment", "faro-adapter")
    args = _container(optimizer)["args"]
    server_dir = _mounted(optimizer, "faro-optimizer-tls")
    client_dir = _mounted(adapter, "faro-adapter-client-tls")
    assert {f"--grpc-tls-cert-file={server_dir}/tls.crt", f"--grpc-tls-private-key-file={server_dir}/tls.key",
            "--grpc-client-auth=mtls", f"--grpc-client-ca-file={server_dir}/ca.crt",
            "--grpc-allowed-client-names=faro-adapter"} <= set(args)
    env = _env(_container(adapter))
    assert (env["FARO_OPTIMIZER_CA_FILE"], env["FARO_OPTIMIZER_CERT_FILE"], env["FARO_OPTIMIZER_KEY_FILE"]) == (
        f"{client_dir}/ca.crt", f"{client_dir}/tls.crt", f"{client_dir}/tls.key")
    ca = _secret_file(objects, "faro-optimizer-tls", "ca.crt", tmp_path / "ca.crt")
    assert ca.read_bytes() == base64.b64decode(_one(objects, "Secret", "faro-adapter-client-tls")["data"]["ca.crt"])
    server = _secret_file(objects, "faro-optimizer-tls", "tls.crt", tmp_path / "server.crt")
    client = _secret_file(objects, "faro-adapter-client-tls", "tls.crt", tmp_path / "client.crt")
    for cert, purpose in ((server, "sslserver"), (client, "sslclient")):
        _openssl("verify", "-CAfile", str(ca), "-purpose", purpose, str(cert))
    assert "DNS:faro-optimizer.faro-system.svc" in _openssl("x509", "-in", str(server), "-noout", "-ext",
                                                             "subjectAltName")
    assert "CN=faro-adapter" in _openssl("x509", "-in", str(client), "-noout", "-subject").replace(" ", "")


def test_plan_api_token_mode_sends_the_service_account_token_and_grants_plans_to_the_adapter(rendered):
    objects = rendered["plan-api-token"]
    args = _container(_one(objects, "Deployment", "faro-optimizer"))["args"]
    assert "--grpc-client-auth=token" in args and not any(a.startswith("--grpc-client-ca-file") for a in args)
    env = _env(_container(_one(objects, "Deployment", "faro-adapter")))
    assert env["FARO_OPTIMIZER_TOKEN_FILE"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert "FARO_OPTIMIZER_CERT_FILE" not in env
    reader = _one(objects, "ClusterRole", "faro-plan-reader")
    assert reader["rules"] == [{"apiGroups": ["faro.dev"], "resources": ["plans"], "verbs": ["get", "watch"]}]
    binding = _one(objects, "ClusterRoleBinding", "faro-plan-reader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "faro-adapter", "namespace": NS}]
    delegator = _one(objects, "ClusterRoleBinding", "faro-optimizer:system:auth-delegator")
    assert delegator["subjects"][0]["name"] == "faro-optimizer"
    assert ("ClusterRole", "", "faro-plan-reader") not in rendered["defaults"]


def test_the_insecure_dev_plan_api_is_plaintext_on_both_ends_and_mounts_no_certificate(rendered):
    objects = rendered["plan-api-insecure-dev"]
    optimizer = _one(objects, "Deployment", "faro-optimizer")
    assert "--grpc-insecure" in _container(optimizer)["args"]
    assert _env(_container(_one(objects, "Deployment", "faro-adapter")))["FARO_OPTIMIZER_INSECURE"] == "true"
    assert ("Secret", NS, "faro-optimizer-tls") not in objects


def _openssl(*args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_self_signed_tls_secret_is_signed_by_the_ca_in_the_apiservice_ca_bundle(rendered, tmp_path: Path):
    objects = rendered["defaults"]
    secret = _one(objects, "Secret", "faro-adapter-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca_bundle = base64.b64decode(_one(objects, "APIService")["spec"]["caBundle"])
    (tmp_path / "ca.crt").write_bytes(ca_bundle)
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    _openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt"))
    san = _openssl("x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-ext", "subjectAltName")
    for name in ("faro-adapter.faro-system.svc", "faro-keda-scaler.faro-system.svc"):
        assert f"DNS:{name}" in san
    volumes = _one(objects, "Deployment", "faro-adapter")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "faro-adapter-tls"}} in volumes


@pytest.mark.parametrize("variant", ["tls-cert-manager", "tls-cert-manager-cluster-issuer"])
def test_cert_manager_issues_the_mounted_secret_and_injects_the_ca_into_the_apiservice(rendered, variant):
    objects = rendered[variant]
    assert ("Secret", NS, "faro-adapter-tls") not in objects
    certificate = objects[("Certificate", NS, "faro-adapter")]
    assert certificate["spec"]["secretName"] == "faro-adapter-tls"
    assert "faro-adapter.faro-system.svc" in certificate["spec"]["dnsNames"]
    apiservice = _one(objects, "APIService")
    assert apiservice["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NS}/faro-adapter"
    assert "caBundle" not in apiservice["spec"]
    issuer = certificate["spec"]["issuerRef"]
    if variant.endswith("cluster-issuer"):
        assert issuer == {"name": "corp-ca", "kind": "ClusterIssuer"}
        assert "Issuer" not in _kinds(objects)
    else:
        ca_issuer = objects[("Issuer", NS, issuer["name"])]
        ca_cert = objects[("Certificate", NS, ca_issuer["spec"]["ca"]["secretName"])]
        assert ca_cert["spec"]["isCA"] is True


def test_existing_secret_is_mounted_and_its_ca_fills_the_ca_bundle(rendered):
    objects = rendered["tls-existing-secret"]
    assert "Secret" not in _kinds(objects)
    assert base64.b64decode(_one(objects, "APIService")["spec"]["caBundle"]).decode() == PEM
    volumes = _one(objects, "Deployment", "faro-adapter")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "my-tls"}} in volumes
    assert _mounted(_one(objects, "Deployment", "faro-adapter"), "my-client-tls") == "/etc/faro/plan-api"
    assert _mounted(_one(objects, "Deployment", "faro-optimizer"), "my-plan-tls") == "/etc/faro/plan-api"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"tls": {"mode": "existingSecret", "existingSecret": {"optimizerName": "o",
                                                                            "adapterClientName": "c"}}},
                     "tls.existingSecret.name is required", id="no-secret-name"),
        pytest.param(
            {"tls": {"mode": "existingSecret", "existingSecret": {"name": "x", "optimizerName": "o",
                                                                   "adapterClientName": "c"}}},
            "tls.existingSecret.caBundle is required",
            id="no-ca-bundle",
        ),
        pytest.param(
            {"tls": {"mode": "existingSecret", "existingSecret": {"name": "x", "caBundle": PEM}}},
            "tls.existingSecret.optimizerName is required",
            id="no-plan-api-secret",
        ),
        pytest.param(
            {"optimizer": {"actuator": "ray-serve"}}, "optimizer.ray.dashboardUrl is required", id="ray-without-url"
        ),
        pytest.param({"mode": "keda", "tls": {"mode": "certManager"}}, "needs tls.certManager.issuerRef of kind "
                     "ClusterIssuer", id="keda-cert-manager-with-the-namespaced-issuer"),
        pytest.param({"mode": "keda", "tls": {"mode": "existingSecret", "existingSecret": {
            "name": "x", "caBundle": PEM, "optimizerName": "o", "adapterClientName": "c"}}},
            "tls.existingSecret.kedaClientName is required", id="keda-existing-secret-without-kedas-secret"),
    ],
)
def test_incomplete_settings_fail_the_render_with_a_message_naming_the_value(values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render_chart(values)


@pytest.mark.parametrize(
    ("values", "path"),
    [
        pytest.param({"mode": "external"}, "/mode", id="unknown-mode"),
        pytest.param({"optimizer": {"quantile": 1.5}}, "/optimizer/quantile", id="quantile-above-1"),
        pytest.param({"optimizer": {"policy": "faro-max"}}, "/optimizer/policy", id="unknown-policy"),
        pytest.param({"optimizer": {"intervalSecond": 60}}, "/optimizer", id="misspelt-key"),
        pytest.param({"tls": {"mode": "none"}}, "/tls/mode", id="unknown-tls-mode"),
        pytest.param({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url", id="url-without-scheme"),
    ],
)
def test_values_schema_rejects_bad_values_naming_the_field(values, path):
    with pytest.raises(helm_python.HelmValuesError, match=path):
        validate_values(values)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_container_runs_locked_down_with_probes_and_resources(rendered, variant):
    for (kind, _, name), obj in rendered[variant].items():
        if kind != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["livenessProbe"] and container["readinessProbe"], name
            assert container["resources"]["requests"]["cpu"], name
            port_names = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in port_names, name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name


def test_optimizer_flags_carry_the_values(rendered):
    args = _container(_one(rendered["ray-serve-actuator"], "Deployment", "faro-optimizer"))["args"]
    assert "--cluster-cap=cpu=320,memory=1Ti,nvidia.com/gpu=8" in args
    assert "--policy=faro-penaltysum" in args
    assert "--metrics-preset=ray-serve" in args
    assert "--actuator=ray-serve" in args
    assert "--ray-dashboard-url=http://ray-head.ray.svc:8265" in args
    assert "--ray-token-file=/etc/faro/ray/token" in args
    defaults = _container(_one(rendered["defaults"], "Deployment", "faro-optimizer"))["args"]
    for flag in ("--interval-s=300", "--reactive-interval-s=10", "--horizon=7", "--quantile=0.9", "--plan-ttl-s=900"):
        assert flag in defaults
    assert "--no-leader-elect" in _container(
        _one(rendered["no-leader-election-one-replica"], "Deployment", "faro-optimizer")
    )["args"]
    assert "PodDisruptionBudget" not in _kinds(rendered["no-leader-election-one-replica"])
    assert "--hpa-tolerance=0" in _container(
        _one(rendered["no-leader-election-one-replica"], "Deployment", "faro-optimizer")
    )["args"]
    assert not any(a.startswith("--hpa-tolerance") for a in defaults)


# The flags of helper-contracts.md; the real parsers are checked below when the commands exist.
OPTIMIZER_FLAGS = {
    "--kubeconfig", "--namespace", "--prometheus-url", "--metrics-preset", "--policy", "--interval-s",
    "--reactive-interval-s", "--horizon", "--quantile", "--hpa-tolerance", "--cluster-cap", "--plan-ttl-s",
    "--grpc-address", "--metrics-address", "--leader-elect", "--no-leader-elect", "--lease-name", "--lease-namespace",
    "--actuator", "--ray-dashboard-url", "--ray-token-file", "--log-format",
    "--grpc-tls-cert-file", "--grpc-tls-private-key-file", "--grpc-client-auth", "--grpc-client-ca-file",
    "--grpc-allowed-client-names", "--grpc-insecure", "--grpc-max-message-bytes", "--grpc-max-concurrent-calls",
    "--grpc-max-streams-per-caller", "--solve-max-jobs", "--solve-max-horizon", "--solve-max-time-s",
    "--solve-solvers", "--solve-max-concurrent", "--solve-max-per-caller",
}  # fmt: skip
ADAPTER_FLAGS = {
    "--optimizer-address", "--plan-file", "--ignore-plan-expiry", "--plan-ttl-s", "--mode", "--secure-address",
    "--tls-cert-file", "--tls-private-key-file", "--keda-address", "--keda-tls-cert-file",
    "--keda-tls-private-key-file", "--metrics-address", "--kubeconfig", "--requestheader-client-ca-file",
    "--disable-auth", "--log-format", "--keda-client-ca-file", "--keda-allowed-client-names",
    "--keda-allow-cross-namespace", "--keda-insecure",
}  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("component", "flags"), [("optimizer", OPTIMIZER_FLAGS), ("adapter", ADAPTER_FLAGS)])
def test_templated_flags_are_the_contracted_ones_and_the_real_cli_parses_them(rendered, variant, component, flags):
    args = _container(_one(rendered[variant], "Deployment", f"faro-{component}"))["args"]
    assert args[0] == component
    used = {a.split("=", 1)[0] for a in args[1:]}
    assert used <= flags, f"flags outside the contract: {used - flags}"
    from faro.optimizer.cli import build_parser

    parser = build_parser()
    if component not in parser._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        pytest.skip(f"`faro {component}` is not built yet")
    parsed = parser.parse_args(args)  # exits (SystemExit) on a flag the real command does not accept
    assert parsed.command == component


def test_notes_show_how_to_annotate_a_deployment_create_the_hpa_and_watch_it():
    notes = render_chart_files({})["faro/templates/NOTES.txt"]
    wanted = ("faro.dev/enabled=true", "faro.dev/slo-latency-ms", "faro_desired_replicas", "kubectl -n <ns> get hpa")
    for text in wanted:
        assert text in notes
    keda_notes = render_chart_files({"mode": "keda"})["faro/templates/NOTES.txt"]
    assert "scalerAddress: faro-keda-scaler.faro-system.svc:9443" in keda_notes
    assert "v1beta1.external.metrics.k8s.io" not in keda_notes


def test_watching_one_namespace_turns_the_optimizer_cluster_role_into_a_role_there(rendered):
    objects = rendered["one-namespace"]
    assert ("Role", "ml-serving", "faro-optimizer") in objects
    assert ("ClusterRole", "", "faro-optimizer") not in objects
    assert "--namespace=ml-serving" in _container(_one(objects, "Deployment", "faro-optimizer"))["args"]


def test_network_policy_admits_plans_only_from_the_adapter(rendered):
    objects = rendered["defaults"]
    policy = objects[("NetworkPolicy", NS, "faro-optimizer")]
    (grpc_rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"]
    adapter_labels = _one(objects, "Deployment", "faro-adapter")["spec"]["selector"]["matchLabels"]
    assert grpc_rule["from"] == [{"podSelector": {"matchLabels": adapter_labels}}]
    monitors = {n for (k, _, n) in rendered["monitoring-and-network-policy"] if k == "ServiceMonitor"}
    assert monitors == {"faro-optimizer", "faro-adapter"}


# ---------------------------------------------------------------------------------------------- NetworkPolicy


def _admits(policy: dict, port_name: str, *, namespace: str, pod_labels: dict | None = None,
            ip: str = "192.0.2.1") -> bool:
    """Whether ``policy`` lets a source (a pod with ``pod_labels`` in ``namespace``, at ``ip``) reach the named
    container port, by the NetworkPolicy rules of the Kubernetes API (peers OR-ed, rules OR-ed)."""
    import ipaddress

    ns_labels = {"kubernetes.io/metadata.name": namespace}

    def matches(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())

    def peer_ok(peer: dict) -> bool:
        if "ipBlock" in peer:
            return ipaddress.ip_address(ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
        in_ns = matches(peer["namespaceSelector"], ns_labels) if "namespaceSelector" in peer else \
            namespace == policy["metadata"]["namespace"]
        pods_ok = "podSelector" not in peer or (pod_labels is not None and matches(peer["podSelector"], pod_labels))
        return in_ns and pods_ok

    for rule in policy["spec"].get("ingress", []):
        if not any(p["port"] == port_name for p in rule.get("ports", [])):
            continue
        if "from" not in rule or any(peer_ok(peer) for peer in rule["from"]):
            return True
    return False


def test_network_policies_are_on_by_default_and_admit_each_port_only_from_its_callers(rendered):
    objects = rendered["defaults"]
    optimizer = objects[("NetworkPolicy", NS, "faro-optimizer")]
    adapter = objects[("NetworkPolicy", NS, "faro-adapter")]
    adapter_pod = _one(objects, "Deployment", "faro-adapter")["spec"]["template"]["metadata"]["labels"]
    assert _admits(optimizer, "grpc", namespace=NS, pod_labels=adapter_pod)
    assert not _admits(optimizer, "grpc", namespace=NS, pod_labels={"app": "other"})
    assert not _admits(optimizer, "grpc", namespace="team-a", pod_labels=adapter_pod)  # same labels, other namespace
    assert _admits(optimizer, "metrics", namespace="monitoring", pod_labels={"app": "prometheus"})
    assert _admits(adapter, "https", namespace="anywhere")  # no apiServerFrom given: kube-apiserver's IPs unknown
    assert not _admits(adapter, "keda", namespace="keda")  # mode apiService serves no KEDA port
    assert ("NetworkPolicy", NS, "faro-adapter") not in rendered["no-network-policy"]


def test_network_policy_peers_are_configurable(rendered):
    objects = rendered["monitoring-and-network-policy"]
    optimizer = objects[("NetworkPolicy", NS, "faro-optimizer")]
    adapter = objects[("NetworkPolicy", NS, "faro-adapter")]
    assert _admits(adapter, "https", namespace="kube-system", ip="10.0.0.10")
    assert not _admits(adapter, "https", namespace="kube-system", ip="10.0.0.11")
    assert _admits(optimizer, "grpc", namespace="ops", pod_labels={"app": "faro-status"})
    assert not _admits(optimizer, "grpc", namespace="team-a", pod_labels={"app": "faro-status"})


def test_in_keda_mode_the_keda_port_admits_only_kedas_namespace_and_no_https_port_is_open(rendered):
    objects = rendered["mode-keda"]
    adapter = objects[("NetworkPolicy", NS, "faro-adapter")]
    assert _admits(adapter, "keda", namespace="keda", pod_labels={"app": "keda-operator"})
    assert not _admits(adapter, "keda", namespace="team-a", pod_labels={"app": "keda-operator"})
    assert not _admits(adapter, "https", namespace="kube-system")
    ports = {p["name"] for p in _container(_one(objects, "Deployment", "faro-adapter"))["ports"]}
    assert ports == {"keda", "metrics"}

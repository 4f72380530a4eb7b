"""The chart's Deployments run: ``faro optimizer`` and ``faro adapter`` started with exactly the args and env the
rendered chart gives (every mode and TLS option), their rendered probes answered, and the ports wired together.

For each variant, real Helm (helm-python-sdk) renders ``charts/faro``; the test API server (``tests/kubeapi``)
holds the rendered RBAC and ServiceAccounts, and each process talks to it with its own ServiceAccount's token
(the server enforces RBAC: a call the chart does not grant fails the test at teardown). Mounted Secrets become
directories: the Secrets Helm generates (``tls.mode=selfSigned``) are used as rendered; for cert-manager and
existing Secrets, ``tests/pki.py`` issues what those Certificates / the documented keys hold. The only rewrites
are the ones a cluster would do: mount paths → those directories, ``0.0.0.0:<containerPort>`` → a free port on
127.0.0.1, the optimizer Service's DNS name → 127.0.0.1 (with ``FARO_OPTIMIZER_SERVER_NAME`` naming the
Service, as DNS would), ``fieldRef`` env → values, and the in-cluster configuration → a kubeconfig (KUBECONFIG).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from helm_render import by_key, render_chart
from stack_helpers import FaroProcess, eventually

pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")

NS = "faro-system"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CLUSTER_ISSUER = {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keda-plan-api-token": {"mode": "keda", "optimizer": {"planApi": {"clientAuth": "token"}}},
    "mode-both": {"mode": "both", "adapter": {"keda": {"allowCrossNamespace": True}}},
    "both-cert-manager": {"mode": "both", "tls": {"mode": "certManager", "certManager": CLUSTER_ISSUER}},
    "both-existing-secrets": {"mode": "both", "tls": {"mode": "existingSecret", "existingSecret": {
        "name": "my-tls", "caBundle": PEM, "optimizerName": "my-plan-tls", "adapterClientName": "my-client-tls",
        "kedaClientName": "my-keda-tls"}}},
    "insecure-dev": {"mode": "both", "optimizer": {"planApi": {"insecure": True}},
                     "adapter": {"keda": {"insecure": True}}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _tls_secret_roles(values: dict[str, Any]) -> dict[str, str]:
    """Secret name → what it holds, for the TLS modes whose Secrets Helm does not render."""
    existing = values.get("tls", {}).get("existingSecret", {})
    return {
        existing.get("name", "faro-adapter-tls"): "adapter-serving",
        existing.get("optimizerName", "faro-optimizer-tls"): "optimizer-serving",
        existing.get("adapterClientName", "faro-adapter-client-tls"): "adapter-client",
        existing.get("kedaClientName", "faro-keda-scaler-client"): "keda-client",
    }


def materialise_secrets(objects: dict, values: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Secret name → a directory with its files (tls.crt, tls.key, ca.crt)."""
    from pki import CertificateAuthority

    out: dict[str, Path] = {}
    for (kind, _, name), obj in objects.items():  # as Helm generated them
        if kind == "Secret" and obj.get("type") == "kubernetes.io/tls":
            d = directory / name
            d.mkdir(parents=True)
            for key, data in obj["data"].items():
                (d / key).write_bytes(base64.b64decode(data))
            out[name] = d
    if out:
        return out
    ca = CertificateAuthority("corp-ca")  # what cert-manager's issuer or the operator would sign with
    issued = {
        "adapter-serving": lambda: ca.issue("faro-adapter", server=True, hosts=[
            "faro-adapter.faro-system.svc", "faro-keda-scaler.faro-system.svc"]),
        "optimizer-serving": lambda: ca.issue("faro-optimizer", server=True, hosts=["faro-optimizer.faro-system.svc"]),
        "adapter-client": lambda: ca.issue("faro-adapter"),
        "keda-client": lambda: ca.issue("keda"),
    }
    for name, role in _tls_secret_roles(values).items():
        d = directory / name
        d.mkdir(parents=True)
        pair = issued[role]()
        (d / "tls.crt").write_bytes(pair.cert_pem)
        (d / "tls.key").write_bytes(pair.key_pem)
        (d / "ca.crt").write_bytes(ca.cert_pem)
        out[name] = d
    return out


@dataclass
class Pod:
    """One Deployment's container, turned into a local process."""

    name: str
    process: FaroProcess
    ports: dict[str, int]  # container port name -> local port
    probes: dict[str, dict]


def pod(deployment: dict, *, secrets: dict[str, Path], ports: dict[int, int], env_extra: dict[str, str],
        token_file: Path, log_dir: Path) -> Pod:
    spec = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            mounts[mount["mountPath"]] = str(secrets[volume["secret"]["secretName"]])

    def local(text: str) -> str:
        for mount_path, path in mounts.items():
            text = text.replace(mount_path + "/", path + "/")
        text = text.replace(TOKEN_PATH, str(token_file))
        for container_port, port in ports.items():
            text = text.replace(f"0.0.0.0:{container_port}", f"127.0.0.1:{port}")
        return text

    field_values = {"metadata.namespace": NS, "metadata.name": deployment["metadata"]["name"] + "-0"}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = local(item["value"])
        else:
            env[item["name"]] = field_values[item["valueFrom"]["fieldRef"]["fieldPath"]]
    env.update(env_extra)
    args = [local(a) for a in container["args"]]
    process = FaroProcess(args[0], args[1:], log_dir / f"{deployment['metadata']['name']}.log", env=env)
    named = {p["name"]: ports[p["containerPort"]] for p in container["ports"]}
    probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container}
    return Pod(deployment["metadata"]["name"], process, named, probes)


def probe(p: Pod, kind: str) -> int:
    """The HTTP status of the rendered probe (0 when nothing answers)."""
    get = p.probes[kind]["httpGet"]
    port = get["port"] if isinstance(get["port"], int) else p.ports[get["port"]]
    scheme = get.get("scheme", "HTTP").lower()
    context = ssl._create_unverified_context() if scheme == "https" else None  # kubelet does not verify
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}{get['path']}", timeout=5, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@dataclass
class Running:
    objects: dict
    optimizer: Pod
    adapter: Pod
    secrets: dict[str, Path]
    values: dict[str, Any]


@pytest.fixture(params=list(VARIANTS))
def running(request: pytest.FixtureRequest, kubeapi: Any, tmp_path: Path) -> Iterator[Running]:
    from pki import CertificateAuthority

    values = VARIANTS[request.param]
    objects = by_key(render_chart(values))
    kubeapi.load(list(objects.values()))  # ServiceAccounts, Roles, ClusterRoles and bindings as the chart makes them
    front = CertificateAuthority("front-proxy-ca")
    kubeapi.load([{"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                   "data": {"requestheader-client-ca-file": front.cert_pem.decode(),
                            "requestheader-allowed-names": '["front-proxy-client"]'}}])
    secrets = materialise_secrets(objects, values, tmp_path / "secrets")
    pods: dict[str, Pod] = {}
    ports = {p: free_port() for name in ("faro-optimizer", "faro-adapter")
             for p in (c["containerPort"] for c in _container(objects[("Deployment", NS, name)])["ports"])}
    for name in ("faro-optimizer", "faro-adapter"):
        deployment = objects[("Deployment", NS, name)]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        token = kubeapi.service_account_token(NS, account)
        token_file = tmp_path / f"{name}.token"
        token_file.write_text(token)
        env = {"KUBECONFIG": str(kubeapi.kubeconfig(tmp_path / f"{name}.kubeconfig", token=token)),
               "PYTHONUNBUFFERED": "1"}
        container_env = {e["name"]: e.get("value", "") for e in _container(deployment).get("env", [])}
        if "FARO_OPTIMIZER_ADDRESS" in container_env:  # what cluster DNS would do for the optimizer's Service
            service, _, port = container_env["FARO_OPTIMIZER_ADDRESS"].rpartition(":")
            env["FARO_OPTIMIZER_ADDRESS"] = f"127.0.0.1:{ports[int(port)]}"
            if container_env.get("FARO_OPTIMIZER_INSECURE") != "true":
                env["FARO_OPTIMIZER_SERVER_NAME"] = service
        pods[name] = pod(deployment, secrets=secrets, ports=ports, env_extra=env, token_file=token_file,
                         log_dir=tmp_path)
    try:
        for p in pods.values():
            p.process.start()
        yield Running(objects, pods["faro-optimizer"], pods["faro-adapter"], secrets, values)
    finally:
        for p in pods.values():
            p.process.stop()


def _keda_credentials(running: Running) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    """What KEDA builds from the chart's ClusterTriggerAuthentication (None: the insecure dev mode)."""
    auths = [o for (k, _, _), o in running.objects.items() if k == "ClusterTriggerAuthentication"]
    if not auths:
        return None, []
    params = {r["parameter"]: (running.secrets[r["name"]] / r["key"]).read_bytes()
              for r in auths[0]["spec"]["secretTargetRef"]}
    creds = grpc.ssl_channel_credentials(root_certificates=params["caCert"], private_key=params.get("tlsClientKey"),
                                         certificate_chain=params.get("tlsClientCert"))
    return creds, [("grpc.ssl_target_name_override", "faro-keda-scaler.faro-system.svc")]


@pytest.mark.slow
def test_the_rendered_deployments_run_answer_their_probes_and_carry_plans_to_keda_and_hpas(running: Running) -> None:
    optimizer, adapter = running.optimizer, running.adapter

    def alive() -> bool:
        optimizer.process.check_alive()
        adapter.process.check_alive()
        return True

    for p in (optimizer, adapter):
        for kind in ("startupProbe", "livenessProbe"):
            if kind in p.probes:
                eventually(lambda p=p, kind=kind: alive() and probe(p, kind) == 200, timeout_s=120,
                           what=f"{p.name} {kind} 200")
    # Ready means: the optimizer leads and publishes; the adapter received a plan over the plan API (TLS,
    # mTLS or a token as the variant's env says).
    for p in (optimizer, adapter):
        eventually(lambda p=p: alive() and probe(p, "readinessProbe") == 200, timeout_s=120,
                   what=f"{p.name} readinessProbe 200")
    assert _readyz_body(adapter) == "ok"

    mode = running.values.get("mode", "apiService")
    if mode in ("keda", "both"):
        from faro.externalscaler import externalscaler_pb2 as pb
        from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc

        creds, options = _keda_credentials(running)
        address = f"127.0.0.1:{adapter.ports['keda']}"
        channel = grpc.secure_channel(address, creds, options=options) if creds else grpc.insecure_channel(address)
        with channel:
            ref = pb.ScaledObjectRef(name="resnet", namespace="team-a", scalerMetadata={"deployment": "resnet"})
            spec = pb_grpc.ExternalScalerStub(channel).GetMetricSpec(ref, timeout=30)
        assert spec.metricSpecs[0].metricName == "faro_desired_replicas"
    if mode in ("apiService", "both"):
        apiservice = running.objects[("APIService", "", "v1beta1.external.metrics.k8s.io")]
        ca = base64.b64decode(apiservice["spec"]["caBundle"]) if "caBundle" in apiservice["spec"] else None
        if ca is not None and b"MIIB\n" not in ca:  # the aggregator's view: caBundle verifies the serving cert
            context = ssl.create_default_context(cadata=ca.decode())
            context.check_hostname = False  # we dial 127.0.0.1; the name is checked below
            with urllib.request.urlopen(f"https://127.0.0.1:{adapter.ports['https']}/livez", timeout=10,
                                        context=context) as response:
                assert response.status == 200


def _readyz_body(p: Pod) -> str:
    get = p.probes["readinessProbe"]["httpGet"]
    with urllib.request.urlopen(f"http://127.0.0.1:{p.ports[get['port']]}{get['path']}", timeout=5) as response:
        return response.read().decode().strip()


def test_every_mode_and_tls_option_of_the_chart_is_a_variant_here() -> None:
    covered = {(v.get("mode", "apiService"), v.get("tls", {}).get("mode", "selfSigned")) for v in VARIANTS.values()}
    assert {"apiService", "keda", "both"} == {mode for mode, _ in covered}
    assert {"selfSigned", "certManager", "existingSecret"} == {tls for _, tls in covered}
    auth = {v.get("optimizer", {}).get("planApi", {}).get("clientAuth", "mtls") for v in VARIANTS.values()}
    assert auth == {"mtls", "token"}
    assert json.dumps(VARIANTS)  # plain values, as a user would give them

"""The kustomize base, the cert-manager overlay and the examples build with ``kubectl kustomize`` and
validate strictly against the Kubernetes OpenAPI schemas of every supported version; the examples wire
each opted-in Deployment to Faro the way docs/hpa-and-keda.md says."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helm_render import (
    MANIFESTS,
    by_key,
    kubectl,
    kustomize_build,
    read_kustomization,
    render_chart,
    validate_object,
    validate_object_uncached,
)

pytest.importorskip("kubernetes_validate")

SUPPORTED = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]
TOLERANCE_FROM = ["1.33.0", "1.34.0"]

KUSTOMIZATIONS = {
    "base": SUPPORTED,
    "overlays/cert-manager": SUPPORTED,
    "examples/apps": SUPPORTED,
    "examples/hpa": SUPPORTED,
    "examples/keda": SUPPORTED,
    "examples/hpa-tolerance": TOLERANCE_FROM,
}


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {name: kustomize_build(MANIFESTS / name) for name in KUSTOMIZATIONS}


@pytest.mark.parametrize(
    ("name", "version"),
    [pytest.param(name, v, id=f"{name}@{v}") for name, versions in KUSTOMIZATIONS.items() for v in versions],
)
def test_kustomization_validates_strictly_for_each_supported_kubernetes_version(built, name, version):
    objects = built[name]
    assert objects, f"{name} built no objects"
    for obj in objects:
        try:
            validate_object(obj, version)
        except Exception as exc:  # name the object in the failure
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata'].get('name')} is invalid for {version}: {exc}")


def test_hpa_tolerance_field_is_rejected_before_kubernetes_1_33(built):
    hpas = [o for o in built["examples/hpa-tolerance"] if o["kind"] == "HorizontalPodAutoscaler"]
    with pytest.raises(Exception, match="tolerance"):
        validate_object_uncached(hpas[0], "1.32.0")


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_file_reader_fallback_builds_what_kubectl_kustomize_builds(name):
    assert by_key(read_kustomization(MANIFESTS / name)) == by_key(kustomize_build(MANIFESTS / name))


def _opted_in(objects):
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"].get("labels", {}).get("faro.dev/enabled") == "true"
    }


def test_example_deployments_opt_in_with_a_latency_slo_and_known_annotations(built):
    deployments = _opted_in(built["examples/apps"])
    assert set(deployments) == {"resnet", "sentiment"}
    from faro.optimizer.kube.annotations import KNOWN, parse_annotations

    known = set(KNOWN)
    for name, dep in deployments.items():
        annotations = dep["metadata"]["annotations"]
        assert float(annotations["faro.dev/slo-latency-ms"]) > 0, name
        faro_keys = {k for k in annotations if k.startswith("faro.dev/")}
        assert faro_keys <= known, f"{name}: unknown annotations {faro_keys - known}"
        parsed, problems = parse_annotations(annotations, namespace="ml-serving", name=name)
        assert parsed is not None and not problems, f"{name}: the optimizer rejects {problems}"
        assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"], name
    assert deployments["sentiment"]["metadata"]["annotations"]["faro.dev/metrics-preset"] == "ray-serve"


def test_example_namespace_is_bounded_by_a_resource_quota(built):
    quotas = [o for o in built["examples/apps"] if o["kind"] == "ResourceQuota"]
    assert len(quotas) == 1
    assert {"requests.cpu", "requests.memory"} <= set(quotas[0]["spec"]["hard"])


@pytest.mark.parametrize(("name", "tolerance"), [("examples/hpa", None), ("examples/hpa-tolerance", 0)])
def test_every_opted_in_deployment_gets_an_hpa_on_faro_desired_replicas(built, name, tolerance):
    objects = built[name]
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == set(_opted_in(objects))
    for target, hpa in hpas.items():
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"] == {
            "name": "faro_desired_replicas",
            "selector": {"matchLabels": {"deployment": target}},
        }
        assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleDown"].get("tolerance") == tolerance
        assert behavior["scaleUp"].get("tolerance") == tolerance


def test_every_opted_in_deployment_gets_a_scaled_object_pointing_at_the_chart_keda_service(built):
    pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")
    objects = built["examples/keda"]
    chart = by_key(render_chart({"mode": "keda"}))
    service = chart[("Service", "faro-system", "faro-keda-scaler")]
    address = f"faro-keda-scaler.faro-system.svc:{service['spec']['ports'][0]['port']}"
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == "ScaledObject"}
    assert set(scaled) == set(_opted_in(objects))
    for target, so in scaled.items():
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "external"
        assert trigger["metadata"] == {"scalerAddress": address, "deployment": target}
        # TLS to the scaler: the chart's ClusterTriggerAuthentication carries the CA and KEDA's certificate.
        auth = chart[("ClusterTriggerAuthentication", "", trigger["authenticationRef"]["name"])]
        assert trigger["authenticationRef"]["kind"] == "ClusterTriggerAuthentication"
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"caCert", "tlsClientCert", "tlsClientKey"}


def test_self_signed_script_makes_a_certificate_the_ca_verifies_for_the_adapter_services(tmp_path: Path):
    script = MANIFESTS / "tls" / "self-signed.sh"
    subprocess.run(["bash", str(script), "--out", str(tmp_path), "--days", "2"], check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    san = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for name in ("faro-adapter.faro-system.svc", "faro-keda-scaler.faro-system.svc"):
        assert f"DNS:{name}" in san


def test_self_signed_script_certificates_carry_the_plan_api_mtls_end_to_end(tmp_path: Path):
    """The optimizer's serving pair and the adapter's client pair the script makes work with the real plan API
    server and the product's client helper (the name the adapter dials, faro-optimizer.faro-system.svc)."""
    import time

    from faro.optimizer.policy.base import Target
    from faro.optimizer.service.grpc_api import PlanServer, PlanServicer
    from faro.optimizer.service.grpc_security import CallGuard, ServerTLS
    from faro.optimizer.service.plan_client import PlanClientTLS
    from faro.optimizer.service.plans import PlanStore, PublishedPlan
    from faro.optimizer.service.whatif import SolveLimits, WhatIfSolver
    from faro.v1 import plan_pb2, plan_pb2_grpc

    subprocess.run(["bash", str(MANIFESTS / "tls" / "self-signed.sh"), "--out", str(tmp_path), "--days", "2"],
                   check=True, timeout=120, capture_output=True)  # fmt: skip
    store = PlanStore()
    store.publish(PublishedPlan(generation=7, created_s=time.time(), valid_until_s=time.time() + 60,
                                targets=(Target("a", "b", 1, 1),)))
    tls = ServerTLS(cert_file=tmp_path / "optimizer.crt", key_file=tmp_path / "optimizer.key",
                    client_ca_file=tmp_path / "ca.crt", allowed_client_names=("faro-adapter",))
    servicer = PlanServicer(store, is_leader=lambda: True, leader_name=lambda: "x",
                            guard=CallGuard(mode="mtls", allowed_client_names=("faro-adapter",)),
                            whatif=WhatIfSolver(SolveLimits()))
    server = PlanServer("127.0.0.1:0", servicer, tls=tls)
    server.start()
    client = PlanClientTLS(ca_file=tmp_path / "ca.crt", cert_file=tmp_path / "client.crt",
                           key_file=tmp_path / "client.key", server_name="faro-optimizer.faro-system.svc")
    try:
        with client.channel(f"127.0.0.1:{server.port}") as channel:
            plan = plan_pb2_grpc.PlanServiceStub(channel).GetPlan(plan_pb2.GetPlanRequest(), timeout=30)
        assert plan.generation == 7
    finally:
        store.close()
        server.stop(0)

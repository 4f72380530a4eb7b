"""The kustomize base is the chart with default values, and the cert-manager overlay is the chart with
tls.mode=certManager: the same objects, up to Helm's own labels and the TLS material Helm generates at
install (regenerate with ``python tests/helm_render.py --write-base``)."""

from __future__ import annotations

import pytest
from helm_render import MANIFESTS, by_key, kustomize_build, normalise, render_chart

pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")


def _kustomized(path):
    # The base adds the Namespace that `helm install --create-namespace` makes.
    return by_key(o for o in kustomize_build(path) if o["kind"] != "Namespace")


def _chart(values):
    out = {}
    for obj in render_chart(values):
        if obj["kind"] == "Secret" and obj.get("type") == "kubernetes.io/tls":
            continue  # generated at install
        obj = normalise(obj)
        if obj["kind"] == "APIService":
            obj["spec"].pop("caBundle", None)
        out[(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
    return out


@pytest.mark.parametrize(
    ("path", "values"),
    [
        pytest.param("base", {}, id="base-is-chart-defaults"),
        pytest.param("overlays/cert-manager", {"tls": {"mode": "certManager"}}, id="cert-manager-overlay"),
    ],
)
def test_kustomization_has_the_same_objects_as_the_chart(path, values):
    kustomized = _kustomized(MANIFESTS / path)
    chart = _chart(values)
    assert set(kustomized) == set(chart)
    for k in chart:
        assert kustomized[k] == chart[k], f"{k} differs between manifests/{path} and the chart"


def test_base_has_no_tls_secret_and_leaves_the_ca_bundle_to_the_chosen_tls_source():
    objects = kustomize_build(MANIFESTS / "base")
    assert not [o for o in objects if o["kind"] == "Secret"]
    (apiservice,) = [o for o in objects if o["kind"] == "APIService"]
    assert "caBundle" not in apiservice["spec"]
    assert not apiservice["spec"].get("insecureSkipTLSVerify")

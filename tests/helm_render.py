"""Render ``charts/faro`` with real Helm and build kustomize directories with real kubectl, for the tests.

Helm: no ``helm`` binary can be installed here, so the chart is rendered by ``helm-python-sdk``
(PyPI), which binds Helm's own Go SDK (v4) through ctypes: the same template engine, Sprig functions
(``genCA``/``genSignedCert``) and ``values.schema.json`` check as ``helm template``. There is no
hand-written Go-template renderer. Tests skip with a clear reason when the package is missing.

Kustomize: ``kubectl kustomize`` from /usr/bin/kubectl. Debian's kubectl 1.20 (kustomize v2.0.3) and
newer ones (kustomize v5) both read our kustomization files: they use only ``resources`` (files),
``bases`` (directories) and ``patchesStrategicMerge``, and no ``namespace:`` transformer (it would
move the kube-system RoleBinding), so every object names its namespace.

Used by ``tests/test_chart_*.py``, ``tests/test_manifests_*.py`` and ``tests/test_rbac_*.py``.
Run as a script to regenerate the kustomize base from the chart defaults::

    python tests/helm_render.py --write-base
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "faro"
MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
RELEASE = "faro"
NAMESPACE = "faro-system"

# Labels Helm adds that a kustomize base has no reason to carry.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")


class HelmUnavailableError(RuntimeError):
    """helm-python-sdk is not installed."""


def _helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HelmUnavailableError("helm-python-sdk is not installed (pip install helm-python-sdk)") from exc
    return helm_python


def render_chart_files(
    values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` would print (NOTES.txt included)."""
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(dict(values or {}), name=release, namespace=namespace, is_install=True)


def render_chart(
    values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart renders (NOTES.txt and empty documents dropped)."""
    files = render_chart_files(values, release=release, namespace=namespace)
    objects: list[dict[str, Any]] = []
    for path in sorted(files):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(files[path]) if doc)
    return objects


def validate_values(values: Mapping[str, Any]) -> None:
    """Raise Helm's values error when ``values`` break ``values.schema.json``."""
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(dict(values))


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize <path>`` parsed into objects; without kubectl, ``read_kustomization``."""
    if kubectl() is None:
        return read_kustomization(path)
    return [doc for doc in yaml.safe_load_all(_kubectl_kustomize(str(path))) if doc]


@functools.lru_cache(maxsize=64)
def _kubectl_kustomize(path: str) -> str:
    proc = subprocess.run(
        [str(kubectl()), "kustomize", path], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return proc.stdout


def _merge(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


def read_kustomization(path: Path) -> list[dict[str, Any]]:
    """The fallback when kubectl is missing: read the files a kustomization names (``resources``,
    ``bases``, and ``patchesStrategicMerge`` applied as a map merge by kind and name). Enough for our
    kustomizations, which use nothing else; tests check it agrees with kubectl where kubectl exists."""
    spec = yaml.safe_load((path / "kustomization.yaml").read_text()) or {}
    unknown = set(spec) - {"resources", "bases", "patchesStrategicMerge"}
    if unknown:
        raise ValueError(f"{path}/kustomization.yaml uses {sorted(unknown)}, which read_kustomization cannot do")
    objects: list[dict[str, Any]] = []
    for entry in [*spec.get("bases", []), *spec.get("resources", [])]:
        target = (path / entry).resolve()
        if target.is_dir():
            objects.extend(read_kustomization(target))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(target.read_text()) if doc)
    for entry in spec.get("patchesStrategicMerge", []):
        for patch in yaml.safe_load_all((path / entry).read_text()):
            target_key = (patch["kind"], patch["metadata"]["name"])
            matches = [o for o in objects if (o["kind"], o["metadata"]["name"]) == target_key]
            if len(matches) != 1:
                raise ValueError(f"patch {entry} matches {len(matches)} objects")
            _merge(matches[0], patch)
    return objects


def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


# Kinds kubernetes-validate has no schema for (CRDs): checked structurally instead.
CRD_REQUIRED_SPEC: dict[str, tuple[str, ...]] = {
    "cert-manager.io/v1/Certificate": ("secretName", "issuerRef"),
    "cert-manager.io/v1/Issuer": (),
    "monitoring.coreos.com/v1/ServiceMonitor": ("selector", "endpoints"),
    "keda.sh/v1alpha1/ScaledObject": ("scaleTargetRef", "triggers"),
    "keda.sh/v1alpha1/ClusterTriggerAuthentication": ("secretTargetRef",),
}


def validate_object(obj: Mapping[str, Any], version: str) -> None:
    """``validate_object_uncached`` once per distinct object and version (chart variants share most
    objects; kubernetes-validate re-reads its schema file on every call)."""
    _validate_json(json.dumps(obj, sort_keys=True), version)


@functools.lru_cache(maxsize=4096)
def _validate_json(text: str, version: str) -> None:
    validate_object_uncached(json.loads(text), version)


def validate_object_uncached(obj: Mapping[str, Any], version: str) -> None:
    """Validate one object against Kubernetes ``version``'s OpenAPI schema with kubernetes-validate in
    strict mode (unknown fields fail); the CRDs above get a structural check. Raises on failure."""
    import kubernetes_validate

    kind_key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if kind_key in CRD_REQUIRED_SPEC:
        meta = obj.get("metadata") or {}
        if not meta.get("name") or not isinstance(obj.get("spec"), dict):
            raise ValueError(f"{kind_key} needs metadata.name and spec")
        missing = [f for f in CRD_REQUIRED_SPEC[kind_key] if f not in obj["spec"]]
        if missing:
            raise ValueError(f"{kind_key} {meta['name']}: spec lacks {missing}")
        return
    kubernetes_validate.validate(dict(obj), version, strict=True)


def _strip_labels(labels: dict[str, str] | None) -> None:
    if labels:
        for name in HELM_ONLY_LABELS:
            labels.pop(name, None)


def normalise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object with Helm-only labels removed, for comparing the chart with the kustomize base."""
    out = copy.deepcopy(dict(obj))
    _strip_labels(out.get("metadata", {}).get("labels"))
    template = out.get("spec", {}).get("template") if isinstance(out.get("spec"), dict) else None
    if isinstance(template, dict):
        _strip_labels(template.get("metadata", {}).get("labels"))
    return out


def by_key(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for obj in objects:
        k = key(obj)
        if k in out:
            raise AssertionError(f"duplicate object {k}")
        out[k] = dict(obj)
    return out


def base_objects_from_chart() -> list[dict[str, Any]]:
    """The chart's default objects as the kustomize base carries them: no Helm labels, and no
    install-time TLS material (the generated Secret, the APIService caBundle)."""
    out = []
    for obj in render_chart():
        if obj["kind"] == "Secret":
            continue
        obj = normalise(obj)
        if obj["kind"] == "APIService":
            obj["spec"].pop("caBundle", None)
        out.append(obj)
    return out


def _file_name(obj: Mapping[str, Any]) -> str:
    component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "faro")
    return f"{component}.yaml"


def write_base() -> list[Path]:
    """Regenerate manifests/base/{optimizer,adapter}.yaml from the chart defaults, and the cert-manager
    overlay's certificates.yaml from the chart with tls.mode=certManager."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for obj in base_objects_from_chart():
        groups.setdefault(_file_name(obj), []).append(obj)
    header = (
        "# Generated from charts/faro (release faro, namespace faro-system) by\n"
        "#   python tests/helm_render.py --write-base\n"
        "# tests/test_manifests_base.py fails when this file and the chart disagree.\n"
    )
    written = []
    groups_paths = {BASE / name: objects for name, objects in groups.items()}
    certs = [
        normalise(obj)
        for obj in render_chart({"tls": {"mode": "certManager"}})
        if obj["apiVersion"].startswith("cert-manager.io/")
    ]
    groups_paths[MANIFESTS / "overlays" / "cert-manager" / "certificates.yaml"] = certs
    for path, objects in sorted(groups_paths.items()):
        text = header + "".join(
            "---\n" + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects
        )
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-base", action="store_true", help="regenerate manifests/base from the chart")
    parser.add_argument("--set-json", default="{}", help="values as JSON, for printing a render")
    args = parser.parse_args(argv)
    if args.write_base:
        for path in write_base():
            print(path.relative_to(REPO))
        return 0
    for path, text in sorted(render_chart_files(json.loads(args.set_json)).items()):
        if text.strip():
            print(f"---\n# Source: {path}\n{text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

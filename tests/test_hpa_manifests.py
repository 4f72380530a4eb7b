"""Faro's recommended HPA behavior has one definition, ``HPABehavior.recommended_for_faro`` (which the simulator's
``--actuation hpa`` and the end-to-end tests use); every HPA and KEDA ScaledObject the project ships or shows
(``manifests/examples``, the chart's install notes, the docs) must carry exactly it after the API server's
defaulting, so that simulated and real scale-ups run at the same rate."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.sim.hpa import (
    HPABehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    default_scale_down,
    default_scale_up,
)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ["manifests/examples/hpa/hpa.yaml", "manifests/examples/hpa-tolerance/hpa.yaml",
             "manifests/examples/keda/scaledobject.yaml"]
DOCS = ["docs/hpa-and-keda.md", "docs/annotations.md"]
HEREDOC = re.compile(r"cat <<YAML \| kubectl apply -f -\n(.*?)\n\s*YAML\n", re.S)


Found = list[tuple[str, str, Any]]
"""(where, kind, spec.behavior)."""


def _behaviors(documents: list[Any], where: str) -> Found:
    """The behavior of every HPA, and of the HPA every ScaledObject asks KEDA to create."""
    out = []
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        spec = doc.get("spec", {})
        where_name = f"{where} ({doc.get('kind')} {doc.get('metadata', {}).get('name')})"
        if doc.get("kind") == "HorizontalPodAutoscaler":
            out.append((where_name, "HorizontalPodAutoscaler", spec.get("behavior")))
        elif doc.get("kind") == "ScaledObject":
            behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
            out.append((where_name, "ScaledObject", behavior))
    return out


def _shipped() -> Found:
    found = []
    for path in MANIFESTS:
        found += _behaviors(list(yaml.safe_load_all((ROOT / path).read_text())), path)
    for path in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", (ROOT / path).read_text(), re.S):
            found += _behaviors(list(yaml.safe_load_all(block)), path)
    return found


def _chart_notes() -> Found:
    from helm_render import render_chart_files

    found = []
    for values in ({}, {"mode": "keda"}):
        notes = render_chart_files(values)["faro/templates/NOTES.txt"]
        for block in HEREDOC.findall(notes):
            found += _behaviors([yaml.safe_load(textwrap.dedent(block))], f"NOTES.txt {values}")
    return found


def _check(found: Found) -> None:
    assert found
    for name, _, manifest in found:
        assert manifest is not None, f"{name}: no behavior, so the controller's legacy path (300 s scale-down window)"
        behavior = HPABehavior.from_manifest(manifest)
        assert behavior is not None
        tolerance = behavior.scale_up.tolerance
        assert _canonical(behavior) == _canonical(HPABehavior.recommended_for_faro(tolerance=tolerance)), name


def _canonical(behavior: HPABehavior) -> HPABehavior:
    # The order of the policies does not matter to the controller.
    def rules(r: HPAScalingRules) -> HPAScalingRules:
        return replace(r, policies=tuple(sorted(r.policies, key=lambda p: (p.type, p.value, p.period_s))))

    return HPABehavior(scale_up=rules(behavior.scale_up), scale_down=rules(behavior.scale_down))


def test_shipped_manifests_and_docs_carry_the_recommended_behavior():
    found = _shipped()
    assert {where.split(" (")[0] for where, _, _ in found} == set(MANIFESTS + DOCS)
    _check(found)


def test_chart_install_notes_carry_the_recommended_behavior():
    pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed")
    found = _chart_notes()
    assert sorted(kind for _, kind, _ in found) == ["HorizontalPodAutoscaler", "ScaledObject"]
    _check(found)


def test_recommended_behavior_scales_up_by_8_pods_or_100_percent_per_15s():
    behavior = HPABehavior.recommended_for_faro()
    assert set(behavior.scale_up.policies) == {HPAScalingPolicy("Pods", 8, 15.0),
                                               HPAScalingPolicy("Percent", 100, 15.0)}
    assert behavior.scale_up.select_policy == "Max"
    assert behavior.scale_up.stabilization_window_s == 0 and behavior.scale_down.stabilization_window_s == 0
    assert behavior.scale_down.policies == (HPAScalingPolicy("Percent", 100, 15.0),)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        # SetDefaults_HorizontalPodAutoscalerBehavior: nil stays nil (the controller's legacy path) ...
        pytest.param(None, None, id="omitted-stays-nil"),
        # ... a present behavior gets GenerateHPAScaleUpRules / GenerateHPAScaleDownRules.
        pytest.param({}, HPABehavior(), id="empty-gets-both-defaults"),
        pytest.param({"scaleDown": {"stabilizationWindowSeconds": 0}},
                     HPABehavior(scale_up=default_scale_up(), scale_down=default_scale_down(0.0)),
                     id="partial-keeps-given-fields"),
        pytest.param({"scaleUp": {"selectPolicy": "Disabled", "tolerance": "50m"}},
                     HPABehavior(scale_up=HPAScalingRules(stabilization_window_s=0.0,
                                                          policies=default_scale_up().policies,
                                                          select_policy="Disabled", tolerance=0.05)),
                     id="select-policy-and-milli-tolerance"),
    ],
)
def test_from_manifest_applies_the_api_server_defaults(manifest, expected):
    assert HPABehavior.from_manifest(manifest) == expected
    if expected is not None:
        assert expected.scale_down.stabilization_window_s in (None, 0.0)  # None: the controller's flag (300 s)


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        pytest.param({"scaleSideways": {}}, "behavior", id="unknown-direction"),
        pytest.param({"scaleUp": {"policies": [{"type": "Pods", "value": 4}]}}, r"behavior\.scaleUp\.policies\[0\]",
                     id="policy-without-period"),
        pytest.param({"scaleDown": {"tolerance": "ten percent"}}, r"behavior\.scaleDown\.tolerance",
                     id="bad-tolerance"),
        pytest.param({"scaleDown": {"selectPolicy": "Average"}}, r"HPAScalingRules\.select_policy", id="bad-select"),
    ],
)
def test_from_manifest_names_the_bad_field(manifest, field):
    with pytest.raises(InvalidInputError, match=field):
        HPABehavior.from_manifest(manifest)

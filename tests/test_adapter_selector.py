"""The Kubernetes label-selector parser of the adapter (``faro.adapter.selector``)."""

from __future__ import annotations

import pytest
from faro.adapter.selector import Requirement, Selector, SelectorError, parse
from hypothesis import given
from hypothesis import strategies as st

LABELS = {"deployment": "resnet", "tier": "gpu", "replicas": "3"}


@pytest.mark.parametrize(
    ("text", "requirements"),
    [
        pytest.param("", (), id="empty"),
        pytest.param("deployment=resnet", (Requirement("deployment", "=", ("resnet",)),), id="equals"),
        pytest.param("deployment==resnet", (Requirement("deployment", "=", ("resnet",)),), id="double-equals"),
        pytest.param("deployment!=bert", (Requirement("deployment", "!=", ("bert",)),), id="not-equals"),
        pytest.param(" deployment = resnet ", (Requirement("deployment", "=", ("resnet",)),), id="spaces"),
        pytest.param("deployment in (resnet, bert)", (Requirement("deployment", "in", ("bert", "resnet")),), id="in"),
        pytest.param("tier notin (cpu)", (Requirement("tier", "notin", ("cpu",)),), id="notin"),
        pytest.param("tier", (Requirement("tier", "exists"),), id="exists"),
        pytest.param("!canary", (Requirement("canary", "!"),), id="not-exists"),
        pytest.param("replicas>2", (Requirement("replicas", "gt", ("2",)),), id="greater-than"),
        pytest.param("replicas<10", (Requirement("replicas", "lt", ("10",)),), id="less-than"),
        pytest.param("app.kubernetes.io/name=x", (Requirement("app.kubernetes.io/name", "=", ("x",)),), id="prefix"),
        pytest.param("deployment=", (Requirement("deployment", "=", ("",)),), id="empty-value"),
        pytest.param(
            "deployment=resnet,tier,!canary",
            (
                Requirement("deployment", "=", ("resnet",)),
                Requirement("tier", "exists"),
                Requirement("canary", "!"),
            ),
            id="conjunction",
        ),
    ],
)
def test_valid_selectors_parse_to_their_requirements(text: str, requirements: tuple[Requirement, ...]) -> None:
    assert parse(text).requirements == requirements


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("deployment=resnet,", id="trailing-comma"),
        pytest.param(",deployment", id="leading-comma"),
        pytest.param("deployment in resnet", id="in-without-parens"),
        pytest.param("deployment in ()", id="empty-set"),
        pytest.param("deployment in (a b)", id="set-without-comma"),
        pytest.param("deployment in (a", id="unclosed-set"),
        pytest.param("deployment===x", id="triple-equals"),
        pytest.param("=x", id="missing-key"),
        pytest.param("!", id="bang-alone"),
        pytest.param("deployment=re$net", id="bad-value-char"),
        pytest.param("deployment=-resnet", id="value-starts-with-dash"),
        pytest.param("de ployment=x", id="space-in-key"),
        pytest.param("Bad_Prefix/name=x", id="bad-prefix"),
        pytest.param("x" * 64 + "=y", id="key-too-long"),
        pytest.param("deployment=" + "v" * 64, id="value-too-long"),
        pytest.param("replicas>two", id="gt-non-integer"),
        pytest.param("deployment resnet", id="missing-operator"),
        pytest.param("a=b c=d", id="missing-comma"),
    ],
)
def test_invalid_selectors_raise_a_selector_error(text: str) -> None:
    with pytest.raises(SelectorError, match="labelSelector"):
        parse(text)


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        pytest.param("", True, id="empty-matches-all"),
        pytest.param("deployment=resnet", True, id="equal"),
        pytest.param("deployment=bert", False, id="unequal"),
        pytest.param("deployment!=bert", True, id="not-equal"),
        pytest.param("absent!=x", True, id="not-equal-absent-key"),
        pytest.param("absent=x", False, id="equal-absent-key"),
        pytest.param("deployment in (bert,resnet)", True, id="in"),
        pytest.param("absent notin (x)", True, id="notin-absent-key"),
        pytest.param("tier notin (gpu)", False, id="notin-present"),
        pytest.param("tier", True, id="exists"),
        pytest.param("!tier", False, id="not-exists-present"),
        pytest.param("!canary", True, id="not-exists-absent"),
        pytest.param("replicas>2,replicas<4", True, id="range"),
        pytest.param("replicas>3", False, id="gt-strict"),
        pytest.param("deployment=resnet,tier=cpu", False, id="conjunction-one-fails"),
    ],
)
def test_selectors_match_label_sets_like_kubernetes(text: str, matches: bool) -> None:
    assert parse(text).matches(LABELS) is matches


def test_a_selector_prints_back_to_an_equivalent_selector() -> None:
    sel = parse("deployment in (resnet,bert),tier!=cpu,!canary,replicas>1,x")
    assert parse(str(sel)) == sel


def test_equals_builds_an_equality_selector_and_validates_values() -> None:
    assert Selector.equals(deployment="resnet").equality_value("deployment") == "resnet"
    with pytest.raises(SelectorError):
        Selector.equals(deployment="not valid!")


@given(st.text(max_size=60))
def test_any_text_either_parses_or_raises_a_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError:
        return
    assert parse(str(sel)) == sel

"""docs/grafana/faro-dashboard.json queries only metrics (and labels) the real optimizer and adapter
export: their registries are built here from the code, so a renamed metric fails this test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "faro-dashboard.json"


def _exported() -> dict[str, set[str]]:
    """Sample name -> label names, as Prometheus would scrape them from both components."""
    from faro.optimizer.service.telemetry import Telemetry

    adapter_metrics = pytest.importorskip("faro.adapter.metrics")
    provider = pytest.importorskip("faro.adapter.provider")
    registry = CollectorRegistry()
    Telemetry(registry)
    adapter_metrics.AdapterMetrics(registry, provider.PlanStore(ttl_s=600, clock=lambda: 0.0))
    out: dict[str, set[str]] = {}
    # A labelled metric with no children yet exposes no samples, so read the collectors themselves
    # (prometheus_client keeps them with the sample names they produce).
    for collector, names in registry._collector_to_names.items():
        labels = set(getattr(collector, "_labelnames", ()))
        for name in names:
            out[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return out


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return exprs


def test_dashboard_is_valid_grafana_json_with_unique_panel_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] == "Faro"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "deployment"}


def test_every_metric_the_dashboard_queries_is_exported_by_the_optimizer_or_the_adapter():
    exported = _exported()
    used = set()
    for expr in _queries():
        for name in re.findall(r"\b(faro_[a-z_]+)", expr):
            used.add(name)
            assert name in exported, f"{name} (in {expr!r}) is exported by neither component"
    # The dashboard covers both components.
    assert any(n.startswith("faro_optimizer_") for n in used) and any(n.startswith("faro_adapter_") for n in used)


def test_every_label_the_dashboard_groups_by_exists_on_the_metric():
    exported = _exported()
    for expr in _queries():
        for group, body in re.findall(r"by \(([^)]*)\) \((.*)", expr):
            names = re.findall(r"\b(faro_[a-z_]+)", body)
            if not names:
                continue
            labels = {label.strip() for label in group.split(",")} - {"pod"}  # pod comes from the scrape
            missing = labels - exported[names[0]]
            assert not missing, f"{names[0]} has no labels {missing} ({expr!r})"

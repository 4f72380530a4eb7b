"""Builders of valid Kubernetes objects for tests of the optimizer against the test API server."""

from __future__ import annotations

from typing import Any


def deployment(name: str, *, namespace: str = "team-a", replicas: int = 1, cpu: str = "1", memory: str = "1Gi",
               annotations: dict[str, str] | None = None, enabled: bool = True, containers: int = 1) -> dict[str, Any]:
    labels = {"app": name, **({"faro.dev/enabled": "true"} if enabled else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": annotations if annotations is not None else {"faro.dev/slo-latency-ms": "200"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                     {"name": f"c{i}", "image": "model:1",
                      "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}}
                     for i in range(containers)]}}},
    }


def quota(name: str, hard: dict[str, str], *, namespace: str = "team-a", used: dict[str, str] | None = None):
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": namespace},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used or {}}}


def hpa(deployment_name: str, *, namespace: str = "team-a", faro: bool = True, min_replicas: int = 1,
        max_replicas: int = 20) -> dict[str, Any]:
    metric = ({"type": "External", "external": {
        "metric": {"name": "faro_desired_replicas", "selector": {"matchLabels": {"deployment": deployment_name}}},
        "target": {"type": "AverageValue", "averageValue": "1"}}} if faro else
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}})
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": deployment_name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
                     "minReplicas": min_replicas, "maxReplicas": max_replicas, "metrics": [metric]}}

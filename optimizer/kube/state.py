"""Cluster state from the Kubernetes API: informers on Deployments, ResourceQuotas and HPAs.

Built by the service (``faro.optimizer.service.app``) with an injected ``ApiClient``; the control
loop calls ``ClusterState.snapshot()`` once per cycle and gets frozen values (no client models).

List+watch is ``kubernetes.informer.SharedInformer`` (one daemon thread per resource, a cache keyed
namespace/name, re-list on 410 Gone). This module adds what it lacks: watch bookmarks and a server
side watch timeout (so idle watches are renewed), exponential back-off after errors (the informer
would otherwise reconnect in a tight loop while the API server is down), a "synced" signal after
the first successful list, and counters for ``/metrics``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from faro.optimizer.kube.annotations import ENABLED_LABEL
from kubernetes import client
from kubernetes.informer import ADDED, BOOKMARK, DELETED, ERROR, MODIFIED, SharedInformer
from kubernetes.utils import parse_quantity

log = logging.getLogger(__name__)

FARO_METRIC = "faro_desired_replicas"
QUOTA_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")
"""Resources Faro plans for; quota keys are these, ``requests.<r>``, ``limits.<r>`` and ``pods``."""


def quota_key_supported(key: str) -> bool:
    return key == "pods" or key.removeprefix("requests.").removeprefix("limits.") in QUOTA_RESOURCES


@dataclass(frozen=True)
class DeploymentInfo:
    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str]
    requests: Mapping[str, float]  # per replica, canonical units (cores, bytes, count)
    limits: Mapping[str, float]
    replicas: int  # spec.replicas
    ready_replicas: int  # status.readyReplicas

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class QuotaInfo:
    namespace: str
    name: str
    hard: Mapping[str, float]
    used: Mapping[str, float]


@dataclass(frozen=True)
class HpaInfo:
    namespace: str
    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int
    uses_faro_metric: bool  # an External metric named faro_desired_replicas


@dataclass(frozen=True)
class KubeSnapshot:
    deployments: tuple[DeploymentInfo, ...] = ()
    quotas: tuple[QuotaInfo, ...] = ()
    hpas: tuple[HpaInfo, ...] = ()
    synced: bool = True

    @cached_property
    def _hpa_by_target(self) -> dict[tuple[str, str], HpaInfo]:
        """Deployment (namespace, name) → the HPA scaling it: built once per snapshot, so the loop's
        per-Deployment lookups stay linear in the fleet."""
        index: dict[tuple[str, str], HpaInfo] = {}
        for h in sorted(self.hpas, key=lambda h: (not h.uses_faro_metric, h.name)):
            if h.target_kind == "Deployment":
                index.setdefault((h.namespace, h.target_name), h)
        return index

    def hpa_for(self, namespace: str, name: str) -> HpaInfo | None:
        """The HPA scaling this Deployment (one that uses Faro's metric first)."""
        return self._hpa_by_target.get((namespace, name))


def _quantities(values: Mapping[str, str] | None, *, only: Callable[[str], bool] = lambda _: True) -> dict[str, float]:
    return {k: float(parse_quantity(v)) for k, v in (values or {}).items() if only(k)}


def _pod_resources(template: Any, attr: str) -> dict[str, float]:
    """Effective per-pod resources: max(sum over containers, largest init container) per resource."""
    spec = template.spec
    total: dict[str, float] = {}
    def of(container: Any) -> dict[str, float]:
        return _quantities(getattr(container.resources, attr, None) if container.resources else None)

    for container in spec.containers or []:
        for key, value in of(container).items():
            total[key] = total.get(key, 0.0) + value
    for container in spec.init_containers or []:
        for key, value in of(container).items():
            total[key] = max(total.get(key, 0.0), value)
    return total


def deployment_info(obj: Any) -> DeploymentInfo:
    meta, spec, status = obj.metadata, obj.spec, obj.status
    return DeploymentInfo(
        namespace=meta.namespace, name=meta.name, uid=meta.uid or "",
        annotations=dict(meta.annotations or {}),
        requests=_pod_resources(spec.template, "requests"),
        limits=_pod_resources(spec.template, "limits"),
        replicas=1 if spec.replicas is None else int(spec.replicas),  # the API default is 1
        ready_replicas=int((status.ready_replicas if status else None) or 0),
    )


def quota_info(obj: Any) -> QuotaInfo:
    status = obj.status
    hard = (status.hard if status and status.hard else None) or (obj.spec.hard if obj.spec else None)
    return QuotaInfo(namespace=obj.metadata.namespace, name=obj.metadata.name,
                     hard=_quantities(hard, only=quota_key_supported),
                     used=_quantities(status.used if status else None, only=quota_key_supported))


def hpa_info(obj: Any) -> HpaInfo:
    spec = obj.spec
    uses = any(m.type == "External" and m.external and m.external.metric and m.external.metric.name == FARO_METRIC
               for m in spec.metrics or [])
    return HpaInfo(namespace=obj.metadata.namespace, name=obj.metadata.name,
                   target_kind=spec.scale_target_ref.kind, target_name=spec.scale_target_ref.name,
                   min_replicas=1 if spec.min_replicas is None else int(spec.min_replicas),
                   max_replicas=int(spec.max_replicas), uses_faro_metric=uses)


@dataclass
class InformerStats:
    lists: int = 0
    errors: int = 0
    events: int = 0
    last_error: str = ""


@dataclass
class ResourceInformer:
    """A SharedInformer plus bookmarks, a watch timeout, back-off and a synced flag."""

    list_func: Callable[..., Any]
    label_selector: str | None = None
    watch_timeout_s: int = 300
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stats: InformerStats = field(default_factory=InformerStats)

    def __post_init__(self) -> None:
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._backoff_s = 0.0

        @functools.wraps(self.list_func)  # keeps the docstring Watch reads the item type from
        def list_or_watch(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("watch"):
                kwargs.setdefault("allow_watch_bookmarks", True)
                kwargs.setdefault("timeout_seconds", self.watch_timeout_s)
                return self.list_func(*args, **kwargs)
            result = self.list_func(*args, **kwargs)
            self.stats.lists += 1
            self._backoff_s = 0.0
            self.synced.set()
            return result

        self.informer = SharedInformer(list_or_watch, label_selector=self.label_selector)
        for kind in (ADDED, MODIFIED, DELETED, BOOKMARK):
            self.informer.add_event_handler(kind, self._on_event)
        self.informer.add_event_handler(ERROR, self._on_error)

    def _on_event(self, _obj: Any) -> None:
        self.stats.events += 1
        self._backoff_s = 0.0

    def _on_error(self, exc: Any) -> None:
        # Runs on the informer thread before it reconnects: sleeping here is the back-off.
        self.stats.errors += 1
        self.stats.last_error = str(exc)[:200]
        if getattr(exc, "status", None) == 410:
            return  # expired resourceVersion: re-list at once
        self._backoff_s = min(self.backoff_max_s, max(self.backoff_initial_s, 2 * self._backoff_s))
        log.warning("watch error (%s); retrying in %.1fs", self.stats.last_error, self._backoff_s)
        self._stopping.wait(self._backoff_s)

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self._stopping.set()
        self.informer.stop()

    def items(self) -> list[Any]:
        return self.informer.cache.list()


class ClusterState:
    """Deployments labelled ``faro.dev/enabled=true``, ResourceQuotas and autoscaling/v2 HPAs."""

    def __init__(self, api_client: client.ApiClient, *, namespace: str | None = None,
                 watch_timeout_s: int = 300, backoff_max_s: float = 30.0) -> None:
        apps, core, autoscaling = client.AppsV1Api(api_client), client.CoreV1Api(api_client), \
            client.AutoscalingV2Api(api_client)
        if namespace:
            funcs = (functools.partial(apps.list_namespaced_deployment, namespace),
                     functools.partial(core.list_namespaced_resource_quota, namespace),
                     functools.partial(autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace))
            # partial hides the docstring Watch reads the item type from; restore it.
            originals = (apps.list_namespaced_deployment, core.list_namespaced_resource_quota,
                         autoscaling.list_namespaced_horizontal_pod_autoscaler)
            funcs = tuple(_with_doc(f, o) for f, o in zip(funcs, originals, strict=True))
        else:
            funcs = (apps.list_deployment_for_all_namespaces, core.list_resource_quota_for_all_namespaces,
                     autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces)
        opts = {"watch_timeout_s": watch_timeout_s, "backoff_max_s": backoff_max_s}
        self.deployments = ResourceInformer(funcs[0], label_selector=f"{ENABLED_LABEL}=true", **opts)
        self.quotas = ResourceInformer(funcs[1], **opts)
        self.hpas = ResourceInformer(funcs[2], **opts)
        self.informers = {"deployments": self.deployments, "resourcequotas": self.quotas,
                          "horizontalpodautoscalers": self.hpas}

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()

    def stop(self) -> None:
        for informer in self.informers.values():
            informer.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        return all(i.synced.wait(timeout_s) for i in self.informers.values())

    def snapshot(self) -> KubeSnapshot:
        """Frozen values of every cached object; an object that does not convert is logged and skipped."""
        def convert(informer: ResourceInformer, fn: Callable[[Any], Any]) -> tuple[Any, ...]:
            out = []
            for obj in informer.items():
                try:
                    out.append(fn(obj))
                except (AttributeError, TypeError, ValueError) as exc:
                    meta = getattr(obj, "metadata", None)
                    log.warning("skipping %s/%s: %s", getattr(meta, "namespace", "?"), getattr(meta, "name", "?"), exc)
            return tuple(sorted(out, key=lambda x: (x.namespace, x.name)))

        return KubeSnapshot(
            deployments=convert(self.deployments, deployment_info),
            quotas=convert(self.quotas, quota_info),
            hpas=convert(self.hpas, hpa_info),
            synced=all(i.synced.is_set() for i in self.informers.values()),
        )


def _with_doc(partial: functools.partial, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        return partial(*args, **kwargs)

    return call

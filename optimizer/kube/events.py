"""Kubernetes Events on managed Deployments, deduplicated like client-go's event recorder.

Called by the control loop (``faro.optimizer.service.loop``): a Warning ``FaroInvalidSLO`` for a
Deployment whose annotations are invalid, a Normal ``FaroHPAMissing`` for one no HPA scales with
Faro's metric. The first occurrence creates a core/v1 Event; a repeat of the same (object, reason,
message) patches that Event's ``count`` and ``lastTimestamp`` at most once per ``repeat_interval_s``
instead of creating another; ``once=True`` events are never repeated by this process. Failures to
write Events are logged and never stop the loop.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    event_name: str
    count: int
    last_write_s: float


class EventRecorder:
    def __init__(self, core: client.CoreV1Api, *, component: str = "faro-optimizer", instance: str = "",
                 clock: Callable[[], float], repeat_interval_s: float = 300.0) -> None:
        self._core = core
        self._component = component
        self._instance = instance
        self._clock = clock
        self._repeat_interval_s = repeat_interval_s
        self._seen: dict[tuple[str, str, str, str, str], _Seen] = {}
        self.writes = 0

    def record(self, *, namespace: str, name: str, uid: str, event_type: str, reason: str, message: str,
               once: bool = False) -> None:
        """Emit (or count) an Event on Deployment ``namespace/name``."""
        key = (namespace, name, uid, reason, message)
        now_s = self._clock()
        seen = self._seen.get(key)
        try:
            if seen is None:
                event_name = f"{name}.faro-{hashlib.sha1('/'.join(key).encode()).hexdigest()[:10]}"
                self._write(event_name, namespace, name, uid, event_type, reason, message, now_s, count=1)
                self._seen[key] = _Seen(event_name, 1, now_s)
                return
            seen.count += 1
            if once or now_s - seen.last_write_s < self._repeat_interval_s:
                return
            stamp = _stamp(now_s)
            self._core.patch_namespaced_event(seen.event_name, namespace, {"count": seen.count, "lastTimestamp": stamp})
            self.writes += 1
            seen.last_write_s = now_s
        except ApiException as exc:
            if seen is None and exc.status == 409:  # written by an earlier run of this process name
                self._seen[key] = _Seen(f"{name}.faro-exists", 1, now_s)
                return
            log.warning("could not write Event %s on %s/%s: %s", reason, namespace, name, exc.reason)
        except Exception as exc:  # the API being down must not stop planning
            log.warning("could not write Event %s on %s/%s: %s", reason, namespace, name, exc)

    def forget(self, namespace: str, name: str) -> None:
        """Drop dedup state for a Deployment (deleted, or its problem fixed) so a new problem is reported."""
        for key in [k for k in self._seen if k[0] == namespace and k[1] == name]:
            del self._seen[key]

    def keys(self, namespace: str, name: str) -> list[tuple[str, str]]:
        return [(k[3], k[4]) for k in self._seen if k[0] == namespace and k[1] == name]

    def _write(self, event_name: str, namespace: str, name: str, uid: str, event_type: str, reason: str,
               message: str, now_s: float, *, count: int) -> None:
        stamp = _stamp(now_s)
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "namespace": namespace,
                               **({"uid": uid} if uid else {})},
            "reason": reason, "message": message[:1024], "type": event_type,
            "source": {"component": self._component, **({"host": self._instance} if self._instance else {})},
            "reportingComponent": self._component, "reportingInstance": self._instance or self._component,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": count,
        }
        self._core.create_namespaced_event(namespace, body)
        self.writes += 1


def _stamp(now_s: float) -> str:
    return datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Helpers for the full-stack end-to-end tests (``tests/test_stack_e2e.py``).

- ``TimestampedExporter``: the prom_fixture test exporter, with every sample stamped with its own clock
  (an ``AcceleratedClock``) so that real Prometheus stores the series on the optimizer's accelerated
  timeline: minute-granular forecasts then move within seconds of wall time.
- ``PlanRecorder``: one real ``WatchPlans`` gRPC stream read on a thread; every plan is kept, and tests
  wait for a plan that satisfies a predicate (and check properties of *every* plan seen).
- ``FaroProcess``: ``python -m faro.optimizer.cli <subcommand> …`` with its log in a file, stopped by
  SIGTERM (kill after a grace period); ``faro optimizer`` and ``faro adapter`` in the chain test.
- ``HPAController``: the HPA emulator (``faro.optimizer.sim.hpa``) fed by ``faro_desired_replicas`` read
  over HTTPS, as the HPA controller reads it, on its own fake 15 s sync clock.
- ``eventually``: bounded polling with a message.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from faro.optimizer.sim.hpa import HPASpec, HPAState, hpa_step
from faro.v1 import plan_pb2, plan_pb2_grpc
from kubernetes.utils import parse_quantity
from prom_fixture import TrafficExporter
from prometheus_client.samples import Sample

T = TypeVar("T")
METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/faro_desired_replicas"


def eventually(check: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, and return that; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
        except (OSError, ValueError, KeyError) as exc:  # servers coming up or going down
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")
        time.sleep(interval_s)


class TimestampedExporter(TrafficExporter):
    """``TrafficExporter`` whose samples carry explicit timestamps from its clock (Prometheus honours them)."""

    def collect(self) -> Iterator:
        families = list(super().collect())
        stamp_s = self._clock()
        for family in families:
            family.samples = [Sample(s.name, s.labels, s.value, stamp_s, s.exemplar) for s in family.samples]
        yield from families


def desired(plan: plan_pb2.Plan) -> dict[str, int]:
    return {t.deployment: t.desired_replicas for t in plan.targets}


class PlanRecorder:
    """Reads ``WatchPlans`` from ``address`` on a daemon thread into ``plans`` until ``close``; ``tls`` is the
    product's client helper (``faro.optimizer.service.plan_client.PlanClientTLS``), as the adapter connects."""

    def __init__(self, address: str, tls: Any) -> None:
        self.channel = tls.channel(address)
        self.stub = plan_pb2_grpc.PlanServiceStub(self.channel)
        self.plans: list[plan_pb2.Plan] = []
        self.error: Exception | None = None
        self._cond = threading.Condition()
        self._call = self.stub.WatchPlans(plan_pb2.WatchPlansRequest())
        self._thread = threading.Thread(target=self._read, name="plan-recorder", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for plan in self._call:
                with self._cond:
                    self.plans.append(plan)
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        """Index from which a later ``wait`` looks (plans published after this point)."""
        with self._cond:
            return len(self.plans)

    def wait(self, predicate: Callable[[plan_pb2.Plan], bool], *, since: int = 0, timeout_s: float = 60.0,
             what: str = "a matching plan") -> plan_pb2.Plan:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for plan in self.plans[since:]:
                    if predicate(plan):
                        return plan
                since = max(since, len(self.plans))
                left = deadline - time.monotonic()
                if left <= 0 or (self.error is not None):
                    last = self.plans[-1] if self.plans else None
                    raise AssertionError(f"no plan with {what} within {timeout_s} s (stream error: {self.error}); "
                                         f"last plan: {last}")
                self._cond.wait(timeout=min(left, 1.0))

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=10)
        self.channel.close()


@dataclass
class FaroProcess:
    """One ``faro <subcommand>`` process; stdout+stderr go to ``log_path``."""

    subcommand: str
    args: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self) -> FaroProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "faro.optimizer.cli", self.subcommand, *self.args],
                                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"faro {self.subcommand} exited with {self.process and self.process.returncode}:\n"
                                 f"{self.log()[-3000:]}")


def http_get(url: str, *, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
             timeout_s: float = 10.0) -> tuple[int, Any]:
    """GET ``url``; (status, JSON body or text). HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def create_auth_configmap(kube_client: Any, front_proxy_ca_pem: str) -> None:
    """``kube-system/extension-apiserver-authentication`` as kube-apiserver publishes it (front-proxy CA)."""
    from kubernetes import client

    client.CoreV1Api(kube_client).create_namespaced_config_map("kube-system", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="extension-apiserver-authentication", namespace="kube-system"),
        data={"requestheader-client-ca-file": front_proxy_ca_pem,
              "requestheader-allowed-names": '["front-proxy-client"]',
              "requestheader-username-headers": '["X-Remote-User"]',
              "requestheader-group-headers": '["X-Remote-Group"]',
              "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'},
    ))


def scrape_value(text: str, name: str, **labels: str) -> float | None:
    """The value of series ``name{labels…}`` in Prometheus text exposition (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@dataclass
class HPAController:
    """One HPA: every ``sync()`` reads ``faro_desired_replicas`` over HTTPS (a failed read = no metric = hold)
    and steps the emulator; ``now_s`` is its own fake clock, advanced by one sync period per call."""

    base_url: str
    context: ssl.SSLContext
    namespace: str
    deployment: str
    spec: HPASpec
    replicas: int
    state: HPAState = field(default_factory=HPAState)
    headers: dict[str, str] = field(default_factory=dict)
    now_s: float = 0.0
    last_status: int = 0

    @property
    def url(self) -> str:
        query = urllib.parse.urlencode({"labelSelector": f"deployment={self.deployment}"})
        return self.base_url + METRIC_PATH.format(namespace=self.namespace) + "?" + query

    def read_metric(self) -> float | None:
        request = urllib.request.Request(self.url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                self.last_status = response.status
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            self.last_status = exc.code
            return None
        except OSError:
            self.last_status = 0
            return None
        return float(parse_quantity(body["items"][0]["value"]))  # a Quantity string, e.g. "7" or "2500m"

    def sync(self) -> float | None:
        value = self.read_metric()
        self.replicas, self.state = hpa_step(self.spec, self.state, now_s=self.now_s, current_replicas=self.replicas,
                                             metric_value=value)
        self.now_s += self.spec.sync_period_s
        return value

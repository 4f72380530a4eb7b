"""Real Prometheus for tests: Debian's ``/usr/bin/prometheus`` on a free loopback port, plus a test exporter.

Fixtures (exposed to every test through ``tests/conftest.py``):

- ``prometheus_factory(targets, *, scrape_interval_s=1.0, backfill=None)`` starts a Prometheus with a
  temp config and TSDB scraping ``targets`` (``host:port`` strings) and returns a
  ``PrometheusServer`` (``url``, ``stop()``, ``wait_for(expr)``); all are stopped at teardown.
  ``backfill`` is OpenMetrics text written into the TSDB with ``promtool`` before start (history
  that would take minutes of real scraping).
- ``traffic_exporter``: a prometheus-client HTTP server on another free port serving the generic
  preset's series (``http_requests_total``, ``http_request_duration_seconds``,
  ``model_inference_duration_seconds``, ``model_queue_length``) for the traffic the test sets with
  ``set_traffic``. Counters advance as exact functions of the clock (rate × elapsed time), so what
  Prometheus scrapes does not depend on thread scheduling on a loaded machine.
- ``prometheus``: a Prometheus scraping ``traffic_exporter`` every second.

Tests that need them skip with a clear reason only when the binary is absent (CI installs it).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

PROMETHEUS_BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL_BINARY = shutil.which("promtool") or "/usr/bin/promtool"
STARTUP_TIMEOUT_S = 90.0  # generous: a loaded 2-core machine


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prometheus_available() -> bool:
    return Path(PROMETHEUS_BINARY).is_file()


# --------------------------------------------------------------------------------------------- server


@dataclass
class PrometheusServer:
    """One Prometheus process on 127.0.0.1:``port`` with its own config and TSDB under ``workdir``."""

    targets: Sequence[str]
    workdir: Path
    scrape_interval_s: float = 1.0
    port: int = 0
    extra_scrape_configs: Sequence[Mapping] = ()
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.log_path = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tsdb_dir(self) -> Path:
        return self.workdir / "tsdb"

    def write_config(self) -> Path:
        interval = f"{self.scrape_interval_s:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {"job_name": "faro-test", "static_configs": [{"targets": list(self.targets)}]},
                *self.extra_scrape_configs,
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def backfill(self, openmetrics: str) -> None:
        """Write OpenMetrics text (must end with ``# EOF``) into the TSDB as blocks, before start."""
        if not Path(PROMTOOL_BINARY).is_file():
            pytest.skip(f"promtool not found at {PROMTOOL_BINARY} (Debian package prometheus ships it)")
        source = self.workdir / "backfill.om"
        source.write_text(openmetrics)
        self.tsdb_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [PROMTOOL_BINARY, "tsdb", "create-blocks-from", "openmetrics", str(source), str(self.tsdb_dir)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> PrometheusServer:
        config = self.write_config()
        self.tsdb_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.tsdb_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready on {self.url} after {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, n_chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def query(self, expr: str, *, time_s: float | None = None) -> list[dict]:
        params = {"query": expr}
        if time_s is not None:
            params["time"] = f"{time_s:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]["result"]

    def wait_for(
        self,
        expr: str,
        *,
        predicate: Callable[[list[dict]], bool] = bool,
        timeout_s: float = 60.0,
    ) -> list[dict]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: any series); bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        result: list[dict] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, KeyError, ValueError):
                result = self.query(expr)
                if predicate(result):
                    return result
            time.sleep(0.25)
        raise TimeoutError(f"{expr!r} did not satisfy the condition within {timeout_s} s; last result {result}")


# ------------------------------------------------------------------------------------------- exporter

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class _Job:
    """Exact totals at ``since_s`` plus the traffic in force after it."""

    since_s: float
    count: float = 0.0
    latency_sum_s: float = 0.0
    processing_sum_s: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: dict.fromkeys(LATENCY_BUCKETS_S, 0.0))
    rate_rps: float = 0.0
    fractions: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative fraction
    mean_latency_s: float = 0.0
    processing_s: float = 0.0
    queue_length: float = 0.0

    def advance(self, now_s: float) -> None:
        n = self.rate_rps * max(0.0, now_s - self.since_s)
        self.count += n
        self.latency_sum_s += n * self.mean_latency_s
        self.processing_sum_s += n * self.processing_s
        for le in self.buckets:
            self.buckets[le] += n * self.fractions.get(le, 0.0)
        self.since_s = now_s


class TrafficExporter:
    """A prometheus-client collector whose series follow the traffic the test sets; see the module docstring."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.port = 0
        self._server = None

    def start(self) -> TrafficExporter:
        self.port = free_port()
        self._server, _thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_traffic(
        self,
        namespace: str,
        deployment: str,
        *,
        rate_rps: float,
        latency_fractions: Mapping[float, float] | None = None,
        mean_latency_ms: float = 0.0,
        processing_ms: float = 0.0,
        queue_length: float = 0.0,
    ) -> None:
        """From now on, ``rate_rps`` requests/s whose latencies fall at or below each bucket bound ``le``
        (seconds, one of ``LATENCY_BUCKETS_S``) with the given cumulative fraction."""
        fractions = dict(latency_fractions or {})
        unknown = set(fractions) - set(LATENCY_BUCKETS_S)
        assert not unknown, f"bucket bounds must be among {LATENCY_BUCKETS_S}, got {sorted(unknown)}"
        cumulative = {le: max((f for b, f in fractions.items() if b <= le), default=0.0) for le in LATENCY_BUCKETS_S}
        with self._lock:
            now_s = self._clock()
            job = self._jobs.setdefault((namespace, deployment), _Job(since_s=now_s))
            job.advance(now_s)
            job.rate_rps = rate_rps
            job.fractions = cumulative
            job.mean_latency_s = mean_latency_ms / 1000
            job.processing_s = processing_ms / 1000
            job.queue_length = queue_length

    def remove(self, namespace: str, deployment: str) -> None:
        """The job's series disappear (as if its server went away)."""
        with self._lock:
            self._jobs.pop((namespace, deployment), None)

    def collect(self) -> Iterator:
        labels = ["namespace", "deployment"]
        requests = CounterMetricFamily("http_requests", "Requests received.", labels=labels)
        latency = HistogramMetricFamily("http_request_duration_seconds", "End-to-end latency.", labels=labels)
        processing = HistogramMetricFamily("model_inference_duration_seconds", "Time in the model.", labels=labels)
        queue = GaugeMetricFamily("model_queue_length", "Requests waiting.", labels=labels)
        with self._lock:
            now_s = self._clock()
            for (namespace, deployment), job in self._jobs.items():
                job.advance(now_s)
                values = [namespace, deployment]
                requests.add_metric(values, job.count)
                buckets = [(f"{le:g}", job.buckets[le]) for le in LATENCY_BUCKETS_S] + [("+Inf", job.count)]
                latency.add_metric(values, buckets, job.latency_sum_s)
                processing.add_metric(values, [("+Inf", job.count)], job.processing_sum_s)
                queue.add_metric(values, job.queue_length)
        yield from (requests, latency, processing, queue)

    def describe(self) -> list:
        return []  # families vary with the jobs; nothing to check at registration


def openmetrics_counter(
    name: str, labels: Mapping[str, str], points: Sequence[tuple[float, float]], *, help_text: str = "test"
) -> str:
    """OpenMetrics text for one counter series (``name`` without ``_total``) with (time s, value) points."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}_total{{{label_text}}} {value:g} {t:.3f}" for t, value in points]
    return "\n".join(lines) + "\n# EOF\n"


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    if not prometheus_available():
        pytest.skip(f"prometheus binary not found at {PROMETHEUS_BINARY} (apt-get install prometheus; CI installs it)")
    return PROMETHEUS_BINARY


@pytest.fixture
def traffic_exporter() -> Iterator[TrafficExporter]:
    with running_exporter() as exporter:
        yield exporter


@contextlib.contextmanager
def prometheus_servers() -> Iterator[Callable[..., PrometheusServer]]:
    """Yields ``start(targets, *, scrape_interval_s=1.0, backfill=None, extra_scrape_configs=())``; stops
    every server it started and removes its files on exit (any fixture scope can use it)."""
    if not prometheus_available():
        pytest.skip(f"prometheus binary not found at {PROMETHEUS_BINARY} (apt-get install prometheus; CI installs it)")
    servers: list[PrometheusServer] = []
    workdirs: list[str] = []

    def start(
        targets: Sequence[str],
        *,
        scrape_interval_s: float = 1.0,
        backfill: str | None = None,
        extra_scrape_configs: Sequence[Mapping] = (),
    ) -> PrometheusServer:
        workdir = tempfile.mkdtemp(prefix="faro-prom-")
        workdirs.append(workdir)
        server = PrometheusServer(
            targets=targets,
            workdir=Path(workdir),
            scrape_interval_s=scrape_interval_s,
            extra_scrape_configs=extra_scrape_configs,
        )
        servers.append(server)
        if backfill is not None:
            server.backfill(backfill)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def running_exporter() -> Iterator[TrafficExporter]:
    exporter = TrafficExporter().start()
    try:
        yield exporter
    finally:
        exporter.close()


@pytest.fixture
def prometheus_factory(prometheus_binary: str) -> Iterator[Callable[..., PrometheusServer]]:
    with prometheus_servers() as start:
        yield start


@pytest.fixture
def prometheus(prometheus_factory, traffic_exporter: TrafficExporter) -> PrometheusServer:
    """A Prometheus scraping ``traffic_exporter`` every second, ready to answer."""
    return prometheus_factory([traffic_exporter.target])


def is_finite_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)

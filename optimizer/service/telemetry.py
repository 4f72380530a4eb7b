"""The optimizer's own metrics (prometheus-client, injected registry) and its plain HTTP endpoint.

``Telemetry`` is created by the service with a ``CollectorRegistry`` it owns (never the global
default) and updated by the control loop; ``serve_http`` exposes ``/metrics``, ``/healthz`` (the
process is up) and ``/readyz`` (caches synced and, on the leader, a plan published recently).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DEPLOYMENT = ("namespace", "deployment")
DEPLOYMENT_PARAMETER = (*DEPLOYMENT, "parameter")
LLM_PARAMETERS = ("step_base_ms", "decode_ms_per_seq", "prefill_ms_per_token", "kv_cache_tokens", "ttft_overhead_ms")


class Telemetry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.solve_seconds = Histogram("faro_optimizer_solve_seconds", "Time of one policy decision (forecast+solve)",
                                       ["kind"], registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.cycle_seconds = Histogram("faro_optimizer_cycle_seconds", "Time of one control cycle", registry=r,
                                       buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.plan_generation = Gauge("faro_optimizer_plan_generation", "Generation of the last published plan",
                                     registry=r)
        self.plans_published = Counter("faro_optimizer_plans_published", "Plans published", ["kind"], registry=r)
        self.cycle_errors = Counter("faro_optimizer_cycle_errors", "Control cycles that failed", registry=r)
        self.is_leader = Gauge("faro_optimizer_is_leader", "1 when this replica holds the Lease", registry=r)
        self.desired = Gauge("faro_optimizer_desired_replicas", "Desired replicas in the current plan", DEPLOYMENT,
                             registry=r)
        self.current = Gauge("faro_optimizer_current_replicas", "spec.replicas when planned", DEPLOYMENT, registry=r)
        self.forecast = Gauge("faro_optimizer_forecast_rps", "Forecast arrival rate", DEPLOYMENT, registry=r)
        self.latency = Gauge("faro_optimizer_expected_latency_ms", "Expected SLO-percentile latency", DEPLOYMENT,
                             registry=r)
        self.utility = Gauge("faro_optimizer_expected_utility", "Expected utility", DEPLOYMENT, registry=r)
        self.held = Gauge("faro_optimizer_held", "1 when the Deployment is held at its current replicas",
                          [*DEPLOYMENT, "reason"], registry=r)
        self.held_total = Gauge("faro_optimizer_held_deployments", "Deployments held back this cycle", registry=r)
        self.invalid = Counter("faro_optimizer_invalid_annotations", "Invalid faro.dev annotations seen (per cycle)",
                               [*DEPLOYMENT, "annotation"], registry=r)
        self.stale = Gauge("faro_optimizer_observations_age_seconds", "Age of the observations a plan used",
                           DEPLOYMENT, registry=r)
        self.metrics_errors = Counter("faro_optimizer_metrics_errors", "Per-Deployment metrics failures", registry=r)
        self.history_backfills = Counter("faro_optimizer_history_backfills", "Per-Deployment history backfills "
                                         "(--history-backfill-minutes) by result: ok, or failed (retried)", ["result"],
                                         registry=r)
        self.headroom = Gauge("faro_optimizer_quota_headroom", "Quota left after the plan (hard - used - planned)",
                              ["quota", "resource"], registry=r)
        self.actuator_errors = Counter("faro_optimizer_actuator_errors", "Per-job actuator failures", ["actuator"],
                                       registry=r)
        self.watch_errors = Gauge("faro_optimizer_watch_errors", "Watch errors per informer", ["resource"], registry=r)
        self.relists = Gauge("faro_optimizer_lists", "Full lists per informer (initial, 410 Gone)", ["resource"],
                             registry=r)
        self.llm_profile = Gauge("faro_optimizer_llm_profile", "Engine profile an LLM Deployment was planned with "
                                 "(step_base_ms, decode_ms_per_seq, prefill_ms_per_token, kv_cache_tokens, "
                                 "ttft_overhead_ms)",
                                 [*DEPLOYMENT_PARAMETER], registry=r)
        self.llm_fit_error = Gauge("faro_optimizer_llm_profile_fit_error", "Weighted mean relative error of the "
                                   "engine-profile calibration over its windows", DEPLOYMENT, registry=r)
        self.grpc_refused = Counter("faro_optimizer_grpc_refused", "Plan API calls refused, by method and gRPC code "
                                    "(UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...)",
                                    ["method", "code"], registry=r)
        self.whatif_solves = Counter("faro_optimizer_whatif_solves", "What-if Solve calls by outcome: ok, error, "
                                     "refused, invalid, timeout, crashed", ["outcome"], registry=r)
        self.whatif_seconds = Histogram("faro_optimizer_whatif_solve_seconds", "Time of one what-if Solve call",
                                        registry=r, buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.auth_reviews = Counter("faro_optimizer_auth_reviews", "TokenReview/SubjectAccessReview calls of the plan "
                                    "API (cache misses) by outcome", ["kind", "outcome"], registry=r)
        self._series: set[tuple[str, str]] = set()
        self._llm_series: set[tuple[str, str]] = set()

    def set_target(self, target: object) -> None:
        """Per-Deployment gauges from one published ``Target``."""
        key = (target.namespace, target.name)  # type: ignore[attr-defined]
        self._series.add(key)
        self.desired.labels(*key).set(target.desired_replicas)  # type: ignore[attr-defined]
        self.current.labels(*key).set(target.current_replicas)  # type: ignore[attr-defined]
        self.forecast.labels(*key).set(target.forecast_rps)  # type: ignore[attr-defined]
        self.latency.labels(*key).set(target.expected_latency_ms)  # type: ignore[attr-defined]
        self.utility.labels(*key).set(target.expected_utility)  # type: ignore[attr-defined]
        self.stale.labels(*key).set(target.observations_age_s)  # type: ignore[attr-defined]
        if getattr(target, "llm_profile_source", ""):
            self._llm_series.add(key)
            for name in LLM_PARAMETERS:
                self.llm_profile.labels(*key, name).set(getattr(target, f"llm_{name}"))
            self.llm_fit_error.labels(*key).set(target.llm_profile_fit_error)  # type: ignore[attr-defined]

    def forget_deployments(self, keep: set[tuple[str, str]]) -> None:
        """Remove the series of Deployments no longer in the plan; reset the held markers."""
        for key in self._series - keep:
            for gauge in (self.desired, self.current, self.forecast, self.latency, self.utility, self.stale):
                with contextlib.suppress(KeyError):
                    gauge.remove(*key)
        self._series &= keep
        for key in self._llm_series - keep:
            for name in LLM_PARAMETERS:
                with contextlib.suppress(KeyError):
                    self.llm_profile.remove(*key, name)
            with contextlib.suppress(KeyError):
                self.llm_fit_error.remove(*key)
        self._llm_series &= keep
        self.held.clear()


def serve_http(address: str, registry: CollectorRegistry, *, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Start ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (port 0: any free port)."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
            elif path in ("/healthz", "/livez"):
                body, ctype, code = b"ok", "text/plain", 200
            elif path == "/readyz":
                ok = ready()
                body, ctype, code = (b"ok" if ok else b"not ready"), "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="faro-metrics-http", daemon=True).start()
    return server

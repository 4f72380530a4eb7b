"""Prometheus metrics of the adapter, on an injected ``CollectorRegistry`` (no global registry).

Built once by ``adapter/app.py`` and handed to the plan sources, the HTTPS layer and the KEDA servicer.
Plan freshness is computed at scrape time from the ``PlanProvider`` so it is never out of date.
"""

from __future__ import annotations

from faro.adapter.provider import PlanProvider
from faro.v1 import plan_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AdapterMetrics:
    def __init__(self, registry: CollectorRegistry, provider: PlanProvider) -> None:
        self.registry = registry
        self.plans_received = Counter(
            "faro_adapter_plans_received_total", "Plans received from the optimizer or the plan file", registry=registry
        )
        self.plan_generation = Gauge(
            "faro_adapter_plan_generation", "Generation of the latest plan received", registry=registry
        )
        self.plan_targets = Gauge("faro_adapter_plan_targets", "Deployments in the latest plan", registry=registry)
        fresh = Gauge(
            "faro_adapter_plan_fresh",
            "1 when the latest plan may be served, 0 when missing or stale (HPAs hold)",
            registry=registry,
        )
        fresh.set_function(lambda: 1.0 if provider.freshness().fresh else 0.0)
        age = Gauge(
            "faro_adapter_plan_age_seconds", "Age of the latest plan (-1 when none)", registry=registry
        )
        age.set_function(lambda: _age(provider))
        self.watch_reconnects = Counter(
            "faro_adapter_watch_reconnects_total", "WatchPlans stream reconnect attempts", registry=registry
        )
        self.plan_file_errors = Counter(
            "faro_adapter_plan_file_errors_total", "Plan file re-reads that failed (previous plan kept)",
            registry=registry,
        )
        self.requests = Counter(
            "faro_adapter_requests_total",
            "Requests answered, by surface (http/keda), handler and code",
            ["surface", "handler", "code"],
            registry=registry,
        )
        self.stale_responses = Counter(
            "faro_adapter_stale_responses_total",
            "Metric requests refused because no fresh plan was held",
            ["surface"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "faro_adapter_request_duration_seconds",
            "Time to answer an external-metrics request",
            ["surface"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.auth_reviews = Counter(
            "faro_adapter_auth_reviews_total",
            "TokenReview/SubjectAccessReview calls to the API server (cache misses), by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.auth_config_reloads = Counter(
            "faro_adapter_auth_config_reloads", "Re-reads of the auth ConfigMap that changed something (applied) or "
            "could not be used (failed: the previous settings stay)", ["result"], registry=registry,
        )

    def plan_received(self, plan: plan_pb2.Plan) -> None:
        self.plans_received.inc()
        self.plan_generation.set(plan.generation)
        self.plan_targets.set(len(plan.targets))


def _age(provider: PlanProvider) -> float:
    age_s = provider.freshness().age_s
    return -1.0 if age_s is None else age_s

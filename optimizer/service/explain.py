"""Why each Deployment got its replica count: the numbers ``faro status NS/NAME`` explains a decision with.

Called by the control loop (``loop.py``) when it publishes a plan: per planned Deployment the ready replicas,
the forecast quantile the plan used, the expected steady-state latency at the forecast with one replica fewer,
the chosen count and one more (the same queueing model the policy planned with), and what stops one more
replica — a quota (or the cluster cap) without room for it, or the Deployment's max replicas. Pure apart from
its inputs; held Deployments get only their ready replicas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from faro.optimizer.model.latency import tail_latency_ms
from faro.optimizer.model.problem import ModelConfig
from faro.optimizer.policy.base import Target
from faro.optimizer.quantity import format_quantity
from faro.optimizer.service.view import Cycle, _demand


def explain_targets(targets: Sequence[Target], cycle: Cycle, *, model: ModelConfig | None = None,
                    quantile: float | None = None) -> list[Target]:
    """``targets`` with the explanation fields filled in (``Target`` is frozen: new objects)."""
    model = model or ModelConfig()
    jobs = {jv.spec.key: jv for jv in cycle.view.jobs}
    desired = {(t.namespace, t.name): t.desired_replicas for t in targets}
    headroom = _headroom(cycle, desired)
    out = []
    for t in targets:
        key = (t.namespace, t.name)
        info = cycle.infos.get(key)
        fields: dict[str, object] = {"ready_replicas": int(info.ready_replicas) if info else 0}
        job = jobs.get(key)
        if job is not None and not t.held_reason:
            counts = np.array([max(t.desired_replicas - 1, 0), t.desired_replicas, t.desired_replicas + 1])
            lat = tail_latency_ms(t.forecast_rps * t.admission, job.spec.processing_time_ms, counts,
                                  percentile=job.spec.slo.percentile, rho_max=model.rho_max)
            finite = [float(x) if np.isfinite(x) else 0.0 for x in lat]
            fields.update(
                forecast_quantile=float(quantile or 0.0),
                latency_one_fewer_ms=finite[0] if t.desired_replicas > 1 else 0.0,
                steady_latency_ms=finite[1],
                latency_one_more_ms=finite[2],
                binding_quota=_binding(key, t.desired_replicas, job.spec.max_replicas, cycle, headroom),
            )
        out.append(dataclasses.replace(t, **fields))
    return out


def _headroom(cycle: Cycle, desired: Mapping[tuple[str, str], int]) -> list[tuple[str, str | None, str, float]]:
    """(quota name, namespace or None for the cluster cap, resource, free after the plan) per quota row."""
    rows = []
    for quota in cycle.view.quotas:
        for resource in quota.hard:
            planned = sum(count * _demand(cycle.infos[key], resource) for key, count in desired.items()
                          if key in cycle.infos and (quota.namespace is None or key[0] == quota.namespace))
            rows.append((quota.name, quota.namespace, resource, quota.free(resource) - planned))
    return rows


def _binding(key: tuple[str, str], count: int, max_replicas: int, cycle: Cycle,
             headroom: Sequence[tuple[str, str | None, str, float]]) -> str:
    if count >= max_replicas:
        return f"max replicas {max_replicas}"
    info = cycle.infos[key]
    for name, namespace, resource, free in headroom:
        if namespace is not None and namespace != key[0]:
            continue
        need = _demand(info, resource)
        if need > 0 and free + 1e-9 < need:
            what = "cluster cap" if namespace is None else f"quota {name}"
            return (f"{what} {resource}: {format_quantity(resource, max(free, 0.0))} free, a replica needs "
                    f"{format_quantity(resource, need)}")
    return ""

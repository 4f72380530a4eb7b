"""An emulator of the Kubernetes HorizontalPodAutoscaler for one External metric with an AverageValue target.

Called by the simulator (``optimizer/sim/engine.py``, ``actuation="hpa"``) to turn a plan's desired replicas
(served by the adapter as ``faro_desired_replicas``) into the replica count a real HPA would set, and by the
adapter's tests as the consumer of the metric it serves. Pure: time comes in as ``now_s``; the state is a
frozen value returned with each answer.

Notes
-----
Follows ``pkg/controller/podautoscaler`` (``horizontal.go``, ``replica_calculator.go``) of Kubernetes:

1. Every sync period (15 s, the controller's ``--horizontal-pod-autoscaler-sync-period``):
   if current replicas are 0 and min > 0 autoscaling is disabled; if current > max the answer is max;
   if current < min the answer is min (no stabilization). Otherwise the metric is read; if it cannot be
   read the HPA keeps the current replicas.
2. ``GetExternalPerPodMetricReplicas``: ``ratio = value / (target · current)``; inside the tolerance band
   ``1 − tol_down ≤ ratio ≤ 1 + tol_up`` (inclusive, default 0.1 each) the proposal is ``current``,
   otherwise ``ceil(value / target)``. Values are Quantities, compared in milli-units as upstream.
3. Stabilization (``stabilizeRecommendationWithBehaviors``): the recommendation is the current count
   raised to the lowest proposal within the scale-up window (default 0 s) and lowered to the highest
   within the scale-down window (default 300 s; Faro recommends 0). Every proposal is recorded.
4. Rate limits (``convertDesiredReplicasWithBehaviorRate``): each policy allows, relative to the replicas
   at the start of its period, ``+value`` pods or
   ``ceil(start · (1 + value/100))`` up, ``start − value`` or ``int(start · (1 − value/100))`` down
   (start = current − scale-ups + scale-downs made within the period, as in current Kubernetes);
   ``selectPolicy`` Max picks the largest change, Min the smallest, Disabled none; min/max clamp.
5. A change is recorded as a scale event (up and down kept separately) for the rate limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from faro.optimizer.errors import InvalidInputError

DEFAULT_TOLERANCE = 0.1
"""The controller's ``--horizontal-pod-autoscaler-tolerance``."""

DEFAULT_SYNC_PERIOD_S = 15.0
DEFAULT_SCALE_DOWN_STABILIZATION_S = 300.0


@dataclass(frozen=True)
class HPAScalingPolicy:
    """One ``HPAScalingPolicy``: ``type`` Pods or Percent, ``value``, ``period_s`` (``periodSeconds``)."""

    type: Literal["Pods", "Percent"]
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.type not in ("Pods", "Percent"):
            raise InvalidInputError("HPAScalingPolicy.type", f"must be 'Pods' or 'Percent', got {self.type!r}")
        if self.value <= 0:
            raise InvalidInputError("HPAScalingPolicy.value", f"must be > 0, got {self.value!r}")
        if not 0 < self.period_s <= 1800:
            raise InvalidInputError("HPAScalingPolicy.period_s", f"must be in (0, 1800], got {self.period_s!r}")


@dataclass(frozen=True)
class HPAScalingRules:
    """One direction of ``behavior`` (``scaleUp`` or ``scaleDown``).

    ``tolerance`` is the Kubernetes ≥ 1.33 per-direction field (None = the controller default 0.1).
    """

    stabilization_window_s: float = 0.0
    policies: tuple[HPAScalingPolicy, ...] = ()
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.stabilization_window_s <= 3600:
            raise InvalidInputError(
                "HPAScalingRules.stabilization_window_s", f"must be in [0, 3600], got {self.stabilization_window_s!r}"
            )
        if self.select_policy not in ("Max", "Min", "Disabled"):
            raise InvalidInputError(
                "HPAScalingRules.select_policy", f"must be Max, Min or Disabled, got {self.select_policy!r}"
            )
        if self.tolerance is not None and not self.tolerance >= 0:
            raise InvalidInputError("HPAScalingRules.tolerance", f"must be >= 0, got {self.tolerance!r}")

    @property
    def longest_period_s(self) -> float:
        return max((p.period_s for p in self.policies), default=0.0)


def default_scale_up() -> HPAScalingRules:
    """Upstream default: no stabilization, max(+4 pods, +100%) per 15 s."""
    return HPAScalingRules(
        stabilization_window_s=0.0,
        policies=(HPAScalingPolicy("Pods", 4, 15.0), HPAScalingPolicy("Percent", 100, 15.0)),
        select_policy="Max",
    )


def default_scale_down(stabilization_window_s: float = DEFAULT_SCALE_DOWN_STABILIZATION_S) -> HPAScalingRules:
    """Upstream default: 300 s stabilization, −100% per 15 s."""
    return HPAScalingRules(
        stabilization_window_s=stabilization_window_s,
        policies=(HPAScalingPolicy("Percent", 100, 15.0),),
        select_policy="Max",
    )


@dataclass(frozen=True)
class HPABehavior:
    """``spec.behavior``; the defaults are what the API server fills in when it is left out."""

    scale_up: HPAScalingRules = field(default_factory=default_scale_up)
    scale_down: HPAScalingRules = field(default_factory=default_scale_down)

    @classmethod
    def recommended_for_faro(cls, *, tolerance: float | None = None) -> HPABehavior:
        """What Faro's docs recommend: no scale-down stabilization (the optimizer smooths), optional tolerance 0."""
        up = replace(default_scale_up(), tolerance=tolerance)
        down = replace(default_scale_down(0.0), tolerance=tolerance)
        return cls(scale_up=up, scale_down=down)


@dataclass(frozen=True)
class HPASpec:
    """The parts of an ``autoscaling/v2`` HPA that matter for one External AverageValue metric."""

    min_replicas: int
    max_replicas: int
    target_average_value: float = 1.0
    behavior: HPABehavior = field(default_factory=HPABehavior)
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S
    default_tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise InvalidInputError("HPASpec.min_replicas", f"must be >= 0, got {self.min_replicas!r}")
        if self.max_replicas < max(1, self.min_replicas):
            raise InvalidInputError(
                "HPASpec.max_replicas", f"must be >= max(1, min_replicas), got {self.max_replicas!r}"
            )
        if not (self.target_average_value > 0 and math.isfinite(self.target_average_value)):
            raise InvalidInputError("HPASpec.target_average_value", f"must be > 0, got {self.target_average_value!r}")
        if not self.sync_period_s > 0:
            raise InvalidInputError("HPASpec.sync_period_s", f"must be > 0, got {self.sync_period_s!r}")


@dataclass(frozen=True)
class HPAState:
    """What the controller remembers per HPA: last sync, recent proposals and recent scale events.

    ``recommendations``: (time_s, proposal); ``scale_up_events`` / ``scale_down_events``: (time_s, change).
    """

    last_sync_s: float | None = None
    recommendations: tuple[tuple[float, int], ...] = ()
    scale_up_events: tuple[tuple[float, int], ...] = ()
    scale_down_events: tuple[tuple[float, int], ...] = ()


def _milli(value: float) -> int:
    """A Quantity's ``MilliValue()``: rounded up to whole milli-units (tiny float noise ignored)."""
    return math.ceil(value * 1000.0 - 1e-6)


def desired_from_external_average(
    current_replicas: int, metric_value: float, target_average_value: float, tolerance: float | tuple[float, float]
) -> int:
    """``GetExternalPerPodMetricReplicas``: the replica proposal for an External AverageValue metric.

    ``tolerance`` is one number or ``(scale_up_tolerance, scale_down_tolerance)``; the band is inclusive.
    """
    tol_up, tol_down = (tolerance, tolerance) if isinstance(tolerance, int | float) else tolerance
    usage_m = _milli(metric_value)
    target_m = _milli(target_average_value)
    if current_replicas > 0:
        ratio = usage_m / (target_m * current_replicas)
        if 1.0 - tol_down <= ratio <= 1.0 + tol_up:
            return current_replicas
    return math.ceil(usage_m / target_m)


def _change_within(events: tuple[tuple[float, int], ...], now_s: float, period_s: float) -> int:
    # Upstream counts events strictly after now − period.
    return sum(change for t, change in events if t > now_s - period_s)


def _period_start(current: int, state: HPAState, now_s: float, period_s: float) -> int:
    # Replicas at the start of the policy period: undo the changes made within it (both directions).
    added = _change_within(state.scale_up_events, now_s, period_s)
    deleted = _change_within(state.scale_down_events, now_s, period_s)
    return current - added + deleted


def _scale_up_limit(current: int, state: HPAState, rules: HPAScalingRules, now_s: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick, result = (min, 2**31 - 1) if rules.select_policy == "Min" else (max, -(2**31))
    for policy in rules.policies:
        start = _period_start(current, state, now_s, policy.period_s)
        # Percent is rounded up so a small deployment can still grow.
        proposed = start + policy.value if policy.type == "Pods" else math.ceil(start * (1.0 + policy.value / 100.0))
        result = pick(result, proposed)
    return result


def _scale_down_limit(current: int, state: HPAState, rules: HPAScalingRules, now_s: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick, result = (max, -(2**31)) if rules.select_policy == "Min" else (min, 2**31 - 1)
    for policy in rules.policies:
        start = _period_start(current, state, now_s, policy.period_s)
        proposed = start - policy.value if policy.type == "Pods" else int(start * (1.0 - policy.value / 100.0))
        result = pick(result, proposed)
    return result


def _stabilize(
    spec: HPASpec, state: HPAState, *, now_s: float, current: int, proposal: int
) -> tuple[int, tuple[tuple[float, int], ...]]:
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    # Current upstream: the lowest proposal of the scale-up window and the highest of the scale-down
    # window bound the current count, so a proposal below it never turns into a scale-up.
    up_limit = down_limit = proposal
    for t, rec in state.recommendations:
        if t > now_s - up.stabilization_window_s:
            up_limit = min(rec, up_limit)
        if t > now_s - down.stabilization_window_s:
            down_limit = max(rec, down_limit)
    recommendation = min(max(current, up_limit), down_limit)
    # Keep only what either window can still use (upstream reuses one obsolete slot; same effect).
    keep_s = max(up.stabilization_window_s, down.stabilization_window_s)
    kept = tuple((t, r) for t, r in state.recommendations if t > now_s - keep_s)
    return recommendation, (*kept, (now_s, proposal))


def _rate_limited(spec: HPASpec, state: HPAState, *, now_s: float, current: int, desired: int) -> int:
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    if desired > current:
        limit = max(_scale_up_limit(current, state, up, now_s), current)
        return min(desired, spec.max_replicas, limit)
    if desired < current:
        limit = min(_scale_down_limit(current, state, down, now_s), current)
        return max(desired, spec.min_replicas, limit)
    return desired


def _record_scale_event(spec: HPASpec, state: HPAState, *, now_s: float, before: int, after: int) -> HPAState:
    # Both directions' limits read both event lists, so keep what the longest policy period can see.
    keep_s = max(spec.behavior.scale_up.longest_period_s, spec.behavior.scale_down.longest_period_s)
    ups = tuple(e for e in state.scale_up_events if e[0] > now_s - keep_s)
    downs = tuple(e for e in state.scale_down_events if e[0] > now_s - keep_s)
    if after > before:
        ups = (*ups, (now_s, after - before))
    else:
        downs = (*downs, (now_s, before - after))
    return replace(state, scale_up_events=ups, scale_down_events=downs)


def hpa_step(
    spec: HPASpec, state: HPAState, *, now_s: float, current_replicas: int, metric_value: float | None
) -> tuple[int, HPAState]:
    """One call of the HPA controller at ``now_s``: the replicas it sets and its new memory.

    Between sync periods the call is a no-op (returns ``current_replicas``). ``metric_value`` None means
    the metric could not be read: the HPA keeps the current replicas.
    """
    if state.last_sync_s is not None and now_s - state.last_sync_s < spec.sync_period_s - 1e-9:
        return current_replicas, state
    state = replace(state, last_sync_s=now_s)
    current = current_replicas
    if current == 0 and spec.min_replicas != 0:
        return current, state  # autoscaling disabled for a Deployment scaled to 0
    if current > spec.max_replicas:
        desired = spec.max_replicas
    elif current < spec.min_replicas:
        desired = spec.min_replicas
    elif metric_value is None or not math.isfinite(metric_value) or metric_value < 0:
        return current, state  # FailedGetExternalMetric: no rescale
    else:
        tolerance = (
            _tol(spec.behavior.scale_up.tolerance, spec.default_tolerance),
            _tol(spec.behavior.scale_down.tolerance, spec.default_tolerance),
        )
        proposal = desired_from_external_average(current, metric_value, spec.target_average_value, tolerance)
        recommendation, recs = _stabilize(spec, state, now_s=now_s, current=current, proposal=proposal)
        state = replace(state, recommendations=recs)
        desired = _rate_limited(spec, state, now_s=now_s, current=current, desired=recommendation)
    if desired != current:
        state = _record_scale_event(spec, state, now_s=now_s, before=current, after=desired)
    return desired, state


def _tol(value: float | None, default: float) -> float:
    return default if value is None else value

"""An emulator of the Kubernetes HorizontalPodAutoscaler controller for External metrics.

Called by the simulator (``optimizer/sim/engine.py``, ``actuation="hpa"``) to turn a plan's desired replicas
(served by the adapter as ``faro_desired_replicas``) into the replica count a real HPA would set, and by the
adapter's and the stack's end-to-end tests as the consumer of the metric the adapter serves. Pure: time comes
in as ``now_s``; the controller's memory is a frozen ``HPAState`` returned with each answer.

Covers, case for case, ``pkg/controller/podautoscaler`` of kubernetes/kubernetes at master after v1.35
(``horizontal.go``, ``replica_calculator.go`` and their tests, read from the fork snapshot
``omerap12/kubernetes@a769d588``; ``pkg/apis/autoscaling/v2/defaults.go``). docs/fidelity.md says what is not
modelled (other metric types, pod phases beyond the counts passed in, status and conditions, sync jitter):

* ``reconcileAutoscaler``, one call per sync period (``--horizontal-pod-autoscaler-sync-period``, 15 s):
  ``recordInitialRecommendation`` seeds the recommendations with the current count the first time the
  controller sees the HPA (and after a controller restart: a fresh ``HPAState()``), so nothing scales down
  for one down-stabilization window; then current 0 with min > 0 disables autoscaling, current > max goes to
  max and current < min to min (no metric read, no stabilization), else the metrics decide.
* ``computeReplicasForMetrics``: every metric proposes a count, the largest wins; a metric that cannot be read
  blocks the sync if every metric failed or if the valid ones would scale down, and not otherwise.
* ``GetExternalPerPodMetricReplicas`` (``AverageValue``): ``usage / (target · status replicas)`` inside the
  tolerance band keeps the status count, else ``ceil(usage / target)``; readiness plays no part.
* ``GetExternalMetricReplicas`` + ``getUsageRatioReplicaCount`` (``Value``): ``usage / target`` inside the
  band keeps the current count, else ``ceil(ratio · ready pods)`` (pods Running and Ready; unready pods are
  ignored, no pods at all is an error); from zero replicas ``ceil(ratio)``.
* ``Tolerances.isWithin`` and ``tolerancesForHpa``: ``1 − down ≤ ratio ≤ 1 + up`` (inclusive), per direction
  from ``behavior.scale{Up,Down}.tolerance`` (Kubernetes ≥ 1.33) else the controller's 0.1.
* ``behavior: nil`` (``normalizeDesiredReplicas``, the legacy path): ``stabilizeRecommendation`` takes the
  maximum over the downscale-stabilization window (controller flag, 300 s) in both directions, then
  ``convertDesiredReplicasWithRules`` clamps to [min, min(max, ``calculateScaleUpLimit`` = max(2·current,
  4))]. No scale events are kept.
* behavior set (``normalizeDesiredReplicasWithBehaviors``): ``stabilizeRecommendationWithBehaviors`` starts
  from the *current* count and clamps it into [min of the proposal and the scale-up window's
  recommendations, max of the proposal and the scale-down window's] (kubernetes#96671, PR #97348), so it
  never moves past current against the proposal; ``convertDesiredReplicasWithBehaviorRate`` then applies
  ``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors`` (replicas at the start
  of each policy's period from ``getReplicasChangePerPeriod`` over both directions' events; Pods ±value,
  Percent ``ceil`` up / ``int`` down; ``selectPolicy`` Max, Min or Disabled) and min/max. A nil scale-down
  window takes the controller's flag (``maybeInitScaleDownStabilizationWindow``).
* ``storeScaleEvent`` / ``markScaleEventsOutdated``: one event per rescale in its direction's list; an
  event older than that direction's longest policy period is outdated and the last outdated one is reused.
  Recommendations likewise reuse the last one older than both windows.
* ``SetDefaults_HorizontalPodAutoscalerBehavior`` / ``GenerateHPAScale{Up,Down}Rules``:
  ``HPABehavior.from_manifest``.

Quantities are compared in milli-units as upstream (``MilliValue()`` rounds up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from faro.optimizer.errors import InvalidInputError

DEFAULT_TOLERANCE = 0.1
"""The controller's ``--horizontal-pod-autoscaler-tolerance``."""

DEFAULT_SYNC_PERIOD_S = 15.0
"""The controller's ``--horizontal-pod-autoscaler-sync-period``."""

DEFAULT_SCALE_DOWN_STABILIZATION_S = 300.0
"""The controller's ``--horizontal-pod-autoscaler-downscale-stabilization``."""

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
"""``scaleUpLimitFactor`` / ``scaleUpLimitMinimum``: the legacy path's per-sync scale-up limit."""

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)

Recommendations = tuple[tuple[float, int], ...]
"""(time_s, unstabilized proposal), in the controller's slot order."""

ScaleEvents = tuple[tuple[float, int], ...]
"""(time_s, replica change ≥ 0), in the controller's slot order."""


@dataclass(frozen=True)
class Tolerances:
    """``Tolerances``: the usage ratio band ``[1 − scale_down, 1 + scale_up]`` inside which nothing changes."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def is_within(self, usage_ratio: float) -> bool:
        # Inclusive both ends; NaN is never within (as Go's comparisons).
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


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

    ``stabilization_window_s`` None (scale-down only) takes the controller's downscale-stabilization flag;
    ``tolerance`` is the Kubernetes ≥ 1.33 per-direction field (None = the controller's tolerance, 0.1).
    """

    stabilization_window_s: float | None = 0.0
    policies: tuple[HPAScalingPolicy, ...] = ()
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.stabilization_window_s is not None and not 0 <= self.stabilization_window_s <= 3600:
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
        """``getLongestPolicyPeriod``."""
        return max((p.period_s for p in self.policies), default=0.0)


def default_scale_up() -> HPAScalingRules:
    """``GenerateHPAScaleUpRules(nil)``: no stabilization, max(+4 pods, +100%) per 15 s."""
    return HPAScalingRules(
        stabilization_window_s=0.0,
        policies=(HPAScalingPolicy("Pods", 4, 15.0), HPAScalingPolicy("Percent", 100, 15.0)),
        select_policy="Max",
    )


def default_scale_down(stabilization_window_s: float | None = None) -> HPAScalingRules:
    """``GenerateHPAScaleDownRules(nil)``: −100% per 15 s; the window is left to the controller's flag (300 s)."""
    return HPAScalingRules(
        stabilization_window_s=stabilization_window_s,
        policies=(HPAScalingPolicy("Percent", 100, 15.0),),
        select_policy="Max",
    )


@dataclass(frozen=True)
class HPABehavior:
    """``spec.behavior`` as the controller sees it after the API server's defaulting.

    The defaults are what ``SetDefaults_HorizontalPodAutoscalerBehavior`` fills into a behavior that is
    *present* with fields left out (``behavior: {}`` or only ``scaleDown`` given, say): scale-up
    max(+4 pods, +100%) per 15 s without stabilization, scale-down −100% per 15 s with the controller's
    300 s window. An HPA *without* ``behavior`` keeps ``behavior: nil``, and the controller then takes its
    legacy path instead (``HPASpec(behavior=None)``): max over 300 s in both directions and at most
    max(2 × current, 4) per sync.
    """

    scale_up: HPAScalingRules = field(default_factory=default_scale_up)
    scale_down: HPAScalingRules = field(default_factory=default_scale_down)

    @classmethod
    def recommended_for_faro(cls, *, tolerance: float | None = None) -> HPABehavior:
        """The one definition of the behavior Faro's manifests, chart notes and docs recommend (a test checks
        they agree): no stabilization either way (the optimizer smooths), scale-up max(+8 pods, +100%) per
        15 s, scale-down −100% per 15 s; ``tolerance`` 0 on Kubernetes ≥ 1.33 (``manifests/examples/
        hpa-tolerance``), else the controller's 0.1."""
        up = HPAScalingRules(
            stabilization_window_s=0.0,
            policies=(HPAScalingPolicy("Percent", 100, 15.0), HPAScalingPolicy("Pods", 8, 15.0)),
            select_policy="Max",
            tolerance=tolerance,
        )
        down = HPAScalingRules(
            stabilization_window_s=0.0,
            policies=(HPAScalingPolicy("Percent", 100, 15.0),),
            select_policy="Max",
            tolerance=tolerance,
        )
        return cls(scale_up=up, scale_down=down)

    @classmethod
    def from_manifest(cls, behavior: Mapping[str, Any] | None) -> HPABehavior | None:
        """An ``autoscaling/v2`` ``spec.behavior`` mapping (as parsed from YAML) after the API server's
        defaulting: None stays None (the legacy path); present directions and fields are kept, the rest
        defaulted (``GenerateHPAScaleUpRules`` / ``GenerateHPAScaleDownRules``)."""
        if behavior is None:
            return None
        if not isinstance(behavior, Mapping):
            raise InvalidInputError("behavior", f"must be a mapping, got {type(behavior).__name__}")
        unknown = set(behavior) - {"scaleUp", "scaleDown"}
        if unknown:
            raise InvalidInputError("behavior", f"unknown fields {sorted(unknown)}")
        return cls(
            scale_up=_rules_from_manifest(behavior.get("scaleUp"), default_scale_up(), "behavior.scaleUp"),
            scale_down=_rules_from_manifest(behavior.get("scaleDown"), default_scale_down(), "behavior.scaleDown"),
        )


def _rules_from_manifest(rules: Any, default: HPAScalingRules, where: str) -> HPAScalingRules:
    # copyHPAScalingRules: every non-nil field replaces the default's.
    if rules is None:
        return default
    if not isinstance(rules, Mapping):
        raise InvalidInputError(where, f"must be a mapping, got {type(rules).__name__}")
    unknown = set(rules) - {"stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"}
    if unknown:
        raise InvalidInputError(where, f"unknown fields {sorted(unknown)}")
    out = default
    if rules.get("selectPolicy") is not None:
        out = replace(out, select_policy=rules["selectPolicy"])
    if rules.get("stabilizationWindowSeconds") is not None:
        out = replace(out, stabilization_window_s=float(rules["stabilizationWindowSeconds"]))
    if rules.get("policies") is not None:
        policies = []
        for i, p in enumerate(rules["policies"]):
            if not isinstance(p, Mapping) or set(p) != {"type", "value", "periodSeconds"}:
                raise InvalidInputError(f"{where}.policies[{i}]", f"needs type, value and periodSeconds, got {p!r}")
            policies.append(HPAScalingPolicy(p["type"], int(p["value"]), float(p["periodSeconds"])))
        out = replace(out, policies=tuple(policies))
    if rules.get("tolerance") is not None:
        out = replace(out, tolerance=_quantity(rules["tolerance"], f"{where}.tolerance"))
    return out


def _quantity(value: Any, where: str) -> float:
    """A plain or milli (``50m``) decimal Quantity; enough for tolerances."""
    if isinstance(value, bool):
        raise InvalidInputError(where, f"must be a quantity, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value[:-1]) / 1000.0 if value.endswith("m") else float(value)
        except ValueError:
            pass
    raise InvalidInputError(where, f"must be a decimal quantity such as 0.05 or 50m, got {value!r}")


@dataclass(frozen=True)
class ExternalMetricTarget:
    """One ``type: External`` metric's ``target``: ``AverageValue`` (per pod) or ``Value`` (total)."""

    type: Literal["AverageValue", "Value"]
    value: float

    def __post_init__(self) -> None:
        if self.type not in ("AverageValue", "Value"):
            raise InvalidInputError("ExternalMetricTarget.type", f"must be AverageValue or Value, got {self.type!r}")
        if not (self.value > 0 and math.isfinite(self.value)):
            raise InvalidInputError("ExternalMetricTarget.value", f"must be > 0, got {self.value!r}")


@dataclass(frozen=True)
class HPASpec:
    """The parts of an ``autoscaling/v2`` HPA (and of its controller's flags) that matter for External metrics.

    ``metrics`` None means one External metric with an ``AverageValue`` target of ``target_average_value``
    (Faro's ``faro_desired_replicas`` at 1). ``behavior`` None is an HPA without ``spec.behavior`` (the
    controller's legacy path); the default is a present behavior with every field defaulted.
    ``default_tolerance`` and ``downscale_stabilization_s`` are the controller's flags.
    """

    min_replicas: int
    max_replicas: int
    target_average_value: float = 1.0
    behavior: HPABehavior | None = field(default_factory=HPABehavior)
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S
    default_tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization_s: float = DEFAULT_SCALE_DOWN_STABILIZATION_S
    metrics: tuple[ExternalMetricTarget, ...] | None = None

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
        if not self.default_tolerance >= 0:
            raise InvalidInputError("HPASpec.default_tolerance", f"must be >= 0, got {self.default_tolerance!r}")
        if not 0 <= self.downscale_stabilization_s <= 3600:
            raise InvalidInputError(
                "HPASpec.downscale_stabilization_s", f"must be in [0, 3600], got {self.downscale_stabilization_s!r}"
            )
        if self.metrics is not None and not self.metrics:
            raise InvalidInputError("HPASpec.metrics", "must name at least one metric (or None for the default)")

    @property
    def metric_targets(self) -> tuple[ExternalMetricTarget, ...]:
        if self.metrics is None:
            return (ExternalMetricTarget("AverageValue", self.target_average_value),)
        return self.metrics

    @property
    def tolerances(self) -> Tolerances:
        """``tolerancesForHpa``: the behavior's per-direction tolerance where set, else the controller's."""
        t = Tolerances(self.default_tolerance, self.default_tolerance)
        if self.behavior is None:
            return t
        if self.behavior.scale_down.tolerance is not None:
            t = replace(t, scale_down=self.behavior.scale_down.tolerance)
        if self.behavior.scale_up.tolerance is not None:
            t = replace(t, scale_up=self.behavior.scale_up.tolerance)
        return t


@dataclass(frozen=True)
class HPAState:
    """What the controller remembers per HPA: last sync, recent proposals and recent scale events.

    ``recommendations`` None: the controller has no entry for this HPA yet (first sight, or a controller
    restart), so the next sync seeds it with the current count; ``()`` is an entry with nothing in it.
    """

    last_sync_s: float | None = None
    recommendations: Recommendations | None = None
    scale_up_events: ScaleEvents = ()
    scale_down_events: ScaleEvents = ()


# --- replica_calculator.go -----------------------------------------------------------------------------


def milli_value(value: float) -> int:
    """A Quantity's ``MilliValue()``: rounded up to whole milli-units (float noise below 1e-6 m ignored)."""
    return math.ceil(value * 1000.0 - 1e-6)


def _int32_replicas(count: float) -> int:
    # Upstream saturates at MaxInt32 rather than overflowing.
    return MAX_INT32 if count > MAX_INT32 else int(count)


def get_external_per_pod_metric_replicas(
    status_replicas: int, usage_milli: int, target_per_pod_milli: int, tolerances: Tolerances
) -> int:
    """``GetExternalPerPodMetricReplicas``: the proposal for an ``AverageValue`` target.

    ``usage / (target · status replicas)`` inside the band keeps ``status_replicas`` (0 replicas: the ratio is
    infinite, or NaN for no usage, so never inside), else ``ceil(usage / target)``.
    """
    denominator = float(target_per_pod_milli) * float(status_replicas)
    if denominator == 0.0:
        ratio = math.nan if usage_milli == 0 else math.copysign(math.inf, usage_milli)
    else:
        ratio = usage_milli / denominator
    if tolerances.is_within(ratio):
        return status_replicas
    return _int32_replicas(math.ceil(usage_milli / target_per_pod_milli))


def get_external_metric_replicas(
    current_replicas: int, usage_milli: int, target_milli: int, tolerances: Tolerances, *, ready_pods: int,
    pods: int,
) -> int | None:
    """``GetExternalMetricReplicas`` with ``getUsageRatioReplicaCount``: the proposal for a ``Value`` target.

    From ``current_replicas`` (the scale's spec) > 0: ``usage / target`` inside the band keeps it, else
    ``ceil(ratio · ready_pods)`` — pods Running and Ready only; ``pods`` is how many the selector lists and
    none is an error (None). From 0 replicas: ``ceil(ratio)``, no tolerance.
    """
    ratio = usage_milli / target_milli
    if current_replicas == 0:
        return _int32_replicas(math.ceil(ratio))
    if tolerances.is_within(ratio):
        return current_replicas
    if pods <= 0:
        return None  # "no pods returned by selector while calculating replica count"
    return _int32_replicas(math.ceil(ratio * ready_pods))


# --- horizontal.go: metrics ------------------------------------------------------------------------------


def compute_replicas_for_metrics(proposals: Sequence[int | None], *, spec_replicas: int) -> int | None:
    """``computeReplicasForMetrics``: the largest valid proposal (None marks a metric that failed).

    None when no metric is valid, or when one failed and the valid ones would scale below ``spec_replicas``
    (a missing metric must not cause a scale-down; it does not block a scale-up).
    """
    valid = [p for p in proposals if p is not None]
    if not valid:
        return None
    replicas = max(valid)
    if len(valid) < len(proposals) and replicas < spec_replicas:
        return None
    return replicas


# --- horizontal.go: legacy path (behavior nil) ----------------------------------------------------------


def stabilize_recommendation(
    recommendations: Recommendations, desired: int, *, window_s: float, now_s: float
) -> tuple[int, Recommendations]:
    """``stabilizeRecommendation``: the maximum of ``desired`` and the recommendations not older than the
    window (its edge included), in both directions; records ``desired`` in the last slot older than the
    window, else appends it."""
    cutoff = now_s - window_s
    best = desired
    old = -1
    for i, (t, rec) in enumerate(recommendations):
        if t < cutoff:
            old = i
        elif rec > best:
            best = rec
    return best, _record(recommendations, old, (now_s, desired))


def calculate_scale_up_limit(current_replicas: int) -> int:
    """``calculateScaleUpLimit``: max(2 × current, 4)."""
    return int(max(SCALE_UP_LIMIT_FACTOR * current_replicas, SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(
    current_replicas: int, desired: int, min_replicas: int, max_replicas: int
) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules``: clamp to [min, min(max, scale-up limit)]; returns the count and the
    ``ScalingLimited`` reason."""
    limit = calculate_scale_up_limit(current_replicas)
    if max_replicas > limit:
        maximum, reason = limit, "ScaleUpLimit"
    else:
        maximum, reason = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum:
        return maximum, reason
    return desired, "DesiredWithinRange"


# --- horizontal.go: behaviors ---------------------------------------------------------------------------


def stabilize_recommendation_with_behaviors(
    recommendations: Recommendations, *, current: int, desired: int, up_window_s: float, down_window_s: float,
    now_s: float,
) -> tuple[int, str, Recommendations]:
    """``stabilizeRecommendationWithBehaviors``: start from ``current`` and clamp it into [min of ``desired``
    and the recommendations newer than the scale-up window, max of ``desired`` and those newer than the
    scale-down window]. Records ``desired`` in the last slot older than both windows, else appends it.
    Returns the count, the reason (``ScaleUpStabilized`` / ``ScaleDownStabilized``) and the new list."""
    up_cutoff, down_cutoff = now_s - up_window_s, now_s - down_window_s
    up, down = desired, desired
    old = -1
    for i, (t, rec) in enumerate(recommendations):
        if t > up_cutoff:
            up = min(rec, up)
        if t > down_cutoff:
            down = max(rec, down)
        if t < up_cutoff and t < down_cutoff:
            old = i
    recommendation = current
    if recommendation < up:
        recommendation = up
    if recommendation > down:
        recommendation = down
    reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
    return recommendation, reason, _record(recommendations, old, (now_s, desired))


def get_replicas_change_per_period(period_s: float, events: ScaleEvents, *, now_s: float) -> int:
    """``getReplicasChangePerPeriod``: the changes of the events strictly newer than ``now − period``."""
    cutoff = now_s - period_s
    return sum(change for t, change in events if t > cutoff)


def _period_start(current: int, up_events: ScaleEvents, down_events: ScaleEvents, period_s: float,
                  now_s: float) -> int:
    added = get_replicas_change_per_period(period_s, up_events, now_s=now_s)
    deleted = get_replicas_change_per_period(period_s, down_events, now_s=now_s)
    return current - added + deleted


def calculate_scale_up_limit_with_scaling_rules(
    current_replicas: int, up_events: ScaleEvents, down_events: ScaleEvents, rules: HPAScalingRules, *,
    now_s: float,
) -> int:
    """``calculateScaleUpLimitWithScalingRules``: per policy, from the replicas at the start of its period,
    Pods ``+value`` or Percent ``ceil(start · (1 + value/100))``; Max picks the largest, Min the smallest;
    Disabled allows nothing (returns current)."""
    if rules.select_policy == "Disabled":
        return current_replicas
    pick, result = (min, MAX_INT32) if rules.select_policy == "Min" else (max, MIN_INT32)
    for policy in rules.policies:
        start = _period_start(current_replicas, up_events, down_events, policy.period_s, now_s)
        if policy.type == "Pods":
            proposed = start + policy.value
        else:  # rounded up so that a small deployment can still grow
            proposed = math.ceil(float(start) * (1.0 + policy.value / 100.0))
        result = pick(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(
    current_replicas: int, up_events: ScaleEvents, down_events: ScaleEvents, rules: HPAScalingRules, *,
    now_s: float,
) -> int:
    """``calculateScaleDownLimitWithBehaviors``: per policy, Pods ``start − value`` or Percent
    ``int(start · (1 − value/100))``; Max picks the lowest limit, Min the highest; Disabled returns current."""
    if rules.select_policy == "Disabled":
        return current_replicas
    pick, result = (max, MIN_INT32) if rules.select_policy == "Min" else (min, MAX_INT32)
    for policy in rules.policies:
        start = _period_start(current_replicas, up_events, down_events, policy.period_s, now_s)
        # int() truncates toward zero, as Go's conversion.
        proposed = start - policy.value if policy.type == "Pods" else int(float(start) * (1.0 - policy.value / 100.0))
        result = pick(result, proposed)
    return result


def convert_desired_replicas_with_behavior_rate(
    *, current: int, desired: int, min_replicas: int, max_replicas: int, scale_up: HPAScalingRules,
    scale_down: HPAScalingRules, up_events: ScaleEvents, down_events: ScaleEvents, now_s: float,
) -> tuple[int, str]:
    """``convertDesiredReplicasWithBehaviorRate``: the rate limits (never past current against the move) and
    min/max; returns the count and the ``ScalingLimited`` reason."""
    if desired > current:
        limit = max(calculate_scale_up_limit_with_scaling_rules(current, up_events, down_events, scale_up,
                                                                now_s=now_s), current)
        if max_replicas > limit:
            maximum, reason = limit, "ScaleUpLimit"
        else:
            maximum, reason = max_replicas, "TooManyReplicas"
        if desired > maximum:
            return maximum, reason
    elif desired < current:
        limit = min(calculate_scale_down_limit_with_behaviors(current, up_events, down_events, scale_down,
                                                              now_s=now_s), current)
        if min_replicas < limit:
            minimum, reason = limit, "ScaleDownLimit"
        else:
            minimum, reason = min_replicas, "TooFewReplicas"
        if desired < minimum:
            return minimum, reason
    return desired, "DesiredWithinRange"


def store_scale_event(events: ScaleEvents, change: int, *, longest_period_s: float, now_s: float) -> ScaleEvents:
    """``storeScaleEvent`` for one direction: events older than the direction's longest policy period are
    outdated (``markScaleEventsOutdated``) and the new event takes the last outdated slot, else is appended.

    Upstream keeps an ``outdated`` flag; recomputing it from the period gives the same slots as long as the
    behavior does not change between syncs.
    """
    cutoff = now_s - longest_period_s
    old = -1
    for i, (t, _) in enumerate(events):
        if t < cutoff:
            old = i
    return _record(events, old, (now_s, change))


def _record(entries: ScaleEvents, slot: int, entry: tuple[float, int]) -> ScaleEvents:
    if slot >= 0:
        return (*entries[:slot], entry, *entries[slot + 1:])
    return (*entries, entry)


# --- the controller ---------------------------------------------------------------------------------------


def _proposals(
    spec: HPASpec, values: Sequence[float | None], *, current: int, status_replicas: int, ready_pods: int
) -> list[int | None]:
    tolerances = spec.tolerances
    out: list[int | None] = []
    for target, value in zip(spec.metric_targets, values, strict=True):
        if value is None or not math.isfinite(value):
            out.append(None)  # FailedGetExternalMetric
            continue
        usage_m, target_m = milli_value(value), milli_value(target.value)
        if target.type == "AverageValue":
            out.append(get_external_per_pod_metric_replicas(status_replicas, usage_m, target_m, tolerances))
        else:
            out.append(get_external_metric_replicas(current, usage_m, target_m, tolerances, ready_pods=ready_pods,
                                                    pods=status_replicas))
    return out


def hpa_step(
    spec: HPASpec, state: HPAState, *, now_s: float, current_replicas: int, metric_value: float | None = None,
    metric_values: Sequence[float | None] | None = None, status_replicas: int | None = None,
    ready_pods: int | None = None,
) -> tuple[int, HPAState]:
    """One call of the HPA controller at ``now_s``: the replicas it sets and its new memory.

    Between sync periods the call is a no-op (returns ``current_replicas``). ``current_replicas`` is the scale's
    ``spec.replicas``; ``status_replicas`` the pods that exist (default: the same) and ``ready_pods`` those
    Running and Ready (default: all of them). ``metric_value`` is the value of the one metric, or
    ``metric_values`` one per ``spec.metric_targets``; None (or NaN) means that metric could not be read.
    """
    if state.last_sync_s is not None and now_s - state.last_sync_s < spec.sync_period_s - 1e-9:
        return current_replicas, state
    targets = spec.metric_targets
    if metric_values is None:
        if len(targets) != 1:
            raise InvalidInputError("hpa_step.metric_values", f"the HPA has {len(targets)} metrics: one value each")
        values: Sequence[float | None] = (metric_value,)
    else:
        if metric_value is not None:
            raise InvalidInputError("hpa_step.metric_value", "pass metric_value or metric_values, not both")
        values = metric_values
        if len(values) != len(targets):
            raise InvalidInputError("hpa_step.metric_values", f"need {len(targets)} values, got {len(values)}")
    current = current_replicas
    status = current if status_replicas is None else status_replicas
    ready = status if ready_pods is None else ready_pods
    state = replace(state, last_sync_s=now_s)
    if state.recommendations is None:  # recordInitialRecommendation
        state = replace(state, recommendations=((now_s, current),))
    recommendations = state.recommendations or ()

    if current == 0 and spec.min_replicas != 0:
        return current, state  # ScalingDisabled: the Deployment was scaled to zero by hand
    if current > spec.max_replicas:
        desired = spec.max_replicas
    elif current < spec.min_replicas:
        desired = spec.min_replicas
    else:
        proposal = compute_replicas_for_metrics(
            _proposals(spec, values, current=current, status_replicas=status, ready_pods=ready), spec_replicas=current
        )
        if proposal is None:
            return current, state  # FailedComputeMetricsReplicas: no rescale, nothing recorded
        behavior = spec.behavior
        if behavior is None:  # normalizeDesiredReplicas
            stabilized, recommendations = stabilize_recommendation(
                recommendations, proposal, window_s=spec.downscale_stabilization_s, now_s=now_s
            )
            desired, _ = convert_desired_replicas_with_rules(current, stabilized, spec.min_replicas, spec.max_replicas)
        else:  # normalizeDesiredReplicasWithBehaviors
            down_window_s = behavior.scale_down.stabilization_window_s
            stabilized, _, recommendations = stabilize_recommendation_with_behaviors(
                recommendations, current=current, desired=proposal,
                up_window_s=behavior.scale_up.stabilization_window_s or 0.0,
                down_window_s=spec.downscale_stabilization_s if down_window_s is None else down_window_s,
                now_s=now_s,
            )
            desired, _ = convert_desired_replicas_with_behavior_rate(
                current=current, desired=stabilized, min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
                scale_up=behavior.scale_up, scale_down=behavior.scale_down, up_events=state.scale_up_events,
                down_events=state.scale_down_events, now_s=now_s,
            )
        state = replace(state, recommendations=recommendations)
    if desired != current and spec.behavior is not None:  # storeScaleEvent (none without a behavior)
        if desired > current:
            state = replace(state, scale_up_events=store_scale_event(
                state.scale_up_events, desired - current, longest_period_s=spec.behavior.scale_up.longest_period_s,
                now_s=now_s))
        else:
            state = replace(state, scale_down_events=store_scale_event(
                state.scale_down_events, current - desired,
                longest_period_s=spec.behavior.scale_down.longest_period_s, now_s=now_s))
    return desired, state


def desired_from_external_average(
    current_replicas: int, metric_value: float, target_average_value: float, tolerance: float | tuple[float, float]
) -> int:
    """The ``AverageValue`` proposal in plain units; ``tolerance`` is one number or ``(scale_up, scale_down)``.
    ``current_replicas`` stands for the status replicas (``GetExternalPerPodMetricReplicas``)."""
    tol_up, tol_down = (tolerance, tolerance) if isinstance(tolerance, int | float) else tolerance
    return get_external_per_pod_metric_replicas(
        current_replicas, milli_value(metric_value), milli_value(target_average_value),
        Tolerances(scale_down=tol_down, scale_up=tol_up),
    )

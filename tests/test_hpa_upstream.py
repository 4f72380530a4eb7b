"""The HPA emulator against the Kubernetes controller's own tests, case for case.

Every case is transcribed from ``pkg/controller/podautoscaler`` of kubernetes/kubernetes (master after v1.35,
read from the fork snapshots ``omerap12/kubernetes@060da168`` for ``horizontal_test.go`` and ``@a769d588`` for
``replica_calculator_test.go``); its id is ``<upstream test function>:<upstream case name>``. Where an upstream
test drives a CPU metric through the whole controller, the case uses an External metric that proposes the same
count (the path under test does not depend on the metric type); that is said next to the case. Times are
relative to ``now_s = 0``; the upstream tests' ``time.Now().Add(-d)`` is ``-d``.
"""

from __future__ import annotations

import pytest
from faro.optimizer.sim.hpa import (
    ExternalMetricTarget,
    HPABehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    HPASpec,
    HPAState,
    Tolerances,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit,
    calculate_scale_up_limit_with_scaling_rules,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    default_scale_down,
    default_scale_up,
    get_external_metric_replicas,
    get_external_per_pod_metric_replicas,
    get_replicas_change_per_period,
    hpa_step,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
)

MAX_INT64 = 2**63 - 1
MAX_INT32 = 2**31 - 1
DEFAULT = Tolerances(0.1, 0.1)  # defaultTestingTolerance
MINUTE = 60.0


def generate_scaling_rules(pods: int, pods_period: int, percent: int, percent_period: int,
                           stabilization_window: int) -> HPAScalingRules:
    """``generateScalingRules``: a Pods and/or a Percent policy, selectPolicy Max."""
    policies = []
    if pods:
        policies.append(HPAScalingPolicy("Pods", pods, float(pods_period)))
    if percent:
        policies.append(HPAScalingPolicy("Percent", percent, float(percent_period)))
    return HPAScalingRules(stabilization_window_s=float(stabilization_window), policies=tuple(policies),
                           select_policy="Max")


def generate_events_uniform_distribution(raw: list[int], period_s: int) -> tuple[tuple[float, int], ...]:
    """``generateEventsUniformDistribution``: each event in the middle of its segment of the last ``period_s``
    (the segment boundary is truncated to whole seconds, as its ``time.Duration(float)`` conversion)."""
    segment = period_s / len(raw)
    return tuple((-float(int(period_s - segment * (i + 1) + segment / 2)), change) for i, change in enumerate(raw))


# --- replica_calculator_test.go ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_replicas", "usage", "target", "tolerances", "expected"),
    [
        pytest.param(1, MAX_INT64, 1, DEFAULT, MAX_INT32,
                     id="TestReplicaCalcExternalPerPodMetric:replica count overflow saturates to MaxInt32"),
        pytest.param(1, MAX_INT64, MAX_INT64, DEFAULT, 1,
                     id="TestReplicaCalcExternalPerPodMetric:usage overflow with huge target leaves replicas "
                        "unchanged"),
        pytest.param(0, 20000, 5000, DEFAULT, 4,
                     id="TestReplicaCalcExternalPerPodMetric:statusReplicas zero does not overflow usage"),
        pytest.param(0, 0, 5000, DEFAULT, 0,
                     id="TestReplicaCalcExternalPerPodMetric:statusReplicas zero and metric zero does not underflow"),
        pytest.param(3, 8600, 2150, DEFAULT, 4, id="TestReplicaCalcExternalPerPodMetric:scale up"),
        pytest.param(5, 8600, 2867, DEFAULT, 3, id="TestReplicaCalcExternalPerPodMetric:scale down"),
        pytest.param(3, 8600, 2900, DEFAULT, 3, id="TestReplicaCalcExternalPerPodMetric:within default tolerance"),
        pytest.param(3, 8600, 2800, Tolerances(0.1, 0.01), 4,
                     id="TestReplicaCalcExternalPerPodMetric:outside configurable 1% tolerance"),
    ],
)
def test_external_per_pod_metric_replicas(status_replicas, usage, target, tolerances, expected):
    assert get_external_per_pod_metric_replicas(status_replicas, usage, target, tolerances) == expected


@pytest.mark.parametrize(
    ("current", "ready", "usage", "target", "tolerances", "expected"),
    [
        # Pods 0 and 2 unready: ceil(8600/4400 × 1 ready pod) = 2, not 6.
        pytest.param(3, 1, 8600, 4400, DEFAULT, 2,
                     id="TestReplicaCalcExternalMetric:scale down: ignores unready pods (would otherwise scale up)"),
        pytest.param(5, 5, 8600, 14334, DEFAULT, 3, id="TestReplicaCalcExternalMetric:scale down"),
        pytest.param(3, 3, 8600, 8888, DEFAULT, 3, id="TestReplicaCalcExternalMetric:within default tolerance"),
        pytest.param(3, 3, 8900, 8800, Tolerances(0.1, 0.01), 4,
                     id="TestReplicaCalcExternalMetric:outside configurable 1% tolerance"),
        # Upstream caps the summed usage at MaxInt64; the ratio to a MaxInt64 target is then 1.
        pytest.param(3, 3, MAX_INT64, MAX_INT64, DEFAULT, 3,
                     id="TestReplicaCalcExternalMetric:usage overflow caps at MaxInt64"),
    ],
)
def test_external_metric_replicas(current, ready, usage, target, tolerances, expected):
    assert get_external_metric_replicas(current, usage, target, tolerances, ready_pods=ready, pods=current) == expected


def test_external_metric_replicas_without_pods_is_an_error():
    # getReadyPodsCount: "no pods returned by selector while calculating replica count".
    assert get_external_metric_replicas(3, 8600, 4400, DEFAULT, ready_pods=0, pods=0) is None
    # Inside the band the pods are never listed, so there is no error.
    assert get_external_metric_replicas(3, 8600, 8888, DEFAULT, ready_pods=0, pods=0) == 3


def test_external_metric_replicas_from_zero_ignore_tolerance_and_pods():
    # getUsageRatioReplicaCount with currentReplicas 0: ceil(usageRatio).
    assert get_external_metric_replicas(0, 1050, 1000, DEFAULT, ready_pods=0, pods=0) == 2


# --- horizontal_test.go: the controller with External metrics (reconcileAutoscaler) -------------------------


def _sync(*, min_r: int, max_r: int, current: int, metrics: tuple[ExternalMetricTarget, ...],
          values: tuple[float | None, ...], recommendations=None, ready: int | None = None,
          behavior: HPABehavior | None = None) -> int:
    """One reconcile. Upstream's ``testCase`` without scale rules has ``behavior: nil``; ``recommendations``
    None is a controller that has not seen the HPA (seeded), ``()`` an empty entry."""
    spec = HPASpec(min_replicas=min_r, max_replicas=max_r, behavior=behavior, metrics=metrics)
    replicas, _ = hpa_step(spec, HPAState(recommendations=recommendations), now_s=0.0, current_replicas=current,
                           metric_values=values, ready_pods=ready)
    return replicas


def value(v: float) -> ExternalMetricTarget:
    return ExternalMetricTarget("Value", v)


def average(v: float) -> ExternalMetricTarget:
    return ExternalMetricTarget("AverageValue", v)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(dict(min_r=2, max_r=6, current=3, metrics=(value(6.666),), values=(8.6,)), 4,
                     id="TestScaleUpCMExternal"),
        pytest.param(dict(min_r=2, max_r=6, current=3, metrics=(average(2.222),), values=(8.6,)), 4,
                     id="TestScaleUpPerPodCMExternal"),
        pytest.param(dict(min_r=2, max_r=6, current=5, metrics=(value(14.4),), values=(8.6,), recommendations=()),
                     3, id="TestScaleDownCMExternal"),
        pytest.param(dict(min_r=0, max_r=6, current=5, metrics=(value(14.4),), values=(0.0,), recommendations=()),
                     0, id="TestScaleDownToZeroCMExternal"),
        pytest.param(dict(min_r=2, max_r=6, current=5, metrics=(average(3.0),), values=(8.6,), recommendations=()),
                     3, id="TestScaleDownPerPodCMExternal"),
        pytest.param(dict(min_r=2, max_r=6, current=4, metrics=(value(8.666),), values=(8.6,)), 4,
                     id="TestToleranceCMExternal"),
        pytest.param(dict(min_r=2, max_r=6, current=4, metrics=(average(2.2),), values=(8.6,)), 4,
                     id="TestTolerancePerPodCMExternal"),
        # The checks before any metric is read (the upstream tests use a CPU metric here).
        pytest.param(dict(min_r=3, max_r=5, current=0, metrics=(average(1.0),), values=(4.0,)), 0,
                     id="TestZeroReplicas"),
        pytest.param(dict(min_r=3, max_r=5, current=2, metrics=(average(1.0),), values=(None,)), 3,
                     id="TestTooFewReplicas"),
        pytest.param(dict(min_r=3, max_r=5, current=10, metrics=(average(1.0),), values=(None,)), 5,
                     id="TestTooManyReplicas"),
        # First sight: the controller seeds its recommendations with the current 5 and the legacy path takes the
        # maximum, so the metric's 3 waits (upstream: CPU proposing 3).
        pytest.param(dict(min_r=2, max_r=6, current=5, metrics=(average(1.0),), values=(3.0,)), 5,
                     id="TestScaleDownStabilizeInitialSize"),
        # One metric failing does not block a scale-up (upstream: CPU proposing 4 plus a failing External metric).
        pytest.param(dict(min_r=2, max_r=6, current=3, metrics=(average(1.0), value(0.1)), values=(4.0, None)), 4,
                     id="TestScaleUpOneMetricEmpty"),
        pytest.param(dict(min_r=2, max_r=6, current=3, metrics=(average(1.0), value(0.1)), values=(4.0, None)), 4,
                     id="TestScaleUpOneMetricInvalid"),
        # ... but blocks a scale-down (upstream: CPU proposing 3 plus a failing External metric).
        pytest.param(dict(min_r=2, max_r=6, current=5, metrics=(average(1.0), value(1.0)), values=(3.0, None),
                          recommendations=()), 5, id="TestNoScaleDownOneMetricEmpty"),
        pytest.param(dict(min_r=2, max_r=6, current=3, metrics=(average(1.0),), values=(None,)), 3,
                     id="TestScaleUpBothMetricsEmpty"),
        # GetExternalMetricReplicas through the controller: 2 of 3 pods unready.
        pytest.param(dict(min_r=1, max_r=6, current=3, metrics=(value(4.4),), values=(8.6,), ready=1,
                          recommendations=()), 2,
                     id="TestReplicaCalcExternalMetric:scale down: ignores unready pods (would otherwise scale up)"),
    ],
)
def test_controller_with_external_metrics(kwargs, expected):
    assert _sync(**kwargs) == expected


# --- horizontal_test.go: normalization ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recommendations", "desired", "expected", "log_length"),
    [
        pytest.param((), 5, 5, 1, id="TestNormalizeDesiredReplicas:empty log"),
        pytest.param(((-2 * MINUTE, 4), (-1 * MINUTE, 5)), 3, 5, 3, id="TestNormalizeDesiredReplicas:stabilize"),
        pytest.param(((-2 * MINUTE, 1), (-1 * MINUTE, 2)), 3, 3, 3, id="TestNormalizeDesiredReplicas:no stabilize"),
        pytest.param(((-10 * MINUTE, 10), (-9 * MINUTE, 9)), 3, 3, 2,
                     id="TestNormalizeDesiredReplicas:no stabilize - old recommendations"),
        pytest.param(((-10 * MINUTE, 10), (-1 * MINUTE, 4), (-2 * MINUTE, 5), (-9 * MINUTE, 9)), 3, 5, 4,
                     id="TestNormalizeDesiredReplicas:stabilize - old recommendations"),
    ],
)
def test_stabilize_recommendation_legacy(recommendations, desired, expected, log_length):
    got, log = stabilize_recommendation(recommendations, desired, window_s=5 * MINUTE, now_s=0.0)
    assert got == expected
    assert len(log) == log_length


@pytest.mark.parametrize(
    ("recommendations", "current", "desired", "up_window_s", "down_window_s", "expected", "expected_log"),
    [
        pytest.param((), 100, 5, 0, 0, 5, [5],
                     id="TestNormalizeDesiredReplicasWithBehavior:empty recommendations for scaling down"),
        pytest.param(((-2 * MINUTE, 4), (-1 * MINUTE, 5)), 100, 3, 0, 3 * MINUTE, 5, [4, 5, 3],
                     id="TestNormalizeDesiredReplicasWithBehavior:simple scale down stabilization"),
        pytest.param(((-2 * MINUTE, 4), (-1 * MINUTE, 5)), 1, 7, 5 * MINUTE, 0, 4, [4, 5, 7],
                     id="TestNormalizeDesiredReplicasWithBehavior:simple scale up stabilization"),
        pytest.param(((-2 * MINUTE, 1), (-1 * MINUTE, 2)), 100, 3, 5 * MINUTE, 0, 3, [1, 2, 3],
                     id="TestNormalizeDesiredReplicasWithBehavior:no scale down stabilization"),
        pytest.param(((-2 * MINUTE, 4), (-1 * MINUTE, 5)), 1, 3, 0, 5 * MINUTE, 3, [4, 5, 3],
                     id="TestNormalizeDesiredReplicasWithBehavior:no scale up stabilization"),
        pytest.param(((-10 * MINUTE, 10), (-9 * MINUTE, 9)), 100, 3, 0, 0, 3, [10, 3],
                     id="TestNormalizeDesiredReplicasWithBehavior:no scale down stabilization, reuse recommendation "
                        "element"),
        pytest.param(((-10 * MINUTE, 10), (-9 * MINUTE, 9)), 1, 100, 0, 0, 100, [10, 100],
                     id="TestNormalizeDesiredReplicasWithBehavior:no scale up stabilization, reuse recommendation "
                        "element"),
        pytest.param(((-10 * MINUTE, 10), (-1 * MINUTE, 4), (-2 * MINUTE, 5), (-9 * MINUTE, 9)), 100, 3, 0,
                     3 * MINUTE, 5, [10, 4, 5, 3],
                     id="TestNormalizeDesiredReplicasWithBehavior:scale down stabilization, reuse one of obsolete "
                        "recommendation element"),
        pytest.param(((-100 * MINUTE, 10), (-1 * MINUTE, 6), (-2 * MINUTE, 5), (-3 * MINUTE, 9)), 1, 100, 300, 0, 5,
                     [100, 6, 5, 9],
                     id="TestNormalizeDesiredReplicasWithBehavior:scale up stabilization, reuse one of obsolete "
                        "recommendation element"),
        # kubernetes#96671 / PR #97348: stabilization starts from the current count and never moves past it
        # against the proposal. One-directional stabilization gives 3 and 1 here.
        pytest.param(((-100 * MINUTE, 2), (-3 * MINUTE, 3)), 2, 1, 300, 300, 2, None,
                     id="TestNormalizeDesiredReplicasWithBehavior:scale up and down stabilization, do not scale up "
                        "when prenormalized rec goes down"),
        pytest.param(((-100 * MINUTE, 2), (-3 * MINUTE, 1)), 2, 3, 300, 300, 2, None,
                     id="TestNormalizeDesiredReplicasWithBehavior:scale up and down stabilization, do not scale down "
                        "when prenormalized rec goes up"),
    ],
)
def test_stabilize_recommendation_with_behaviors(recommendations, current, desired, up_window_s, down_window_s,
                                                 expected, expected_log):
    got, _, log = stabilize_recommendation_with_behaviors(
        recommendations, current=current, desired=desired, up_window_s=float(up_window_s),
        down_window_s=float(down_window_s), now_s=0.0,
    )
    assert got == expected
    if expected_log is not None:
        assert [rec for _, rec in log] == expected_log


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "expected", "condition"),
    [
        pytest.param(5, 7, 3, 8, 7, "DesiredWithinRange",
                     id="TestConvertDesiredReplicasWithRules:prenormalized desired replicas within range"),
        pytest.param(3, 1, 2, 8, 2, "TooFewReplicas",
                     id="TestConvertDesiredReplicasWithRules:prenormalized desired replicas < minReplicas"),
        pytest.param(1, 0, 0, 10, 0, "DesiredWithinRange",
                     id="TestConvertDesiredReplicasWithRules:prenormalized desired zeroed replicas within range"),
        pytest.param(20, 1000, 1, 10, 10, "TooManyReplicas",
                     id="TestConvertDesiredReplicasWithRules:maxReplicas is the limit because maxReplicas < "
                        "scaleUpLimit"),
        pytest.param(3, 1000, 1, 2000, calculate_scale_up_limit(3), "ScaleUpLimit",
                     id="TestConvertDesiredReplicasWithRules:scaleUpLimit is the limit because scaleUpLimit < "
                        "maxReplicas"),
    ],
)
def test_convert_desired_replicas_with_rules(current, desired, min_r, max_r, expected, condition):
    assert convert_desired_replicas_with_rules(current, desired, min_r, max_r) == (expected, condition)


def test_calculate_scale_up_limit_is_twice_current_at_least_four():
    # calculateScaleUpLimit with the production scaleUpLimitFactor 2 (the upstream tests raise it to 8).
    assert [calculate_scale_up_limit(c) for c in (0, 1, 2, 3, 10)] == [4, 4, 4, 6, 20]


R = generate_scaling_rules
E = generate_events_uniform_distribution

SCALING_WITH_RULES = [
    # (name, current, desired, min, max, scale_up, scale_down, up_events, down_events, expected, condition)
    ("prenormalized desired replicas within range", 5, 7, 3, 8, None, None, (), (), 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, None, None, (), (), 2, "TooFewReplicas"),
    ("prenormalized desired replicas within range when minReplicas is 0", 1, 0, 0, 10, None, None, (), (), 0,
     "DesiredWithinRange"),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, None, None, (), (), 10,
     "TooManyReplicas"),
    ("desired replica count is more than the maximum replica count", 100, 1000, 100, 150, None, None, (), (), 150,
     "TooManyReplicas"),
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", 3, 1000, 1, 2000,
     R(0, 0, 1, 60, 0), None, (), (), 4, "ScaleUpLimit"),
    ("scaleUp with default behavior", 10, 50, 1, 1000, None, None, (), (), 20, "ScaleUpLimit"),
    ("scaleUp with pods policy larger than percent policy", 10, 500, 1, 1000, R(100, 60, 100, 60, 0), None, (), (),
     110, "ScaleUpLimit"),
    ("scaleUp with percent policy larger than pods policy", 10, 500, 1, 1000, R(2, 60, 100, 60, 0), None, (), (),
     20, "ScaleUpLimit"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", 10, 50, 1, 1000, R(100, 60, 0, 0, 0), None,
     (), (), 50, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy", 10, 50, 1, 1000, R(10000, 60, 0, 0, 0),
     None, (), (), 50, "DesiredWithinRange"),
    ("scaleUp with pod policy limitation", 10, 50, 1, 1000, R(30, 60, 0, 0, 0), None, (), (), 40, "ScaleUpLimit"),
    ("scaleUp with percent policy limitation", 10, 50, 1, 1000, R(0, 0, 200, 60, 0), None, (), (), 30,
     "ScaleUpLimit"),
    ("scaleDown with percent policy larger than pod policy", 100, 2, 1, 1000, None, R(20, 60, 1, 60, 300), (), (),
     80, "ScaleDownLimit"),
    ("scaleDown with pod policy larger than percent policy", 100, 2, 1, 1000, None, R(2, 60, 1, 60, 300), (), (),
     98, "ScaleDownLimit"),
    ("scaleDown with spec MinReplicas limitation with large pod policy", 10, 0, 1, 1000, None,
     R(100, 60, 0, 0, 300), (), (), 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy", 10, 2, 5, 1000, None,
     R(0, 0, 100, 60, 300), (), (), 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation", 10, 2, 1, 1000, None, R(5, 60, 0, 0, 300), (), (), 5,
     "ScaleDownLimit"),
    ("scaleDown with percent policy limitation", 10, 5, 1, 1000, None, R(0, 0, 50, 60, 300), (), (), 5,
     "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", 100, 500, 1, 200,
     R(300, 60, 0, 0, 0), None, E([1, 5, 9], 120), (), 200, "TooManyReplicas"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events", 100, 500, 1, 200,
     R(0, 0, 10000, 60, 0), None, E([1, 5, 9], 120), (), 200, "TooManyReplicas"),
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", 100,
     500, 1, 1000, R(5, 120, 0, 0, 0), None, E([1, 5, 9], 120), (), 100, "ScaleUpLimit"),
    ("scaleUp with pod policy and previous scale up events", 100, 500, 1, 1000, R(150, 120, 0, 0, 0), None,
     E([1, 5, 9], 120), (), 235, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up events", 100, 500, 1, 1000, R(0, 0, 200, 120, 0), None,
     E([1, 5, 9], 120), (), 255, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up and down events", 6, 24, 1, 1000, R(0, 0, 300, 300, 0),
     None, E([4], 120), E([2], 120), 16, "ScaleUpLimit"),
    ("scaleDown with default policy and previous events", 10, 5, 1, 1000, None, None, (), E([1, 5, 9], 120), 5,
     "DesiredWithinRange"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", 100, 0, 1, 1000,
     None, R(115, 120, 0, 0, 300), (), E([1, 5, 9], 120), 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", 100, 0, 5, 1000, None,
     R(130, 120, 0, 0, 300), (), E([1, 5, 9], 120), 5, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", 100, 2, 5, 1000,
     None, R(0, 0, 100, 120, 300), (), E([1, 5, 9], 120), 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation and previous events", 100, 2, 1, 1000, None, R(5, 120, 0, 0, 300), (),
     E([1, 5, 9], 120), 100, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation and previous events", 100, 0, 1, 1000, None, R(0, 0, 50, 120, 300),
     (), E([2, 4, 6], 120), 56, "ScaleDownLimit"),
    ("scaleDown with percent policy and previous scale up and down events", 10, 1, 1, 1000, None,
     R(0, 0, 50, 180, 0), E([2], 120), E([4], 120), 6, "ScaleDownLimit"),
    ("scaleDown with previous events preventing further scale down", 100, 0, 1, 1000, None, R(0, 0, 10, 120, 300),
     (), E([10, 10, 10], 120), 100, "ScaleDownLimit"),
    ("scaleDown with with previous events still allowing more scale down", 10, 5, 1, 1000, None,
     R(0, 0, 1000, 120, 300), (), E([10, 10, 10], 120), 5, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for up", 100, 200, 1, 1000, R(1000, 60, 0, 0, 0), None,
     E([8, 12, 9, 11], 120), (), 200, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up", 100, 200, 1,
     1000, R(1000, 120, 100, 60, 0), None, E([8, 12, 9, 11], 120), (), 200, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for up", 100, 200, 1,
     1000, R(1000, 30, 100, 60, 0), None, E([8, 12, 9, 11], 120), (), 200, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for down", 100, 5, 1, 1000, None, R(1000, 60, 0, 0, 300),
     (), E([8, 12, 9, 11], 120), 5, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for down", 100, 5, 1,
     1000, None, R(1000, 120, 100, 60, 300), (), E([8, 12, 9, 11], 120), 5, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for down", 100, 5, 1,
     1000, None, R(1000, 30, 100, 60, 300), (), E([8, 12, 9, 11], 120), 5, "DesiredWithinRange"),
]


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "scale_up", "scale_down", "up_events", "down_events", "expected",
     "condition"),
    [pytest.param(*case[1:], id=f"TestScalingWithRules:{case[0]}") for case in SCALING_WITH_RULES],
)
def test_convert_desired_replicas_with_behavior_rate(current, desired, min_r, max_r, scale_up, scale_down, up_events,
                                                     down_events, expected, condition):
    # GenerateHPAScaleUpRules / GenerateHPAScaleDownRules: a nil direction gets the API defaults.
    got = convert_desired_replicas_with_behavior_rate(
        current=current, desired=desired, min_replicas=min_r, max_replicas=max_r,
        scale_up=scale_up or default_scale_up(), scale_down=scale_down or default_scale_down(),
        up_events=up_events, down_events=down_events, now_s=0.0,
    )
    assert got == (expected, condition)


def test_calculate_scale_up_limit_with_min_select_policy():
    rules = HPAScalingRules(stabilization_window_s=300.0, select_policy="Min",
                            policies=(HPAScalingPolicy("Pods", 2, 60.0), HPAScalingPolicy("Percent", 50, 60.0)))
    # TestCalculateScaleUpLimitWithScalingRules: min(1 + 2, ceil(1 × 1.5)) = 2.
    assert calculate_scale_up_limit_with_scaling_rules(1, (), (), rules, now_s=0.0) == 2
    # TestCalculateScaleDownLimitWithBehaviors: the smallest change down is max(5 − 2, int(5 × 0.5)) = 3.
    assert calculate_scale_down_limit_with_behaviors(5, (), (), rules, now_s=0.0) == 3


STORE_SCALE_EVENTS = [
    # (name, prev events, rules, expected change within 60 s, new events as (change, outdated))
    ("empty entries with default behavior", (), None, 0, []),
    ("empty entries with two-policy-behavior", (), R(10, 60, 100, 60, 0), 0, [(5, False)]),
    ("one outdated entry to be kept untouched without behavior", ((-61.0, 7),), None, 0, [(7, False)]),
    ("one outdated entry to be replaced with behavior", ((-61.0, 7),), R(10, 60, 100, 60, 0), 0, [(5, False)]),
    ("one actual entry to be not touched with behavior", ((-58.0, 7),), R(10, 60, 100, 60, 0), 7,
     [(7, False), (5, False)]),
    ("two entries, one of them to be replaced", ((-61.0, 7), (-59.0, 6)), R(10, 60, 0, 0, 0), 6,
     [(5, False), (6, False)]),
    ("replace one entry, use policies with different periods", ((-29.0, 8), (-59.0, 6), (-61.0, 7), (-61.0, 9)),
     R(10, 60, 100, 30, 0), 14, [(8, False), (6, False), (7, True), (5, False)]),
    ("two entries, both actual", ((-58.0, 7), (-59.0, 6)), R(10, 120, 100, 30, 0), 13,
     [(7, False), (6, False), (5, False)]),
]


@pytest.mark.parametrize(
    ("prev", "rules", "expected_change", "expected_events"),
    [pytest.param(*case[1:], id=f"TestStoreScaleEvents:{case[0]}") for case in STORE_SCALE_EVENTS],
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_store_scale_events(direction, prev, rules, expected_change, expected_events):
    assert get_replicas_change_per_period(60.0, prev, now_s=0.0) == expected_change
    if rules is None:
        # storeScaleEvent keeps nothing without a behavior: a legacy HPA rescaling 10 → 15 (or 5) leaves them.
        spec = HPASpec(min_replicas=1, max_replicas=100, behavior=None)
        state = HPAState(recommendations=(), scale_up_events=prev, scale_down_events=prev)
        replicas, state = hpa_step(spec, state, now_s=0.0, current_replicas=10,
                                   metric_value=15.0 if direction == "up" else 5.0)
        assert replicas == (15 if direction == "up" else 5)
        events = state.scale_up_events if direction == "up" else state.scale_down_events
        assert events == prev
        return
    events = store_scale_event(prev, 5, longest_period_s=rules.longest_period_s, now_s=0.0)
    outdated = [t < -rules.longest_period_s for t, _ in events]  # markScaleEventsOutdated's flag
    assert list(zip([change for _, change in events], outdated, strict=True)) == expected_events


# --- beyond the unit tables: the same rules through hpa_step -----------------------------------------------


def test_stabilization_is_two_directional_through_the_controller():
    # The case: both windows 300 s, current 2, proposal 1, a recommendation of 3 still in the window.
    rules = HPAScalingRules(stabilization_window_s=300.0, policies=(HPAScalingPolicy("Percent", 100, 15.0),))
    spec = HPASpec(min_replicas=1, max_replicas=10, behavior=HPABehavior(scale_up=rules, scale_down=rules))
    state = HPAState(recommendations=((-100.0, 3),))
    replicas, _ = hpa_step(spec, state, now_s=0.0, current_replicas=2, metric_value=1.0)
    assert replicas == 2  # one-directional stabilization scales up to 3 here
    state = HPAState(recommendations=((-100.0, 1),))
    replicas, _ = hpa_step(spec, state, now_s=0.0, current_replicas=2, metric_value=3.0)
    assert replicas == 2  # and down to 1 here


def test_rate_limited_scale_up_stops_when_the_load_drops():
    # Upstream default behavior (up: no window, +4 pods or +100% per 15 s; down: 300 s). The plan jumps to 40,
    # the HPA climbs at its rate limit, then the plan drops to 3: the HPA holds where it is instead of going on
    # towards the 40 still in the scale-down window (what one-directional stabilization did).
    spec = HPASpec(min_replicas=1, max_replicas=100)
    state = HPAState(recommendations=())
    replicas = 1
    for t in (0.0, 15.0, 30.0):
        replicas, state = hpa_step(spec, state, now_s=t, current_replicas=replicas, metric_value=40.0)
    assert replicas == 20  # max(+4, +100%) per 15 s: 1 → 5 → 10 → 20
    held = replicas
    for t in (45.0, 60.0, 75.0):
        replicas, state = hpa_step(spec, state, now_s=t, current_replicas=replicas, metric_value=3.0)
        assert replicas == held


def test_first_sight_and_restart_seed_the_current_count():
    spec = HPASpec(min_replicas=1, max_replicas=100)  # down window: the controller's 300 s
    replicas, state = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=10, metric_value=2.0)
    assert replicas == 10 and state.recommendations == ((0.0, 10), (0.0, 2))
    replicas, state = hpa_step(spec, state, now_s=300.0, current_replicas=replicas, metric_value=2.0)
    assert replicas == 2  # the seed has left the window
    # A controller restart forgets everything and seeds again.
    replicas, _ = hpa_step(spec, HPAState(), now_s=315.0, current_replicas=8, metric_value=2.0)
    assert replicas == 8


def test_legacy_path_without_behavior():
    spec = HPASpec(min_replicas=1, max_replicas=100, behavior=None)
    # Scale-up limit max(2 × current, 4) per sync.
    assert hpa_step(spec, HPAState(recommendations=()), now_s=0.0, current_replicas=1, metric_value=50.0)[0] == 4
    assert hpa_step(spec, HPAState(recommendations=()), now_s=0.0, current_replicas=10, metric_value=50.0)[0] == 20
    # Max over the 300 s window in both directions: a recent 10 lifts a scale-up proposal of 7 to 10.
    state = HPAState(recommendations=((-100.0, 10),))
    assert hpa_step(spec, state, now_s=0.0, current_replicas=5, metric_value=7.0)[0] == 10
    # No scale events are kept.
    _, state = hpa_step(spec, HPAState(recommendations=()), now_s=0.0, current_replicas=5, metric_value=9.0)
    assert state.scale_up_events == () and state.scale_down_events == ()


def test_disabled_scale_up_never_grows():
    up = HPAScalingRules(policies=(HPAScalingPolicy("Pods", 4, 15.0),), select_policy="Disabled")
    spec = HPASpec(min_replicas=1, max_replicas=100, behavior=HPABehavior(scale_up=up))
    assert hpa_step(spec, HPAState(), now_s=0.0, current_replicas=3, metric_value=30.0)[0] == 3


def test_per_direction_tolerances_through_the_controller():
    behavior = HPABehavior(scale_up=HPAScalingRules(policies=default_scale_up().policies, tolerance=0.0),
                           scale_down=HPAScalingRules(policies=default_scale_down().policies, tolerance=0.5))
    spec = HPASpec(min_replicas=1, max_replicas=100, behavior=behavior)
    fresh = HPAState(recommendations=())
    assert hpa_step(spec, fresh, now_s=0.0, current_replicas=10, metric_value=10.5)[0] == 11  # up: no band
    assert hpa_step(spec, fresh, now_s=0.0, current_replicas=10, metric_value=5.0)[0] == 10  # down: 50% band
    assert hpa_step(spec, fresh, now_s=0.0, current_replicas=10, metric_value=4.9)[0] == 5


def test_average_value_uses_status_replicas_and_ignores_readiness():
    # GetExternalPerPodMetricReplicas divides by the scale's status replicas (pods that exist, ready or not).
    spec = HPASpec(min_replicas=1, max_replicas=100, behavior=HPABehavior.recommended_for_faro())
    fresh = HPAState(recommendations=())
    # Spec 10 but only 8 pods exist: 8.4 / 8 is inside the band, so the proposal is the status count 8 (and
    # the spec follows it down), not the spec's 10.
    assert hpa_step(spec, fresh, now_s=0.0, current_replicas=10, metric_value=8.4, status_replicas=8,
                    ready_pods=2)[0] == 8
    assert hpa_step(spec, fresh, now_s=0.0, current_replicas=10, metric_value=12.0, status_replicas=10,
                    ready_pods=1)[0] == 12

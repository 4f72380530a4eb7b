"""The HPA emulator follows the Kubernetes controller for an External AverageValue metric."""

from __future__ import annotations

import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.sim.hpa import (
    HPABehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    HPASpec,
    HPAState,
    default_scale_down,
    default_scale_up,
    desired_from_external_average,
    hpa_step,
)


@pytest.mark.parametrize(
    ("current", "value", "tolerance", "expected"),
    [
        pytest.param(10, 10.9, 0.1, 10, id="within-10pct-above-keeps-current"),
        pytest.param(10, 11.0, 0.1, 10, id="band-edge-is-inclusive"),
        pytest.param(10, 11.1, 0.1, 12, id="above-band-rounds-up"),
        pytest.param(10, 9.1, 0.1, 10, id="within-10pct-below-keeps-current"),
        pytest.param(10, 9.0, 0.1, 10, id="lower-band-edge-is-inclusive"),
        pytest.param(10, 8.9, 0.1, 9, id="below-band-ceil"),
        pytest.param(10, 10.5, 0.0, 11, id="tolerance-zero-follows-any-change"),
        pytest.param(10, 10.0, 0.0, 10, id="tolerance-zero-exact-keeps"),
        pytest.param(3, 7.0, 0.1, 7, id="plain-ceil"),
        pytest.param(0, 2.5, 0.1, 3, id="zero-current-ceil"),
        pytest.param(4, 2.5, (0.1, 0.5), 4, id="per-direction-down-tolerance"),
    ],
)
def test_external_average_proposal_matches_kubernetes(current, value, tolerance, expected):
    assert desired_from_external_average(current, value, 1.0, tolerance) == expected


def test_proposal_uses_the_target_average_value():
    # 30 units at 10 per pod from 2 pods: ratio 1.5 → ceil(30/10) = 3.
    assert desired_from_external_average(2, 30.0, 10.0, 0.1) == 3


def test_proposal_ignores_float_noise_below_a_milli_unit():
    assert desired_from_external_average(5, 11.000000001, 1.0, 0.0) == 11


def _spec(**kw) -> HPASpec:
    kw.setdefault("min_replicas", 1)
    kw.setdefault("max_replicas", 100)
    return HPASpec(**kw)


def test_first_call_syncs_and_scales_to_the_metric():
    replicas, state = hpa_step(_spec(), HPAState(), now_s=0.0, current_replicas=10, metric_value=11.1)
    assert replicas == 12
    assert state.last_sync_s == 0.0
    assert state.scale_up_events == ((0.0, 2),)


def test_calls_between_sync_periods_change_nothing():
    spec = _spec()
    _, state = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=5, metric_value=5.0)
    replicas, later = hpa_step(spec, state, now_s=10.0, current_replicas=5, metric_value=20.0)
    assert replicas == 5 and later == state
    replicas, _ = hpa_step(spec, state, now_s=15.0, current_replicas=5, metric_value=20.0)
    assert replicas == 10  # rate limit: max(+4, +100%) of 5


def test_unreadable_metric_keeps_current_replicas():
    replicas, state = hpa_step(_spec(), HPAState(), now_s=0.0, current_replicas=7, metric_value=None)
    assert replicas == 7
    assert state.scale_up_events == () and state.scale_down_events == ()


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        pytest.param(2, 50.0, 6, id="small-deployment-plus-4-pods"),
        pytest.param(10, 50.0, 20, id="large-deployment-doubles"),
        pytest.param(10, 15.0, 15, id="within-limit-unclipped"),
    ],
)
def test_default_scale_up_rate_is_max_of_4_pods_and_100_percent(current, value, expected):
    replicas, _ = hpa_step(_spec(), HPAState(), now_s=0.0, current_replicas=current, metric_value=value)
    assert replicas == expected


def test_scale_up_within_the_same_period_counts_earlier_changes():
    rules = HPAScalingRules(policies=(HPAScalingPolicy("Pods", 4, 60.0),))
    spec = _spec(behavior=HPABehavior(scale_up=rules, scale_down=default_scale_down(0.0)))
    replicas, state = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=2, metric_value=50.0)
    assert replicas == 6
    replicas, state = hpa_step(spec, state, now_s=15.0, current_replicas=6, metric_value=50.0)
    assert replicas == 6  # 4 pods already added within the 60 s period
    replicas, _ = hpa_step(spec, state, now_s=61.0, current_replicas=6, metric_value=50.0)
    assert replicas == 10


def test_default_scale_down_waits_for_the_300s_stabilization_window():
    spec = _spec()
    state = HPAState()
    replicas = 10
    replicas, state = hpa_step(spec, state, now_s=0.0, current_replicas=replicas, metric_value=10.0)
    for t in range(15, 300, 15):
        replicas, state = hpa_step(spec, state, now_s=float(t), current_replicas=replicas, metric_value=2.0)
        assert replicas == 10, t  # the recommendation of 10 at t=0 is still in the window
    replicas, state = hpa_step(spec, state, now_s=300.0, current_replicas=replicas, metric_value=2.0)
    assert replicas == 2


def test_zero_stabilization_scales_down_at_once():
    spec = _spec(behavior=HPABehavior.recommended_for_faro())
    _, state = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=10, metric_value=10.0)
    replicas, _ = hpa_step(spec, state, now_s=15.0, current_replicas=10, metric_value=2.0)
    assert replicas == 2


def test_scale_down_picks_the_highest_recent_recommendation():
    # First sight seeds the current count (recordInitialRecommendation; upstream TestScaleDownStabilizeInitialSize):
    # nothing goes below 10 until that seed has left the 60 s window.
    behavior = HPABehavior(scale_down=default_scale_down(60.0))
    spec = _spec(behavior=behavior)
    state = HPAState()
    replicas, state = hpa_step(spec, state, now_s=0.0, current_replicas=10, metric_value=8.0)
    assert replicas == 10  # max(seed 10, 8)
    replicas, state = hpa_step(spec, state, now_s=15.0, current_replicas=replicas, metric_value=4.0)
    assert replicas == 10  # max(10, 8, 4)
    replicas, state = hpa_step(spec, state, now_s=30.0, current_replicas=replicas, metric_value=6.0)
    assert replicas == 10
    replicas, state = hpa_step(spec, state, now_s=75.0, current_replicas=replicas, metric_value=3.0)
    assert replicas == 6  # t=0 and t=15 left the 60 s window; t=30 proposed 6


def test_scale_down_percent_policy_limits_the_step():
    down = HPAScalingRules(policies=(HPAScalingPolicy("Percent", 50, 15.0),))
    spec = _spec(behavior=HPABehavior(scale_up=default_scale_up(), scale_down=down))
    replicas, _ = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=9, metric_value=1.0)
    assert replicas == 4  # int(9 × 0.5)


def test_disabled_scale_down_never_shrinks():
    down = HPAScalingRules(policies=(HPAScalingPolicy("Percent", 100, 15.0),), select_policy="Disabled")
    spec = _spec(behavior=HPABehavior(scale_up=default_scale_up(), scale_down=down))
    replicas, _ = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=9, metric_value=1.0)
    assert replicas == 9


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        pytest.param(6, 200.0, 8, id="clamped-to-max"),
        pytest.param(5, 0.0, 2, id="clamped-to-min"),
        pytest.param(12, 12.0, 8, id="above-max-goes-to-max-without-metric"),
        pytest.param(1, 1.0, 2, id="below-min-goes-to-min-without-metric"),
        pytest.param(0, 5.0, 0, id="scaled-to-zero-disables-autoscaling"),
    ],
)
def test_min_max_bounds(current, value, expected):
    spec = _spec(min_replicas=2, max_replicas=8, behavior=HPABehavior.recommended_for_faro())
    replicas, _ = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=current, metric_value=value)
    assert replicas == expected


def test_tolerance_zero_behavior_follows_small_moves():
    spec = _spec(behavior=HPABehavior.recommended_for_faro(tolerance=0.0))
    replicas, _ = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=10, metric_value=10.5)
    assert replicas == 11


def test_default_tolerance_ignores_small_moves():
    spec = _spec(behavior=HPABehavior.recommended_for_faro())
    replicas, _ = hpa_step(spec, HPAState(), now_s=0.0, current_replicas=10, metric_value=10.5)
    assert replicas == 10


def test_old_recommendations_and_events_are_forgotten():
    spec = _spec(behavior=HPABehavior.recommended_for_faro())
    state = HPAState()
    replicas = 1
    for i in range(200):
        value = float(1 + i % 7)
        replicas, state = hpa_step(spec, state, now_s=15.0 * i, current_replicas=replicas, metric_value=value)
    assert len(state.recommendations) <= 2
    assert len(state.scale_up_events) <= 2 and len(state.scale_down_events) <= 2


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"min_replicas": -1, "max_replicas": 3}, id="negative-min"),
        pytest.param({"min_replicas": 5, "max_replicas": 3}, id="max-below-min"),
        pytest.param({"min_replicas": 1, "max_replicas": 3, "target_average_value": 0.0}, id="zero-target"),
    ],
)
def test_invalid_spec_names_the_field(kwargs):
    with pytest.raises(InvalidInputError, match="HPASpec"):
        HPASpec(**kwargs)


def test_invalid_policy_type_names_the_field():
    with pytest.raises(InvalidInputError, match=r"HPAScalingPolicy\.type"):
        HPAScalingPolicy("Replicas", 1, 15.0)  # type: ignore[arg-type]

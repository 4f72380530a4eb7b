"""The LLM baselines' rules: llm-d WVA saturation mode, KEDA on waiting requests, Knative KPA, GPU fair share."""

from __future__ import annotations

import pytest
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMObservation, LLMSpec
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.llm_fairshare import LLMFairSharePolicy
from faro.optimizer.policy.llm_keda import KEDAWaitingPolicy
from faro.optimizer.policy.llm_kpa import KnativeKPAPolicy
from faro.optimizer.policy.llm_wva import WVAPolicy
from faro.optimizer.policy.registry import FARO_POLICY_NAMES, LLM_POLICY_NAMES, POLICY_NAMES, make_policy

PROFILE = EngineProfile(step_base_ms=7.0, decode_ms_per_seq=0.03, prefill_ms_per_token=0.03, kv_cache_tokens=100_000)


def _spec(name: str, *, gpus: float = 1.0, namespace: str = "default", min_replicas: int = 1) -> JobSpec:
    return JobSpec(
        name=name, namespace=namespace, slo=SLO(1000.0), processing_time_ms=7.0, resources={"nvidia.com/gpu": gpus},
        min_replicas=min_replicas, max_replicas=20,
        llm=LLMSpec(LLMSLO(ttft_ms=1000, itl_ms=50), PROFILE),
    )


def _job(name="m", *, current=2, ready=None, kv=(), waiting=(), num_waiting=None, num_running=None, **spec):
    ready = current if ready is None else ready
    obs = LLMObservation(
        replica_kv_cache_usage=tuple(kv), replica_num_waiting=tuple(waiting), num_waiting=num_waiting,
        num_running=num_running,
    )
    return JobView(_spec(name, **spec), JobObservation(llm=obs), current_replicas=current, ready_replicas=ready)


def _view(*jobs, now_s=0.0, gpus=100.0):
    return ClusterView(now_s=now_s, jobs=tuple(jobs), quotas=(Quota("cluster", {"nvidia.com/gpu": gpus}),))


@pytest.mark.parametrize(
    ("kv", "waiting", "current", "ready", "expected"),
    [
        pytest.param((0.5, 0.6), (0, 1), 2, 2, 2, id="spare-capacity-holds"),
        pytest.param((0.75, 0.72), (0, 0), 2, 2, 3, id="spare-kv-below-10pct-scales-up"),
        pytest.param((0.3, 0.3), (3, 2), 2, 2, 3, id="spare-queue-below-3-scales-up"),
        pytest.param((0.85, 0.9), (0, 0), 2, 2, 3, id="all-saturated-scales-up"),
        pytest.param((0.85, 0.1), (0, 0), 2, 2, 2, id="saturated-replica-left-out-of-averages"),
        pytest.param((0.1, 0.1, 0.1), (0, 0, 0), 3, 3, 2, id="idle-scales-down-one"),
        pytest.param((0.45, 0.45), (0, 0), 2, 2, 2, id="scale-down-unsafe-after-redistribution"),
        pytest.param((0.9, 0.9), (6, 6), 3, 2, 3, id="pending-pod-blocks-scaling"),
    ],
)
def test_wva_saturation_rules(kv, waiting, current, ready, expected):
    jv = _job(current=current, ready=ready, kv=kv, waiting=waiting)
    plan = WVAPolicy().decide(_view(jv), WVAPolicy().initial_state()).plan
    assert plan.targets[0].desired_replicas == expected


def test_wva_acts_once_per_interval_and_one_replica_at_a_time():
    policy = WVAPolicy(interval_s=60.0)
    hot = _job(current=2, kv=(0.9, 0.9), waiting=(9, 9))
    d0 = policy.decide(_view(hot, now_s=0.0), policy.initial_state())
    assert d0.plan.targets[0].desired_replicas == 3
    d1 = policy.decide(_view(hot, now_s=30.0), d0.state)
    assert d1.plan.targets[0].desired_replicas == 2  # between runs it leaves the count as it is
    d2 = policy.decide(_view(hot, now_s=60.0), d1.state)
    assert d2.plan.targets[0].desired_replicas == 3


def test_keda_scales_on_average_waiting_with_the_hpa_rules():
    policy = KEDAWaitingPolicy(target_waiting=2.0)
    state = policy.initial_state()
    d = policy.decide(_view(_job(current=2, num_waiting=40.0)), state)
    assert d.plan.targets[0].desired_replicas == 6  # 40 / 2 = 20 wanted; at most max(+4 pods, +100%) per 15 s
    d = policy.decide(_view(_job(current=6, num_waiting=40.0), now_s=15.0), d.state)
    assert d.plan.targets[0].desired_replicas == 12
    d = policy.decide(_view(_job(current=12, num_waiting=26.0), now_s=30.0), d.state)
    assert d.plan.targets[0].desired_replicas == 12  # 26 / (2 · 12) = 1.08: inside the 10% tolerance
    # an empty queue asks for the minimum, held back by the 300 s scale-down stabilization
    d = policy.decide(_view(_job(current=12, num_waiting=0.0), now_s=45.0), d.state)
    assert d.plan.targets[0].desired_replicas == 12
    d = policy.decide(_view(_job(current=12, num_waiting=0.0), now_s=345.0), d.state)
    assert d.plan.targets[0].desired_replicas == 1


def test_kpa_follows_the_stable_window_and_panics_on_a_burst():
    policy = KnativeKPAPolicy()  # target 70 in flight per replica
    state = policy.initial_state()
    for t in range(0, 60, 2):
        d = policy.decide(_view(_job(current=2, num_waiting=0.0, num_running=100.0), now_s=float(t)), state)
        state = d.state
    assert d.plan.targets[0].desired_replicas == 2  # ⌈100 / 70⌉
    # a burst: 6 s average 400 in flight → 6 replicas wanted ≥ 2 × 2 ready: panic
    for t in range(60, 66, 2):
        d = policy.decide(_view(_job(current=2, num_waiting=300.0, num_running=100.0), now_s=float(t)), state)
        state = d.state
    assert d.plan.targets[0].desired_replicas == 6
    # the burst is gone, but in panic the count does not go down for a stable window
    d = policy.decide(_view(_job(current=6, ready=6, num_waiting=0.0, num_running=10.0), now_s=80.0), state)
    assert d.plan.targets[0].desired_replicas == 6
    state = d.state
    for t in range(82, 200, 2):
        d = policy.decide(_view(_job(current=6, ready=6, num_waiting=0.0, num_running=10.0), now_s=float(t)), state)
        state = d.state
    assert d.plan.targets[0].desired_replicas == 3  # ÷2 per decision at most, from 6


def test_fair_share_splits_the_gpus_equally_in_whole_replicas():
    jobs = (_job("a", current=1), _job("b", current=1, gpus=4.0), _job("c", current=1, gpus=2.0))
    plan = LLMFairSharePolicy().decide(_view(*jobs, gpus=24.0), None).plan
    assert [t.desired_replicas for t in plan.targets] == [8, 2, 4]


def test_fair_share_respects_a_namespace_gpu_quota():
    jobs = (_job("a", current=1, namespace="x"), _job("b", current=1, namespace="x"), _job("c", current=1))
    quotas = (Quota("cluster", {"nvidia.com/gpu": 30.0}), Quota("qx", {"requests.nvidia.com/gpu": 6.0}, namespace="x"))
    plan = LLMFairSharePolicy().decide(ClusterView(0.0, jobs, quotas), None).plan
    assert [t.desired_replicas for t in plan.targets] == [3, 3, 10]


def test_llm_baselines_are_registered_apart_from_the_cpu_policies():
    assert set(LLM_POLICY_NAMES) >= {"wva", "keda-waiting", "kpa", "llm-fairshare"}
    # Faro's policies and the Oracle plan both kinds of jobs; the LLM baselines only LLM jobs
    assert set(LLM_POLICY_NAMES) & set(POLICY_NAMES) == {*FARO_POLICY_NAMES, "oracle"}
    for name in LLM_POLICY_NAMES:
        assert make_policy(name).name == name

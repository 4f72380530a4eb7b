"""The LLM cluster simulator: conservation, GPU quotas, seeds, pod start-up and draining, the view policies get."""

from __future__ import annotations

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile
from faro.optimizer.policy.base import Decision, Plan, Target
from faro.optimizer.sim.llm.cluster import LLMSimConfig, simulate_llm
from faro.optimizer.sim.llm.metrics import minute_stats, summarize
from faro.optimizer.sim.llm.workload import LLMTrace, ModelSpec, build_workload

FAST = EngineProfile(
    step_base_ms=8.0, decode_ms_per_seq=0.05, prefill_ms_per_token=0.04, context_ms_per_token=5e-5,
    kv_cache_tokens=20_000, max_num_seqs=32, max_num_batched_tokens=1024, gpus=1.0, model_load_s=30.0,
)
BIG = EngineProfile(
    step_base_ms=15.0, decode_ms_per_seq=0.08, prefill_ms_per_token=0.07, kv_cache_tokens=12_000,
    max_num_seqs=32, max_num_batched_tokens=1024, gpus=2.0, model_load_s=60.0,
)


def _trace(seed: int, rate_rps: float, minutes: float) -> LLMTrace:
    rng = np.random.default_rng(seed)
    n = int(rate_rps * minutes * 60)
    arrivals = np.sort(rng.uniform(0, minutes * 60, n))
    return LLMTrace("synthetic", arrivals, rng.integers(50, 1500, n), rng.integers(1, 300, n))


def _workload(seed: int = 0, *, minutes: float = 4.0, scale: float = 1.0):
    traces = {"a": _trace(1, 6.0, minutes), "b": _trace(2, 3.0, minutes)}
    models = [
        ModelSpec("small", "a", FAST, LLMSLO(ttft_ms=800, itl_ms=60), load_scale=scale, namespace="team-a"),
        ModelSpec("large", "b", BIG, LLMSLO(ttft_ms=2000), load_scale=scale, shift_s=30.0, namespace="team-b"),
    ]
    return build_workload(models, seed=seed, duration_s=minutes * 60, traces=traces)


class Fixed:
    """Asks for fixed replica counts, switching to ``later`` from ``switch_s`` on (tests only)."""

    name = "fixed"
    needs_future = False

    def __init__(self, first: list[int], later: list[int] | None = None, switch_s: float = 1e9) -> None:
        self.first, self.later, self.switch_s = first, later or first, switch_s
        self.views: list = []

    def initial_state(self) -> None:
        return None

    def decide(self, view, state):
        self.views.append(view)
        want = self.first if view.now_s < self.switch_s else self.later
        targets = tuple(
            Target(j.spec.namespace, j.spec.name, want[i], j.current_replicas) for i, j in enumerate(view.jobs)
        )
        return Decision(Plan(targets), None)


def _same(a, b) -> None:
    for name in ("req_ttft_ms", "req_tpot_ms", "req_finish_s", "req_generated", "req_preemptions", "req_failed",
                 "itl_minute", "itl_gap_ms", "itl_count", "target_replicas", "ready_replicas", "pods", "gpus_used"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_every_request_is_served_or_failed_and_every_token_is_counted():
    wl = _workload()
    res = simulate_llm(wl, Fixed([2, 1], [1, 2], switch_s=90.0), LLMSimConfig(gpus=8, grace_period_s=0.2))
    assert res.req_job.size == wl.total_requests
    assert np.bincount(res.req_job).tolist() == [a.size for a in wl.arrival_s]
    ok = ~res.req_failed
    np.testing.assert_array_equal(res.req_generated[ok], res.req_output_tokens[ok])
    assert np.isfinite(res.req_ttft_ms[ok]).all() and np.isfinite(res.req_finish_s[ok]).all()
    assert (res.req_generated <= res.req_output_tokens).all()
    first_tokens = int(np.isfinite(res.req_first_token_s).sum())
    assert int(res.itl_count.sum()) + first_tokens == int(res.req_generated.sum())
    # the scale-down at 90 s drains the small model's second replica within 0.2 s: some requests fail
    assert 0 < res.req_failed.sum() < 0.2 * res.req_job.size


def test_a_draining_replica_finishes_its_requests_within_the_grace_period():
    wl = _workload()
    res = simulate_llm(wl, Fixed([3, 1], [1, 1], switch_s=90.0), LLMSimConfig(gpus=8, grace_period_s=600.0))
    assert not res.req_failed.any()
    assert res.pods[-1].tolist() == [1, 1]


def test_pods_never_hold_more_gpus_than_the_cluster_or_a_namespace_allows():
    wl = _workload(scale=3.0)
    cfg = LLMSimConfig(gpus=7, namespace_gpus=(("team-b", 4.0),), initial="min")
    res = simulate_llm(wl, Fixed([9, 9]), cfg)  # asks for 9 + 18 GPUs
    assert res.max_gpus_used <= 7
    assert res.namespace_gpus_used["team-b"] <= 4
    assert res.gpus_used.max() == 7  # what fits is created, first come (in model order) first served
    assert res.pods[-1].tolist() == [5, 1]


def test_the_same_workload_seed_gives_the_same_run_and_jumps_change_nothing():
    cfg = LLMSimConfig(gpus=8)
    policy = lambda: Fixed([2, 1], [1, 2], switch_s=60.0)  # noqa: E731
    a = simulate_llm(_workload(seed=3, scale=1.5), policy(), cfg)
    b = simulate_llm(_workload(seed=3, scale=1.5), policy(), cfg)
    _same(a, b)
    stepped = simulate_llm(_workload(seed=3, scale=1.5), policy(), LLMSimConfig(gpus=8, skip=False))
    _same(a, stepped)
    other = simulate_llm(_workload(seed=4, scale=1.5), policy(), cfg)
    assert other.req_job.size != a.req_job.size or not np.array_equal(other.req_ttft_ms, a.req_ttft_ms)


def test_a_new_pod_serves_after_its_model_load_time():
    wl = _workload()
    res = simulate_llm(wl, Fixed([1, 1], [2, 2], switch_s=60.0), LLMSimConfig(gpus=8, initial="min"))
    t = res.tick_time_s
    # asked for at 60 s; the small model loads in 30 s, the large one in 60 s
    assert res.target_replicas[t == 60.0].tolist() == [[2, 2]]
    assert res.ready_replicas[t == 80.0].tolist() == [[1, 1]]
    assert res.ready_replicas[t == 90.0].tolist() == [[2, 1]]
    assert res.ready_replicas[t == 120.0].tolist() == [[2, 2]]
    assert res.pods[t == 60.0].tolist() == [[2, 2]]  # starting pods hold their GPUs


def test_policies_see_llm_observations_quotas_and_gpu_requests():
    policy = Fixed([2, 1])
    simulate_llm(_workload(), policy, LLMSimConfig(gpus=8, namespace_gpus=(("team-a", 6.0),)))
    first, later = policy.views[0], policy.views[13]
    assert [q.name for q in first.quotas] == ["cluster", "gpu-quota-team-a"]
    small, large = later.jobs
    assert small.spec.resources == {"nvidia.com/gpu": 1.0} and large.spec.resources == {"nvidia.com/gpu": 2.0}
    assert small.spec.llm.slo.itl_ms == 60 and large.spec.llm.slo.ttft_ms == 2000
    assert first.jobs[0].observation.llm.ttft_ms is None  # nothing measured yet
    obs = small.observation.llm
    assert obs.ttft_ms > 0 and obs.itl_ms > 0 and 0 <= obs.kv_cache_usage <= 1
    assert 0 < obs.tpot_ms <= obs.itl_ms * 1.5  # a request's mean gap is no tail gap
    assert len(obs.replica_kv_cache_usage) == small.ready_replicas == 2
    assert obs.token_mix is not None and obs.token_mix.prompt_tokens.size > 10
    assert len(small.observation.rate_history_rpm) == 2  # at 130 s: minutes 0 and 1 complete
    assert small.observation.future_rate_rpm is None


def test_the_oracle_gets_the_true_future():
    class Oracle(Fixed):
        needs_future = True

    policy = Oracle([1, 1])
    wl = _workload()
    simulate_llm(wl, policy, LLMSimConfig(gpus=8))
    assert policy.views[6].jobs[0].observation.future_rate_rpm == tuple(wl.counts_rpm[0, 1:].astype(float))


@pytest.mark.parametrize("balancer", ["least-outstanding", "round-robin"])
def test_the_balancer_spreads_requests_over_ready_replicas(balancer):
    wl = _workload()
    res = simulate_llm(wl, Fixed([3, 1]), LLMSimConfig(gpus=8, balancer=balancer))
    assert not res.req_failed.any()
    s = summarize(res, minute_stats(res))
    assert s.slo_violation < 0.2


def test_bad_settings_are_named():
    with pytest.raises(InvalidInputError, match="--gpus"):
        LLMSimConfig(gpus=0)
    with pytest.raises(InvalidInputError, match="balancer"):
        LLMSimConfig(balancer="random")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="--gpus"):
        simulate_llm(_workload(), Fixed([1, 1]), LLMSimConfig(gpus=2, initial="min"))  # 1 + 2 GPUs at start


def test_a_warm_up_replays_the_end_of_the_hour_first_and_is_left_out_of_the_scores():
    traces = {"a": _trace(1, 6.0, 4.0), "b": _trace(2, 3.0, 4.0)}
    models = [ModelSpec("small", "a", FAST, LLMSLO(ttft_ms=800, itl_ms=60)),
              ModelSpec("large", "b", BIG, LLMSLO(ttft_ms=2000), shift_s=30.0)]
    plain = build_workload(models, duration_s=240.0, traces=traces)
    warm = build_workload(models, duration_s=240.0, traces=traces, warmup_s=60.0)
    assert warm.duration_s == 300.0 and warm.num_minutes == 5
    for a, b in zip(plain.arrival_s, warm.arrival_s, strict=True):
        np.testing.assert_allclose(b[b < 60.0], a[a >= 180.0] - 180.0)  # the hour's last minute comes first
        np.testing.assert_allclose(b[b >= 60.0], a + 60.0)
    res = simulate_llm(warm, Fixed([2, 1]), LLMSimConfig(gpus=8))
    stats = minute_stats(res)
    assert stats.arrived.shape == (2, 4)
    assert stats.arrived.sum() == plain.total_requests == summarize(res, stats).requests


def test_hpa_actuation_moves_targets_only_at_the_hpa_sync():
    wl = _workload(minutes=2.0)
    res = simulate_llm(wl, Fixed([1, 1], [3, 2], switch_s=20.0), LLMSimConfig(gpus=8, actuation="hpa", initial="min"))
    t = res.tick_time_s
    assert res.tick_s == 5.0  # gcd of the 10 s policy interval and the 15 s HPA sync
    assert res.target_replicas[t == 25.0].tolist() == [[1, 1]]  # planned at 20 s, the HPA syncs at 30 s
    assert res.target_replicas[t == 30.0].tolist() == [[3, 2]]

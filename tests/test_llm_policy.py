"""Faro and the Oracle plan LLM jobs: GPUs under quotas for the forecast load and the observed token mix,
a horizon that covers the model load, and a reactive step on observed TTFT/ITL."""

from dataclasses import replace

import numpy as np
import pytest
from faro.optimizer.model.llm_latency import DEFAULT_TOKEN_MIX, capacity_rps
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMObservation, LLMSpec, TokenMix
from faro.optimizer.model.problem import SLO, Quota
from faro.optimizer.policy.base import ClusterView, JobObservation, JobSpec, JobView
from faro.optimizer.policy.faro import build_problem
from faro.optimizer.policy.faro_llm import SCENARIO_LEVELS, equivalent_latency_ms, planning_horizon, token_mix_of
from faro.optimizer.policy.hybrid import burst_need
from faro.optimizer.policy.registry import make_policy

PROFILE = EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                        kv_cache_tokens=200_000, max_num_seqs=128, max_num_batched_tokens=4096, model_load_s=150.0)
MIX = TokenMix(np.array([300.0, 800, 1200, 2500, 600, 4000]), np.array([50.0, 120, 200, 80, 300, 150]))


def llm_view(rates_rps, *, current=1, gpus=8, llm_obs=None, now_s=300.0, future=False):
    jobs = []
    for i, rate in enumerate(rates_rps):
        spec = JobSpec(name=f"llm{i}", namespace="gpu", slo=SLO(1500.0), processing_time_ms=100.0,
                       resources={"nvidia.com/gpu": 1.0}, max_replicas=16,
                       llm=LLMSpec(LLMSLO(ttft_ms=1500.0, itl_ms=450.0), PROFILE))
        history = (rate * 60.0,) * 30
        obs = JobObservation(rate_history_rpm=history, llm=llm_obs or LLMObservation(token_mix=MIX),
                             future_rate_rpm=history[:20] if future else None)
        jobs.append(JobView(spec=spec, observation=obs, current_replicas=current, ready_replicas=current))
    cpu = JobSpec(name="resnet", namespace="cpu", slo=SLO(720.0), processing_time_ms=180.0)
    jobs.append(JobView(spec=cpu, observation=JobObservation(rate_history_rpm=(960.0,) * 30), current_replicas=4,
                        ready_replicas=4))
    quotas = (Quota(name="gpu", namespace="gpu", hard={"requests.nvidia.com/gpu": gpus}),
              Quota(name="cap", hard={"cpu": 8}))
    return ClusterView(now_s=now_s, jobs=tuple(jobs), quotas=quotas)


def plan_of(policy, view):
    decision = policy.decide(view, policy.initial_state())
    return decision.plan.desired(), decision


def test_faro_gives_an_llm_job_the_gpus_its_load_needs_within_the_quota():
    cap = capacity_rps(PROFILE, MIX)
    policy = make_policy("faro-sum", reactive=False)
    light, _ = plan_of(policy, llm_view([0.25 * cap]))
    heavy, decision = plan_of(policy, llm_view([3.0 * cap]))
    assert light[("gpu", "llm0")] == 1 and 4 <= heavy[("gpu", "llm0")] <= 8
    assert decision.plan.kind == "solve" and heavy[("cpu", "resnet")] >= 1
    squeezed, _ = plan_of(make_policy("faro-fairsum", reactive=False), llm_view([3.0 * cap, 3.0 * cap], gpus=5))
    assert squeezed[("gpu", "llm0")] + squeezed[("gpu", "llm1")] <= 5
    assert abs(squeezed[("gpu", "llm0")] - squeezed[("gpu", "llm1")]) <= 1


def test_the_oracle_plans_llm_jobs_from_the_true_future():
    cap = capacity_rps(PROFILE, MIX)
    desired, decision = plan_of(make_policy("oracle", reactive=False), llm_view([3.0 * cap], future=True))
    assert "oracle" in decision.plan.solver_status and desired[("gpu", "llm0")] >= 4


def test_an_llm_job_is_planned_for_the_observed_then_the_declared_then_the_default_mix():
    view = llm_view([2.0])
    assert token_mix_of(view.jobs[0]) is MIX
    jv = view.jobs[0]
    bare = JobView(spec=jv.spec, observation=jv.observation.__class__(), current_replicas=1, ready_replicas=1)
    assert token_mix_of(bare) is DEFAULT_TOKEN_MIX
    declared = TokenMix.fixed(64, 8)
    spec = jv.spec.__class__(**{**jv.spec.__dict__, "llm": LLMSpec(jv.spec.llm.slo, PROFILE, token_mix=declared)})
    assert token_mix_of(JobView(spec=spec, observation=bare.observation, current_replicas=1,
                                ready_replicas=1)) is declared
    problem = build_problem(view, np.array([[120.0] * 7, [960.0] * 7]), objective="sum", model=make_policy(
        "faro-sum").model)
    llm, cpu = problem.jobs
    assert llm.llm is jv.spec.llm and llm.token_mix is MIX and llm.rate_rps == (2.0,) * 7
    assert cpu.llm is None and cpu.processing_time_ms == 180.0


def test_the_horizon_reaches_past_the_model_load():
    assert planning_horizon(llm_view([1.0]), 7) == 7  # 150 s load: 3 steps, 4 left to serve
    slow = EngineProfile(step_base_ms=30, decode_ms_per_seq=0.5, prefill_ms_per_token=0.2, kv_cache_tokens=100_000,
                         model_load_s=600.0)
    view = llm_view([1.0])
    jv = view.jobs[0]
    spec = jv.spec.__class__(**{**jv.spec.__dict__, "llm": LLMSpec(jv.spec.llm.slo, slow)})
    slow_view = ClusterView(now_s=0.0, jobs=(JobView(spec, jv.observation, 1, 1),))
    assert planning_horizon(slow_view, 7) == 14
    assert planning_horizon(ClusterView(now_s=0.0, jobs=()), 1) == 2  # a CPU job's 35 s cold start + a step


@pytest.mark.parametrize(("ttft", "itl", "over"), [
    pytest.param(900.0, 300.0, False, id="both-met"),
    pytest.param(2400.0, 300.0, True, id="ttft-violated"),
    pytest.param(900.0, 900.0, True, id="itl-violated"),
    pytest.param(None, None, None, id="nothing-observed"),
])
def test_the_reactive_check_compares_observed_ttft_and_itl_with_their_slos(ttft, itl, over):
    view = llm_view([1.0], llm_obs=LLMObservation(ttft_ms=ttft, itl_ms=itl, token_mix=MIX))
    latency = equivalent_latency_ms(view.jobs[0])
    if over is None:
        assert latency is None
    else:
        assert (latency > view.jobs[0].spec.slo.latency_ms) is over


def test_three_checks_over_the_ttft_slo_add_one_replica_between_long_steps():
    policy = make_policy("faro-sum", interval_s=300.0, first_long_s=300.0, initial_split=False)
    state = policy.initial_state()
    obs = LLMObservation(ttft_ms=4000.0, itl_ms=100.0, token_mix=MIX)
    for t in (10.0, 20.0, 30.0):
        decision = policy.decide(llm_view([0.5], current=2, llm_obs=obs, now_s=t), state)
        state = decision.state
    assert decision.plan.kind == "reactive" and decision.plan.desired()[("gpu", "llm0")] == 3


def test_llm_jobs_are_replanned_every_minute_and_cpu_jobs_on_the_long_interval():
    policy = make_policy("faro-fair", interval_s=300.0)
    state = replace(policy.initial_state(), last_long_s=0.0)
    llm = llm_view([0.5], now_s=60.0)
    cpu_only = ClusterView(now_s=60.0, jobs=llm.jobs[-1:], quotas=llm.quotas)
    assert policy.decide(llm, state).plan.kind == "solve"
    assert policy.decide(cpu_only, state).plan.kind != "solve"
    assert make_policy("faro-fair", interval_s=300.0, llm_interval_s=300.0).decide(llm, state).plan.kind != "solve"


def test_an_llm_replica_is_released_only_when_another_job_needs_its_gpus():
    cap = capacity_rps(PROFILE, MIX)
    light = llm_view([0.25 * cap], current=3, gpus=8)
    kept, _ = plan_of(make_policy("faro-fair", reactive=False), light)
    released, _ = plan_of(make_policy("faro-fair", reactive=False, hold_llm_releases=False), light)
    assert kept[("gpu", "llm0")] == 3 and released[("gpu", "llm0")] == 1
    # a second model needs the GPUs the first holds: they move, although the first model keeps its count
    # where nothing else wants them
    busy = llm_view([0.25 * cap, 2.5 * cap], current=3, gpus=6)
    moved, _ = plan_of(make_policy("faro-fair", reactive=False), busy)
    assert moved[("gpu", "llm0")] < 3 and moved[("gpu", "llm1")] > 3
    assert moved[("gpu", "llm0")] + moved[("gpu", "llm1")] <= 6


def _after_a_burst(current: int, burst_load: float | None) -> ClusterView:
    """An LLM job at 0.3 of a replica's capacity (and, for the Oracle, so in the coming minutes) that ran
    ``burst_load`` × capacity three minutes ago."""
    cap = capacity_rps(PROFILE, MIX)
    view = llm_view([0.3 * cap], current=current, gpus=8, future=True)
    history = list(view.jobs[0].observation.rate_history_rpm)
    if burst_load is not None:
        history[-3] = burst_load * cap * 60.0
    job = replace(view.jobs[0], observation=replace(view.jobs[0].observation, rate_history_rpm=tuple(history)))
    return replace(view, jobs=(job, *view.jobs[1:]))


def test_the_recent_busiest_minute_holds_an_llm_jobs_replicas_but_adds_none():
    """The forecast floor (the busiest of the last two model loads' minutes) keeps the replicas a job runs
    through a dip, but a burst that has passed asks for no new replica: it would serve a model load later.
    The Oracle knows the coming minutes are calm, so only the floor can move its plan."""
    policy = make_policy("oracle", reactive=False, hold_llm_releases=False)
    held, _ = plan_of(policy, _after_a_burst(3, 2.4))
    calm, _ = plan_of(policy, _after_a_burst(3, None))
    grown, _ = plan_of(policy, _after_a_burst(1, 3.0))
    assert held[("gpu", "llm0")] == 3 and calm[("gpu", "llm0")] == 1
    assert grown[("gpu", "llm0")] == 1  # the floor grew it to 4 before


def test_a_waiting_backlog_asks_for_replicas_that_serve_once_loaded():
    # a saturated replica's observed rate is its throughput: the backlog it left is what says it is short
    cap = capacity_rps(PROFILE, MIX)
    policy = make_policy("faro-fair", reactive=False)
    calm, _ = plan_of(policy, llm_view([0.3 * cap], gpus=8, llm_obs=LLMObservation(num_waiting=0.0, token_mix=MIX)))
    backlog = LLMObservation(num_waiting=60.0 * cap, token_mix=MIX)  # a minute of one replica's work
    behind, _ = plan_of(policy, llm_view([0.3 * cap], gpus=8, llm_obs=backlog))
    assert calm[("gpu", "llm0")] == 1 and behind[("gpu", "llm0")] >= 2


def _burst_view(rate_rps: float, *, waiting: float | None = None, gpus: int = 8) -> ClusterView:
    view = llm_view([rate_rps], gpus=gpus, llm_obs=LLMObservation(token_mix=MIX, num_waiting=waiting))
    llm_job_view = replace(view.jobs[0], observation=replace(view.jobs[0].observation, arrival_rate_rps=rate_rps))
    return replace(view, jobs=(llm_job_view, *view.jobs[1:]))


@pytest.mark.parametrize("waiting", [None, 120.0])
def test_burst_need_sizes_an_llm_job_by_the_load_that_meets_its_slos(waiting):
    """The reactive step's burst need for an LLM job is the fewest replicas at which the latency model meets
    both SLOs for the rate seen now plus the waiting requests drained in ``drain_s`` — not a step time taken
    for a service time (which asked for one replica at any load)."""
    from faro.optimizer.model.llm_utility import LLMJobs
    from faro.optimizer.model.problem import Job, ModelConfig

    rate = 3.0 * capacity_rps(PROFILE, MIX)
    view = _burst_view(rate, waiting=waiting)
    need = int(burst_need(view, rho=0.9, drain_s=10.0)[0])
    demand = rate + (waiting or 0.0) / 10.0
    job = Job.for_llm("llm0", llm=view.jobs[0].spec.llm, token_mix=MIX, rate_rps=(demand,))
    llm = LLMJobs.of([job], ModelConfig(rho_max=0.9))

    def utility(replicas: int) -> float:
        return float(llm.utility_at(llm.load(np.array([[demand]]), np.array([[replicas]])))[0, 0])

    assert need >= 4 and utility(need) == 1.0 and utility(need - 1) < 1.0
    assert burst_need(view, rho=0.9, drain_s=10.0)[1] == 0  # the CPU job has no measured rate here


def test_the_reactive_step_meets_an_llm_burst_within_the_free_gpus():
    rate = 3.0 * capacity_rps(PROFILE, MIX)
    policy = make_policy("faro-fair")
    state = replace(policy.initial_state(), last_long_s=300.0, warmed=True)  # the next long step at 360 s
    decision = policy.decide(_burst_view(rate, gpus=3), state)
    assert decision.plan.kind == "reactive"
    assert decision.plan.desired()[("gpu", "llm0")] == 3  # what it needs, clipped to the namespace's 3 GPUs


def test_an_llm_jobs_utility_with_scenarios_is_the_mean_over_its_scenario_rates():
    from faro.optimizer.model.llm_utility import LLMJobs, llm_horizon_utility
    from faro.optimizer.model.problem import Job, ModelConfig

    cap = capacity_rps(PROFILE, MIX)
    spec = llm_view([cap]).jobs[0].spec
    rates = (0.5 * cap, 0.55 * cap, 0.6 * cap)
    spread = ((-0.2 * cap,) * 3, (0.0,) * 3, (0.4 * cap, 0.5 * cap, 0.6 * cap))
    config = ModelConfig(rho_max=0.9)
    counts = np.arange(1, 5)

    def horizon(job_rates, job_spread=()):
        job = Job.for_llm("a", llm=spec.llm, token_mix=MIX, rate_rps=job_rates, rate_spread_rps=job_spread,
                          current_replicas=4)
        return llm_horizon_utility(LLMJobs.of([job], config), np.array([job_rates]), counts, [4], config=config)

    with_spread = horizon(rates, spread)
    each = [horizon(tuple(max(0.0, r + o) for r, o in zip(rates, row, strict=True))) for row in spread]
    assert np.allclose(with_spread.utility, np.mean([h.utility for h in each], axis=0))
    assert np.array_equal(with_spread.saturated, np.logical_and.reduce([h.saturated for h in each]))
    plain = horizon(rates)
    assert np.allclose(with_spread.ttft_ms, plain.ttft_ms)  # latencies reported at the planned rates
    assert with_spread.utility[0, 0] < plain.utility[0, 0] == 1.0  # one replica: the upper scenario crosses the cliff


def test_the_fair_objectives_plan_llm_jobs_over_forecast_scenarios_and_the_sum_ones_do_not():
    """Half a replica's capacity, 0.62 of it meets the SLOs: the forecast's upper scenarios cross that edge, so
    with spare GPUs the fair objectives add a replica; planned at one quantile (faro-sum, the Oracle) one is
    enough."""
    from faro.optimizer.policy import faro as faro_module

    cap = capacity_rps(PROFILE, MIX)
    view = llm_view([0.5 * cap], gpus=8, llm_obs=LLMObservation(num_waiting=0.0, token_mix=MIX))
    seen = {}
    original = faro_module.build_problem

    def spy(*args, **kwargs):
        problem = original(*args, **kwargs)
        seen.setdefault("spread", problem.jobs[0].rate_spread_rps)
        return problem

    faro_module.build_problem = spy
    try:
        fair, _ = plan_of(make_policy("faro-fair", reactive=False), view)
        spread = seen.pop("spread")
        total, _ = plan_of(make_policy("faro-sum", reactive=False), view)
        assert seen.pop("spread") == ()
        single, _ = plan_of(make_policy("faro-fair", reactive=False, llm_scenarios=False), view)
    finally:
        faro_module.build_problem = original
    assert len(spread) == len(SCENARIO_LEVELS) and min(spread[0]) < 0 < min(spread[-1])
    assert fair[("gpu", "llm0")] == 2 and single[("gpu", "llm0")] == 1 and total[("gpu", "llm0")] == 1

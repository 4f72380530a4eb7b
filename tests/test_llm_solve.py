"""LLM jobs through the utility tables and every solver: GPU quotas, mixed CPU/GPU problems, objectives."""

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model import SLO, Job, ModelConfig, Problem, Quota, utility_curves
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMSpec, TokenMix
from faro.optimizer.model.llm_utility import LLMJobs, llm_best_admission, llm_horizon_utility
from faro.optimizer.model.utility import ADMISSION_GRID, ADMISSION_MIN_GAIN, drop_penalty
from faro.optimizer.solve import solve
from faro.optimizer.solve.tables import build_tables

PROFILE = EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                        kv_cache_tokens=200_000, max_num_seqs=128, max_num_batched_tokens=4096, model_load_s=90.0)
MIX = TokenMix(np.array([300.0, 800, 1200, 2500, 600, 4000]), np.array([50.0, 120, 200, 80, 300, 150]))


def llm_job(name, rate, *, ttft=1500.0, itl=450.0, current=1, namespace="gpu", **kw):
    spec = LLMSpec(LLMSLO(ttft_ms=ttft, itl_ms=itl), PROFILE)
    return Job.for_llm(name, llm=spec, token_mix=MIX, rate_rps=(rate,) * 6, current_replicas=current,
                       namespace=namespace, max_replicas=kw.pop("max_replicas", 16), **kw)


def cpu_job(name, rate, current=2):
    return Job(name=name, slo=SLO(720), processing_time_ms=180, rate_rps=(rate,) * 6, current_replicas=current,
               namespace="cpu", max_replicas=40)


def test_an_llm_job_asks_for_the_profiles_gpus_and_a_mismatch_is_an_error():
    job = llm_job("a", 2.0)
    assert job.demand("requests.nvidia.com/gpu") == 1.0 and job.demand("cpu") == 0.0
    assert job.slo.latency_ms == 1500 and job.processing_time_ms == pytest.approx(15 + 0.1 * MIX.mean_prompt_tokens)
    with pytest.raises(InvalidInputError, match=r"nvidia\.com/gpu"):
        llm_job("b", 1.0, resources={"nvidia.com/gpu": 2.0})
    with pytest.raises(InvalidInputError, match="token_mix"):
        Job(name="c", slo=SLO(1), processing_time_ms=1, rate_rps=(1.0,), llm=LLMSpec(LLMSLO(ttft_ms=1), PROFILE))


def test_llm_rows_of_the_tables_agree_with_the_utility_curves():
    jobs = (llm_job("a", 6.0), llm_job("b", 12.0, ttft=None, itl=300.0, current=3), cpu_job("c", 20.0))
    problem = Problem(jobs=jobs, objective="penaltysum")
    tables = build_tables(problem, hi=np.array([10, 10, 10]))
    for i in range(3):
        counts = tables.lo[i] + np.arange(tables.width[i])
        curves = utility_curves([jobs[i]], counts, config=problem.model, penalty=True)
        assert tables.utility[i, : tables.width[i]] == pytest.approx(curves.utility[0], abs=1e-12)
        assert tables.admission[i, : tables.width[i]] == pytest.approx(curves.admission[0])
    assert np.isnan(tables.ttft_ms[2]).all() and np.isfinite(tables.ttft_ms[0, 0])


def test_llm_utility_rises_with_replicas_and_the_row_stops_where_both_slos_are_met():
    job = llm_job("a", 10.0, current=8)
    tables = build_tables(Problem(jobs=(job,)), hi=np.array([16]))
    row = tables.utility[0, : tables.width[0]]
    assert np.all(np.diff(row) >= -1e-12)
    assert row[-1] == pytest.approx(1.0) and row[-2] < 1.0  # saturation: the first count meeting both SLOs
    assert tables.hi[0] < 16
    last = tables.width[0] - 1
    assert tables.ttft_ms[0, last] <= 1500 and tables.itl_ms[0, last] <= 450


def test_a_new_replica_helps_only_after_its_model_has_loaded():
    slow = llm_job("a", 10.0, current=1)
    cfg = ModelConfig(step_s=60.0)
    curves = utility_curves([slow], np.array([1, 8]), config=cfg)
    load_steps = int(np.ceil(PROFILE.model_load_s / cfg.step_s))  # 2 of 6 steps still on 1 replica
    on_one = curves.utility[0, 0]  # every step at one replica
    assert on_one < 0.5
    assert curves.utility[0, 1] == pytest.approx((load_steps * on_one + (6 - load_steps)) / 6)


@pytest.mark.parametrize("objective", ["sum", "fair", "fairsum", "penaltysum", "penaltyfairsum"])
@pytest.mark.parametrize("solver", ["auto", "greedy", "dp"])
def test_mixed_cpu_and_gpu_jobs_are_solved_within_every_quota(objective, solver):
    jobs = (llm_job("chat", 9.0, current=2), llm_job("code", 5.0), llm_job("batch", 3.0, ttft=4000, itl=None),
            cpu_job("resnet", 20.0), cpu_job("bert", 8.0))
    quotas = (Quota(name="gpu", namespace="gpu", hard={"requests.nvidia.com/gpu": 6}),
              Quota(name="cap", hard={"cpu": 12, "nvidia.com/gpu": 6}))
    problem = Problem(jobs=jobs, quotas=quotas, objective=objective)
    result = solve(problem, solver=solver)
    assert result.ok and problem.constraints().satisfied(result.replicas)
    assert result.replicas[:3].sum() <= 6
    assert result.ttft_ms is not None and np.isfinite(result.ttft_ms[:3]).all() and np.isnan(result.ttft_ms[3:]).all()
    exact = solve(problem, solver="dp")
    assert result.objective_value == pytest.approx(exact.objective_value, abs=1e-6)


def test_cpu_jobs_plan_exactly_as_before_when_llm_jobs_share_no_quota():
    cpu = (cpu_job("resnet", 20.0), cpu_job("bert", 8.0))
    cpu_quota = Quota(name="cpu", namespace="cpu", hard={"cpu": 10})
    alone = solve(Problem(jobs=cpu, quotas=(cpu_quota,)))
    gpu_quota = Quota(name="gpu", namespace="gpu", hard={"requests.nvidia.com/gpu": 4})
    mixed = solve(Problem(jobs=(llm_job("chat", 9.0), *cpu), quotas=(cpu_quota, gpu_quota)))
    assert mixed.replicas[1:].tolist() == alone.replicas.tolist()
    assert mixed.utility[1:] == pytest.approx(alone.utility, abs=1e-12)


def test_penalty_objectives_admit_less_of_an_llm_job_the_gpus_cannot_carry():
    problem = Problem(jobs=(llm_job("chat", 9.5, current=2, max_replicas=2),), objective="penaltysum")  # u ≈ 1
    result = solve(problem)
    assert result.admission[0] < 1.0
    assert result.utility[0] > solve(Problem(jobs=problem.jobs, objective="sum")).utility[0]


def test_cvxpy_and_cobyla_handle_llm_jobs():
    jobs = (llm_job("chat", 9.0, current=2), cpu_job("resnet", 20.0))
    problem = Problem(jobs=jobs, quotas=(Quota(name="cap", hard={"cpu": 8, "nvidia.com/gpu": 3}),))
    for solver in ("cvxpy", "cobyla"):
        result = solve(problem, solver=solver)
        assert result.ok and problem.constraints().satisfied(result.replicas)


def random_llm_jobs(n, seed, horizon):
    """Varied engines, mixes, SLOs, loads (some idle steps) and current counts."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        engine = EngineProfile(
            step_base_ms=float(rng.uniform(8, 35)), decode_ms_per_seq=float(rng.uniform(0.1, 0.6)),
            prefill_ms_per_token=float(rng.uniform(0.03, 0.25)), kv_cache_tokens=int(rng.integers(60_000, 400_000)),
            max_num_seqs=int(rng.choice([64, 256])), max_num_batched_tokens=int(rng.choice([2048, 8192])),
            gpus=float(rng.choice([1, 2])), model_load_s=float(rng.uniform(30, 240)),
        )
        size = int(rng.choice([1, 40, 256]))
        mix = TokenMix(np.clip(rng.lognormal(np.log(rng.uniform(200, 2000)), 0.7, size), 1, 16_000),
                       np.clip(rng.lognormal(np.log(rng.uniform(2, 300)), 0.8, size), 1, 4000))
        slo = LLMSLO(ttft_ms=float(rng.uniform(500, 5000)) if i % 5 else None, itl_ms=float(rng.uniform(100, 800)))
        rates = np.clip(rng.uniform(0.2, 20.0) * rng.normal(1.0, 0.3, horizon), 0.0, None) * (rng.random(horizon) > 0.1)
        jobs.append(Job.for_llm(f"j{i}", llm=LLMSpec(slo, engine), token_mix=mix, rate_rps=tuple(rates.tolist()),
                                current_replicas=int(rng.integers(0, 5)), max_replicas=24))
    return jobs


@pytest.mark.parametrize(("seed", "horizon"), [(0, 7), (1, 12), (2, 1)])
def test_the_pruned_admission_search_picks_what_trying_every_rate_at_every_count_picks(seed, horizon):
    jobs = random_llm_jobs(60, seed, horizon)
    cfg = ModelConfig(rho_max=0.9 if seed else 0.95, alpha=1.0 + seed)
    llm = LLMJobs.of(jobs, cfg)
    rates = np.array([j.rate_rps for j in jobs])
    counts = np.arange(0, 24)
    current = np.array([j.current_replicas for j in jobs])
    full = llm_horizon_utility(llm, rates, counts, current, config=cfg)
    fast = llm_best_admission(llm, rates, counts, current, full)
    util, ttft, itl, adm = full.utility, full.ttft_ms, full.itl_ms, np.ones(full.utility.shape)
    for d in ADMISSION_GRID[1:]:  # the definition: every rate at every count, in grid order
        h = llm_horizon_utility(llm, rates, counts, current, config=cfg, admission=d)
        u_d = h.utility * (1.0 - drop_penalty(1.0 - d))
        better = u_d > util + ADMISSION_MIN_GAIN
        util, adm = np.where(better, u_d, util), np.where(better, d, adm)
        ttft, itl = np.where(better, h.ttft_ms, ttft), np.where(better, h.itl_ms, itl)
    assert (adm < 1).sum() > 20 and len(np.unique(adm)) > 8  # the search has something to find
    np.testing.assert_array_equal(fast.admission, adm)
    np.testing.assert_allclose(fast.utility, util, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.ttft_ms, ttft, rtol=1e-12)
    np.testing.assert_allclose(fast.itl_ms, itl, rtol=1e-12)

"""The continuous-batching latency model: capacity limits, monotonicity, idle values, shapes, extrapolation."""

import numpy as np
import pytest
from faro.optimizer.model.llm_latency import (
    ATOM_LEVELS,
    U_GRID,
    U_MAX,
    LLMCurves,
    capacity_rps,
    llm_latency_ms,
    llm_predict,
    overload_factor,
    overload_load,
    token_summaries,
)
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from faro.optimizer.model.llm_utility import cached_curves


def profile(**kw):
    base = dict(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1, kv_cache_tokens=400_000,
                max_num_seqs=128, max_num_batched_tokens=4096)
    base.update(kw)
    return EngineProfile(**base)


def chat_mix(n=400, seed=3):
    rng = np.random.default_rng(seed)
    return TokenMix(np.minimum(rng.lognormal(6.8, 0.7, n), 8000), np.maximum(1, rng.lognormal(4.7, 0.9, n)))


def test_capacity_is_bound_by_the_tightest_limit_and_kv_binds_before_max_num_seqs():
    mix = TokenMix.fixed(1000, 200)
    roomy = LLMCurves.build([profile(max_num_seqs=64)], [mix])
    assert roomy.binding == ("max_num_seqs",)
    # a running request holds ~1,100 KV tokens: a 10k-token cache runs out at ~9 of them, not 64
    tight = LLMCurves.build([profile(max_num_seqs=64, kv_cache_tokens=10_000)], [mix])
    assert tight.binding == ("kv_cache_tokens",)
    assert tight.capacity_rps[0] < 0.5 * roomy.capacity_rps[0]
    # long prompts, one output token: the per-step token budget binds
    budget = LLMCurves.build([profile(max_num_batched_tokens=2048)], [TokenMix.fixed(3000, 2)])
    assert budget.binding == ("max_num_batched_tokens",)


def test_capacity_matches_the_fluid_limit_for_a_fixed_mix():
    # decode-only requests, slots bind: Λ = S/m arrivals per step, step = a + β + Λ·w
    prof = profile(prefill_ms_per_token=0.0, max_num_seqs=32)
    mix = TokenMix.fixed(10, 101)
    m = 100 + 1
    arrivals = 32 / m
    work = 0.25 * 100
    expected = arrivals / (15.0 + 0.25 + arrivals * work) * 1000
    assert capacity_rps(prof, mix) == pytest.approx(expected, rel=1e-9)


def test_idle_latencies_are_one_prefill_step_and_one_decode_step():
    prof = profile()
    ttft, itl = llm_latency_ms(prof, TokenMix.fixed(2000, 50), 0.0)
    assert ttft == pytest.approx(15.0 + 0.25 + 0.1 * 2000)
    assert itl == pytest.approx(15.0 + 0.25)


def test_latency_rises_with_load_and_falls_with_replicas():
    prof, mix = profile(), chat_mix()
    cap = capacity_rps(prof, mix)
    rates = np.linspace(0, 1.2 * cap, 40)
    ttft, itl = llm_latency_ms(prof, mix, rates, 1)
    assert np.all(np.diff(ttft) >= -1e-9) and np.all(np.diff(itl) >= -1e-9)
    assert ttft[-1] > 3 * ttft[0]
    reps = np.arange(1, 9)
    ttft_c, itl_c = llm_latency_ms(prof, mix, 3 * cap, reps)
    assert np.all(np.diff(ttft_c) <= 1e-9) and np.all(np.diff(itl_c) <= 1e-9)


def test_curves_are_vectorised_over_jobs_steps_and_counts():
    curves = LLMCurves.build([profile(), profile(max_num_seqs=32)], [chat_mix(), TokenMix.fixed(500, 20)], [99.0, 90.0])
    rates = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])[:, :, None]  # (J, H, 1)
    counts = np.array([[1, 2], [1, 3]])[:, None, :]  # (J, 1, X)
    ttft, itl = curves.latency_ms(rates, counts)
    assert ttft.shape == itl.shape == (2, 3, 2)
    one, _ = llm_latency_ms(profile(max_num_seqs=32), TokenMix.fixed(500, 20), 5.0, 3, percentile=90.0)
    assert ttft[1, 1, 1] == pytest.approx(float(one))


def test_no_replicas_under_load_is_infinite_and_no_load_is_the_idle_value():
    ttft, itl = llm_latency_ms(profile(), chat_mix(), [0.0, 1.0], 0)
    assert np.isfinite(ttft[0]) and ttft[1] == np.inf and itl[1] == np.inf


def test_beyond_u_max_latency_doubles_per_five_points_then_grows_in_proportion_to_load():
    prof, mix = profile(), chat_mix()
    cap = capacity_rps(prof, mix)
    at, _ = llm_latency_ms(prof, mix, U_MAX * cap)
    full, _ = llm_latency_ms(prof, mix, (U_MAX + 0.05) * cap)
    knee, _ = llm_latency_ms(prof, mix, (U_MAX + 0.15) * cap)
    double, _ = llm_latency_ms(prof, mix, 2 * (U_MAX + 0.15) * cap)
    assert full == pytest.approx(2 * at, rel=1e-9)
    assert knee == pytest.approx(8 * at, rel=1e-9)
    assert double == pytest.approx(16 * at, rel=1e-9)
    growth = np.array([1.0, 2.0, 8.0, 16.0])
    assert overload_load(growth, U_MAX) == pytest.approx([U_MAX, U_MAX + 0.05, U_MAX + 0.15, 2 * (U_MAX + 0.15)])
    u = np.linspace(0.5, 3.0, 101)
    assert overload_load(overload_factor(u, U_MAX), U_MAX)[u > U_MAX] == pytest.approx(u[u > U_MAX])


def test_single_token_outputs_have_no_itl():
    _, itl = llm_latency_ms(profile(), TokenMix.fixed(800, 1), [0.5, 2.0])
    assert np.all(itl == 0)


def test_a_higher_percentile_is_never_below_a_lower_one():
    prof, mix = profile(), chat_mix()
    c = LLMCurves.build([prof, prof], [mix, mix], [90.0, 99.0])
    assert np.all(c.ttft_ms[1] >= c.ttft_ms[0] - 1e-9) and np.all(c.itl_ms[1] >= c.itl_ms[0] - 1e-9)
    assert c.ttft_ms.shape == (2, U_GRID.size)


def test_tpot_is_a_mean_gap_never_above_the_per_gap_itl_and_rising_with_load():
    prof, mix = profile(), chat_mix()
    cap = capacity_rps(prof, mix)
    pred = llm_predict(prof, mix, np.linspace(0.0, 0.95 * cap, 12))
    assert np.all(pred.tpot_ms <= pred.itl_ms + 1e-9)
    assert np.all(np.diff(pred.tpot_ms) >= -1e-9)
    assert pred.tpot_ms[0] >= prof.step_base_ms + prof.decode_ms_per_seq - 1e-9
    mid = llm_predict(prof, mix, 0.5 * cap)
    assert mid.itl_ms > 2 * mid.tpot_ms  # one long step among a request's many gaps barely moves their mean


def test_mixes_summarised_together_match_each_summarised_alone():
    rng = np.random.default_rng(7)
    sizes = [1, 256, 40, 256, 3, 40] * 50  # more than one block of mixes, sizes mixed within each
    samples = [(rng.lognormal(6.0, 0.8, n), np.maximum(1, rng.lognormal(4.0, 1.0, n))) for n in sizes]
    together = token_summaries([TokenMix(p, o) for p, o in samples])
    for (p, o), summary in zip(samples, together, strict=True):
        alone = token_summaries([TokenMix(p, o)])[0]
        assert np.array_equal(summary.prompt, alone.prompt) and np.array_equal(summary.output, alone.output)
        assert summary.prompt == pytest.approx(np.quantile(p, ATOM_LEVELS), rel=1e-12)
        assert summary.mean_prompt == pytest.approx(p.mean(), rel=1e-12)
        assert summary.decode_kv2 == pytest.approx(((o - 1) * (p + o / 2) ** 2).mean(), rel=1e-12)


def test_curves_cached_on_their_mixes_are_the_curves_built_at_once():
    profiles = [profile(), profile(max_num_seqs=64), profile(kv_cache_tokens=80_000)]
    mixes = [chat_mix(seed=s) for s in range(3)]
    built = LLMCurves.build(profiles, mixes, [99.0, 95.0, 99.0])
    cached_curves(profiles[1:2], [chat_mix(seed=1)], [95.0])  # another mix object: no effect on these
    cached_curves(profiles[1:2], mixes[1:2], [95.0])  # the middle row cached before the others
    cached = cached_curves(profiles, mixes, [99.0, 95.0, 99.0])
    for name in ("capacity_rps", "ttft_ms", "itl_ms", "has_itl", "tpot_ms"):
        assert np.array_equal(getattr(cached, name), getattr(built, name))
    assert cached.binding == built.binding
    assert np.array_equal(cached.take([2, 0]).tpot_ms, built.tpot_ms[[2, 0]])
    assert cached_curves(profiles, mixes, [99.0, 95.0, 99.0]).ttft_ms.shape == (3, U_GRID.size)
    fresh = [chat_mix(seed=s) for s in range(3)]
    assert cached_curves(profiles, fresh, [99.0, 95.0, 99.0]) is cached_curves(profiles, fresh, [99.0, 95.0, 99.0])

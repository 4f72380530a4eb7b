"""The latency model against the token-level simulator (vLLM V1's scheduler) on a small grid of loads,
batch limits and token mixes; the full grid and its numbers are ``bench/llm_model.py``."""

import numpy as np
import pytest
from faro.optimizer.model.llm_latency import capacity_rps, llm_predict
from faro.optimizer.model.llm_profile import EngineProfile, TokenMix
from faro.optimizer.sim.llm.engine import simulate_replica

PROFILES = {
    "8b-s128-b4096": EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                                   kv_cache_tokens=400_000, max_num_seqs=128, max_num_batched_tokens=4096),
    "small-s256-b2048": EngineProfile(step_base_ms=6.0, decode_ms_per_seq=0.08, prefill_ms_per_token=0.03,
                                      kv_cache_tokens=300_000, max_num_seqs=256, max_num_batched_tokens=2048),
}


def mix(kind: str) -> TokenMix:
    rng = np.random.default_rng(11)
    if kind == "chat":  # long answers: decode-heavy
        return TokenMix(np.clip(rng.lognormal(np.log(1000), 0.6, 2000), 1, 16_000).round(),
                        np.clip(rng.lognormal(np.log(130), 0.65, 2000), 1, 4000).round())
    return TokenMix(np.clip(rng.lognormal(np.log(1500), 0.7, 2000), 1, 16_000).round(),  # code: prefill-heavy
                    np.clip(rng.lognormal(np.log(13), 1.2, 2000), 1, 4000).round())


def simulated_p99(profile: EngineProfile, m: TokenMix, rate_rps: float, *, requests: int = 3000) -> dict:
    """p99s averaged over three seeded runs: one run's TTFT p99 at 80% load swings by ±25% with the seed."""
    out: dict[str, list[float]] = {"ttft": [], "tpot": [], "itl": []}
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, requests))
        pick = rng.integers(0, m.prompt_tokens.size, requests)
        run = simulate_replica(profile, arrivals, m.prompt_tokens[pick], m.output_tokens[pick])
        warm = arrivals > 0.1 * arrivals[-1]
        out["ttft"].append(float(np.percentile(run.ttft_ms[warm & np.isfinite(run.ttft_ms)], 99)))
        out["tpot"].append(float(np.percentile(run.tpot_ms[warm & np.isfinite(run.tpot_ms)], 99)))
        out["itl"].append(run.itl_percentile_ms(99.0))
    return {k: float(np.mean(v)) for k, v in out.items()}


GRID = [pytest.param(p, k, u, id=f"{p}-{k}-u{u}") for p in PROFILES for k in ("chat", "code") for u in (0.3, 0.6, 0.8)]


@pytest.mark.parametrize(("profile", "kind", "load"), GRID)
def test_model_p99s_are_within_the_stated_bound_of_the_simulator_below_90_percent_load(profile, kind, load):
    prof, m = PROFILES[profile], mix(kind)
    rate = load * capacity_rps(prof, m)
    sim = simulated_p99(prof, m, rate)
    pred = llm_predict(prof, m, rate)
    # bench/llm_model.py below 90% load: TTFT within 20% at 94% of the points (worst -48%/-35% at the slot/KV
    # cliffs, +21% for a prefill-heavy mix at 80% load), TPOT within 20% at 96%, ITL at every point.
    # Measured on this grid: TTFT -4%…+31% (code at 80%), TPOT -11%…+10%, ITL -9%…+12%.
    assert pred.ttft_ms == pytest.approx(sim["ttft"], rel=0.35)
    assert pred.tpot_ms == pytest.approx(sim["tpot"], rel=0.2)
    assert pred.itl_ms == pytest.approx(sim["itl"], rel=0.2)


def test_a_kv_bound_job_saturates_before_max_num_seqs_says_in_the_model_and_in_the_simulator():
    roomy = EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                          kv_cache_tokens=1_000_000, max_num_seqs=128, max_num_batched_tokens=4096)
    tight = EngineProfile(step_base_ms=15.0, decode_ms_per_seq=0.25, prefill_ms_per_token=0.1,
                          kv_cache_tokens=40_000, max_num_seqs=128, max_num_batched_tokens=4096)
    m = mix("chat")
    cap_roomy, cap_tight = capacity_rps(roomy, m), capacity_rps(tight, m)
    assert cap_tight < 0.75 * cap_roomy
    # at the tight replica's modelled capacity the roomy one is comfortable, the tight one is not
    loose, full = simulated_p99(roomy, m, 0.9 * cap_tight), simulated_p99(tight, m, 0.9 * cap_tight)
    assert full["ttft"] > 2 * loose["ttft"]
    # and below it the tight one still serves
    easy = simulated_p99(tight, m, 0.5 * cap_tight)
    assert easy["ttft"] < 2 * loose["ttft"]

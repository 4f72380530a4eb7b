"""The single-replica LLM engine: hand-computed vLLM V1 schedules, jumps equal to stepping, conservation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.model.llm_profile import EngineProfile
from faro.optimizer.sim.llm.engine import simulate_replica, weighted_percentile

# Round numbers: a step takes 10 ms + 1 ms per decoding request + 0.1 ms per prefill token.
HAND = {"step_base_ms": 10.0, "decode_ms_per_seq": 1.0, "prefill_ms_per_token": 0.1, "block_size_tokens": 4}


def _sched(run):
    return [(r.start_us, r.duration_us, list(r.scheduled), list(r.preempted)) for r in run.records]


@pytest.mark.parametrize("reference", [False, True], ids=["lazy-decoders", "request-by-request"])
def test_chunked_prefill_and_max_num_seqs_follow_the_hand_computed_schedule(reference):
    # 4 blocks of 4 tokens, at most 2 running requests, 6 tokens per step. A=0, B=1 arrive at 0; C=2 at 5 ms.
    profile = EngineProfile(**HAND, kv_cache_tokens=16, max_num_seqs=2, max_num_batched_tokens=6)
    run = simulate_replica(
        profile, [0.0, 0.0, 0.005], [5, 3, 2], [3, 4, 2], skip=False, reference=reference, record_steps=True
    )
    assert _sched(run) == [
        # A's whole prompt (5) and a 1-token chunk of B's fill the budget: 10 + 0.1·6 = 10.6 ms
        (0, 10_600, [(0, 5), (1, 1)], []),
        # A decodes (its first token came at 10.6 ms), B's last 2 prompt tokens; C waits (2 running)
        (10_600, 11_200, [(0, 1), (1, 2)], []),
        (21_800, 12_000, [(0, 1), (1, 1)], []),  # two decodes; A emits its 3rd and last token
        (33_800, 11_200, [(1, 1), (2, 2)], []),  # B decodes, C is admitted and prefilled
        (45_000, 12_000, [(1, 1), (2, 1)], []),  # both finish
    ]
    np.testing.assert_allclose(run.ttft_ms, [10.6, 21.8, 40.0])
    np.testing.assert_allclose(run.finish_s, [0.0338, 0.057, 0.057])
    np.testing.assert_allclose(run.tpot_ms, [(33.8 - 10.6) / 2, (57.0 - 21.8) / 3, 12.0])
    gaps = Counter()
    for g, c in zip(run.itl_gap_ms, run.itl_count, strict=True):
        gaps[round(g, 3)] += int(c)
    assert gaps == {11.2: 2, 12.0: 4}  # A: 11.2, 12; B: 12, 11.2, 12; C: 12


@pytest.mark.parametrize("reference", [False, True], ids=["lazy-decoders", "request-by-request"])
def test_kv_exhaustion_preempts_the_latest_running_request_and_blocks_admission(reference):
    # 3 blocks of 4 tokens. A (prompt 4, 5 out) and B (prompt 3, 3 out) both arrive at 0.
    profile = EngineProfile(**HAND, kv_cache_tokens=12, max_num_seqs=4, max_num_batched_tokens=8)
    run = simulate_replica(profile, [0.0, 0.0], [4, 3], [5, 3], skip=False, reference=reference, record_steps=True)
    assert _sched(run) == [
        (0, 10_700, [(0, 4), (1, 3)], []),  # both prefilled (1 block each), both emit their first token
        (10_700, 12_000, [(0, 1), (1, 1)], []),  # A's 5th token takes the last free block
        # B's 5th token needs a block: B, the latest admitted, is preempted (recompute) and nothing is admitted
        (22_700, 11_000, [(0, 1)], [1]),
        (33_700, 11_000, [(0, 1)], []),  # B needs 2 blocks for its 3 prompt + 2 generated tokens; 1 is free
        (44_700, 11_000, [(0, 1)], []),  # A finishes and frees 2 blocks
        (55_700, 10_500, [(1, 5)], []),  # B recomputes 5 tokens and emits its 3rd and last token
    ]
    np.testing.assert_allclose(run.ttft_ms, [10.7, 10.7])
    np.testing.assert_allclose(run.finish_s, [0.0557, 0.0662])
    assert run.preemptions.tolist() == [0, 1]
    gaps = sorted(g for g, c in zip(run.itl_gap_ms, run.itl_count, strict=True) for _ in range(int(c)))
    np.testing.assert_allclose(gaps, [11.0, 11.0, 11.0, 12.0, 12.0, 43.5])
    assert run.kv_peak_blocks == 3


def _random_case(seed: int, *, context_ms: float, kv_tokens: int, n: int = 400):
    rng = np.random.default_rng(seed)
    profile = EngineProfile(
        step_base_ms=6.5, decode_ms_per_seq=0.031, prefill_ms_per_token=0.027, context_ms_per_token=context_ms,
        kv_cache_tokens=kv_tokens, max_num_seqs=24, max_num_batched_tokens=512, block_size_tokens=16,
    )
    arrivals = np.cumsum(rng.exponential(0.25, n))
    prompt = rng.integers(1, 1500, n)
    output = rng.integers(1, 400, n)
    return profile, arrivals, prompt, output


def _itl_histogram(run) -> Counter:
    out: Counter = Counter()
    for b, g, c in zip(run.itl_bucket, run.itl_gap_ms, run.itl_count, strict=True):
        out[(int(b), float(g))] += int(c)
    return out


@pytest.mark.parametrize(
    ("context_ms", "kv_tokens"),
    [
        pytest.param(0.0, 400_000, id="constant-steps"),
        pytest.param(6e-5, 400_000, id="context-growing-steps"),
        pytest.param(6e-5, 6_000, id="kv-bound-with-preemptions"),
    ],
)
def test_jumps_and_lazy_decoders_equal_vllms_loop_step_by_step_request_by_request(context_ms, kv_tokens):
    profile, arrivals, prompt, output = _random_case(3, context_ms=context_ms, kv_tokens=kv_tokens)
    reference = simulate_replica(profile, arrivals, prompt, output, reference=True)
    for run in (
        simulate_replica(profile, arrivals, prompt, output, skip=False),
        simulate_replica(profile, arrivals, prompt, output, skip=True),
    ):
        assert run.steps == reference.steps
        np.testing.assert_array_equal(run.ttft_ms, reference.ttft_ms)
        np.testing.assert_array_equal(run.finish_s, reference.finish_s)
        np.testing.assert_array_equal(run.tpot_ms, reference.tpot_ms)
        np.testing.assert_array_equal(run.preemptions, reference.preemptions)
        assert _itl_histogram(run) == _itl_histogram(reference)
        assert run.kv_peak_blocks == reference.kv_peak_blocks
    if kv_tokens < 10_000:
        assert reference.preemptions.sum() > 0  # the case exercises preemption


def test_every_request_emits_exactly_its_output_tokens():
    profile, arrivals, prompt, output = _random_case(5, context_ms=6e-5, kv_tokens=6_000)
    output[7] = 6_000  # cannot fit the KV cache: refused
    run = simulate_replica(profile, arrivals, prompt, output)
    refused = np.isinf(run.ttft_ms)
    assert refused.tolist() == [i == 7 for i in range(len(output))]
    assert np.all(np.isfinite(run.finish_s[~refused]))
    # tokens: one first token per served request plus its gaps
    assert int(run.itl_count.sum()) + int((~refused).sum()) == int(output[~refused].sum())
    # nobody gets a token before its prompt is prefilled alone: 6.5 ms + 0.027 ms per prompt token
    alone_ms = 6.5 + 0.027 * np.minimum(prompt, 512)
    assert np.all(run.ttft_ms[~refused] >= alone_ms[~refused] - 1e-9)


def test_until_stops_the_replica_mid_trace():
    profile, arrivals, prompt, output = _random_case(1, context_ms=0.0, kv_tokens=400_000, n=100)
    run = simulate_replica(profile, arrivals, prompt, output, until_s=float(arrivals[50]))
    assert np.all(np.isinf(run.ttft_ms[50:]))
    assert np.isfinite(run.ttft_ms[:40]).all()


def test_bad_requests_are_named():
    profile = EngineProfile(**HAND, kv_cache_tokens=16)
    with pytest.raises(InvalidInputError, match="sorted"):
        simulate_replica(profile, [1.0, 0.5], [1, 1], [1, 1])
    with pytest.raises(InvalidInputError, match="differ in length"):
        simulate_replica(profile, [0.0], [1, 1], [1])


def test_weighted_percentile_matches_repeating_the_values():
    values, weights = np.array([5.0, 1.0, 3.0, 9.0]), np.array([2, 7, 0, 1])
    for q in (1, 50, 77.7, 99, 100):
        expected = np.percentile(np.repeat(values, weights), q, method="inverted_cdf")
        assert weighted_percentile(values, weights, q) == expected

"""Engine-profile calibration (``optimizer/model/profile_fit.py``) and vLLM token mixes, on synthetic windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faro.optimizer.metrics.base import DeploymentRef
from faro.optimizer.metrics.vllm import Calibrator, kv_cache_tokens, token_mix
from faro.optimizer.model.llm_profile import EngineProfile
from faro.optimizer.model.profile_fit import StepWindows, calibrated_profile, fit_step_profile

TRUE = {"step_base_ms": 12.0, "decode_ms_per_seq": 2.5, "prefill_ms_per_token": 0.2}
BUDGET = 512


def windows(*, n: int = 30, noise: float = 0.03, outliers: int = 0, batch=None, seed: int = 0,
            kv_cache_tokens: int | None = None, true: dict | None = None) -> StepWindows:
    """Windows a replica with the TRUE profile would produce: ITL and prefill means per the step model.
    ``batch``: None = spread over 0.5-8, a number = that batch in every window, (low, high) = uniform."""
    rng = np.random.default_rng(seed)
    a, b, c = (true or TRUE).values()
    if batch is None:
        batch = rng.uniform(0.5, 8.0, n)
    elif isinstance(batch, tuple):
        batch = rng.uniform(*batch, n)
    else:
        batch = np.full(n, float(batch))
    p_step = rng.uniform(0.0, 30.0, n)
    prompt = rng.choice([32.0, 64.0, 200.0, 400.0, 900.0], n)
    itl = (a + b * batch + c * p_step) * (1 + noise * rng.standard_normal(n))
    chunks = np.ceil(prompt / BUDGET)
    prefill = (chunks * (a + b * batch) + c * prompt) * (1 + noise * rng.standard_normal(n))
    for i in rng.choice(n, outliers, replace=False):
        itl[i] *= 4.0  # a window where a neighbour took the CPU
        prefill[i] *= 3.0
    return StepWindows(itl_ms=itl, itl_tokens=rng.uniform(100, 2000, n), batch=batch, prefill_per_step=p_step,
                       prefill_ms=prefill, prefill_requests=rng.uniform(3, 40, n), prompt_tokens=prompt,
                       ttft_ms=prefill + 40.0, queue_ms=np.zeros(n), kv_cache_tokens=kv_cache_tokens)


def assert_true_profile(fit, rel: float) -> None:
    assert fit.ok, fit
    for name, value in TRUE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=rel), name


def test_clean_windows_give_back_the_step_model() -> None:
    fit = fit_step_profile(windows(noise=0.0), max_num_batched_tokens=BUDGET)
    assert_true_profile(fit, rel=1e-3)
    assert fit.error < 1e-3 and fit.itl_rows == 30 and fit.prefill_rows == 30
    assert fit.ttft_overhead_ms == pytest.approx(40.0)


def test_noisy_windows_give_the_step_model_within_a_few_percent() -> None:
    fit = fit_step_profile(windows(noise=0.05), max_num_batched_tokens=BUDGET)
    assert_true_profile(fit, rel=0.1)
    assert 0.02 < fit.error < 0.08  # the noise level shows as the fit error


def test_outlier_windows_are_down_weighted_not_fitted() -> None:
    fit = fit_step_profile(windows(noise=0.03, outliers=4), max_num_batched_tokens=BUDGET)
    assert_true_profile(fit, rel=0.12)


def test_without_robust_loss_the_same_outliers_would_bias_the_fit() -> None:
    """The guard above means something: a plain least-squares line through the ITL rows is far off."""
    w = windows(noise=0.03, outliers=4)
    x = np.column_stack([np.ones(w.size), w.batch, w.prefill_per_step])
    plain = np.linalg.lstsq(x, w.itl_ms, rcond=None)[0]
    assert abs(plain[0] - TRUE["step_base_ms"]) / TRUE["step_base_ms"] > 0.2


def test_a_batch_that_never_changed_keeps_the_prior_decode_cost() -> None:
    prior = EngineProfile(step_base_ms=10.0, decode_ms_per_seq=3.0, prefill_ms_per_token=0.25, kv_cache_tokens=8192)
    fit = fit_step_profile(windows(batch=4.0, noise=0.01), max_num_batched_tokens=BUDGET, prior=prior)
    assert fit.ok
    # a + 4b is what the windows pin down; b stays near the prior rather than anywhere on that line.
    assert fit.step_base_ms + 4 * fit.decode_ms_per_seq == pytest.approx(12.0 + 4 * 2.5, rel=0.03)
    assert fit.decode_ms_per_seq == pytest.approx(3.0, rel=0.2)


def test_a_spread_of_batch_sizes_identifies_the_per_sequence_cost() -> None:
    fit = fit_step_profile(windows(noise=0.05), max_num_batched_tokens=BUDGET)
    assert fit.decode_identified and fit.decode_se_ms < 0.2 * fit.decode_ms_per_seq, fit
    assert fit.batch_range[0] < 1 and fit.batch_range[1] > 7
    assert "identifies" in fit.summary


@pytest.mark.parametrize("seed", range(5))
def test_a_first_fit_at_a_steady_light_load_puts_the_step_in_the_intercept(seed: int) -> None:
    """Batch 1.0-1.3 in every window (a light load), 10 % noise, no prior: the rows fix a + b·n̄ but not
    the split. A free fit may land anywhere on that line (e.g. 0 + 20·n); the fit must not claim a
    per-sequence cost it cannot see, and must still reproduce the step it saw."""
    w = windows(batch=(1.0, 1.3), noise=0.10, seed=seed)
    fit = fit_step_profile(w, max_num_batched_tokens=BUDGET)
    assert fit.ok and not fit.decode_identified, fit
    assert fit.decode_ms_per_seq == 0.0
    seen = TRUE["step_base_ms"] + TRUE["decode_ms_per_seq"] * 1.15
    assert fit.step_base_ms == pytest.approx(seen, rel=0.1)  # the step at the batch it saw
    assert fit.prefill_ms_per_token == pytest.approx(TRUE["prefill_ms_per_token"], rel=0.25)
    assert "held at 0 ms" in fit.summary and "does not identify" in fit.summary
    # At 8 sequences it is off by the unseen slope, not by a factor (the free fit's failure mode).
    at8 = fit.step_base_ms + 8 * fit.decode_ms_per_seq
    assert 0.4 < at8 / (TRUE["step_base_ms"] + 8 * TRUE["decode_ms_per_seq"]) < 1.0


def test_a_steady_batch_with_a_prior_holds_the_prior_s_per_sequence_cost_exactly() -> None:
    prior = EngineProfile(step_base_ms=10.0, decode_ms_per_seq=3.0, prefill_ms_per_token=0.25, kv_cache_tokens=8192)
    fit = fit_step_profile(windows(batch=(3.9, 4.1), noise=0.08), max_num_batched_tokens=BUDGET, prior=prior)
    assert fit.ok and not fit.decode_identified and fit.decode_ms_per_seq == 3.0
    assert fit.step_base_ms + 4 * fit.decode_ms_per_seq == pytest.approx(12.0 + 4 * 2.5, rel=0.05)


def test_a_per_sequence_cost_known_to_be_negligible_is_identified_as_such() -> None:
    """A GPU-like engine: the step hardly grows with the batch. With the batch spread, b ≈ 0 is a finding."""
    flat = {"step_base_ms": 12.0, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.2}
    fit = fit_step_profile(windows(noise=0.03, true=flat), max_num_batched_tokens=BUDGET)
    assert fit.decode_identified and fit.decode_ms_per_seq < 0.1, fit
    assert fit.step_base_ms == pytest.approx(12.0, rel=0.05)


def test_identification_comes_with_more_batch_sizes() -> None:
    """The calibrator's first fit at a light load holds b at 0; once windows at other batch sizes arrive
    (the load rose), b is fitted — the prior (the first fit's b = 0) does not keep it there."""
    ref = DeploymentRef("llm", "chat", preset="vllm", max_num_batched_tokens=BUDGET)
    calibrator = Calibrator()
    light = windows(batch=(1.0, 1.2), noise=0.05, kv_cache_tokens=8192)
    first, fit = calibrator.update(ref, light)
    assert first is not None and not fit.decode_identified and first.decode_ms_per_seq == 0.0
    mixed = windows(batch=(1.0, 6.0), noise=0.05, seed=3, kv_cache_tokens=8192)
    later, fit = calibrator.update(ref, mixed)
    assert later is not None and fit.decode_identified, fit
    assert later.decode_ms_per_seq == pytest.approx(TRUE["decode_ms_per_seq"], rel=0.2)
    assert later.step_base_ms == pytest.approx(TRUE["step_base_ms"], rel=0.15)


@pytest.mark.parametrize(("n", "status"), [pytest.param(2, "too few windows", id="two-windows"),
                                            pytest.param(0, "too few windows", id="none")])
def test_too_few_windows_is_a_status_not_a_guess(n: int, status: str) -> None:
    fit = fit_step_profile(windows(n=n), max_num_batched_tokens=BUDGET)
    assert not fit.ok and fit.status == status and math.isnan(fit.step_base_ms)


def test_windows_without_traffic_are_not_rows() -> None:
    w = windows(n=10)
    idle = StepWindows(**{f: np.concatenate([getattr(w, f), np.full(5, np.nan)]) for f in (
        "itl_ms", "itl_tokens", "batch", "prefill_per_step", "prefill_ms", "prefill_requests", "prompt_tokens",
        "ttft_ms", "queue_ms")})
    fit = fit_step_profile(idle, max_num_batched_tokens=BUDGET)
    assert fit.ok and fit.itl_rows == 10 and fit.prefill_rows == 10


def test_the_calibrated_profile_takes_the_fit_unless_pinned() -> None:
    declared = EngineProfile(step_base_ms=30.0, decode_ms_per_seq=1.0, prefill_ms_per_token=0.5,
                             kv_cache_tokens=100_000, max_num_seqs=8, max_num_batched_tokens=BUDGET)
    fit = fit_step_profile(windows(noise=0.0, kv_cache_tokens=8192), max_num_batched_tokens=BUDGET)
    live = calibrated_profile(declared, fit)
    assert live.step_base_ms == pytest.approx(12.0) and live.kv_cache_tokens == 8192
    assert live.max_num_seqs == 8 and live.max_num_batched_tokens == BUDGET  # declared limits kept
    assert calibrated_profile(declared, fit, pin_steps=True, pin_kv=True) == declared
    assert calibrated_profile(declared, None) == declared
    failed = fit_step_profile(windows(n=1), max_num_batched_tokens=BUDGET)
    assert calibrated_profile(declared, failed) == declared


def test_the_calibrator_keeps_a_model_s_profile_through_an_idle_stretch() -> None:
    ref = DeploymentRef("llm", "chat", preset="vllm", max_num_batched_tokens=BUDGET)
    calibrator = Calibrator()
    profile, fit = calibrator.update(ref, windows(noise=0.0, kv_cache_tokens=8192))
    assert profile is not None and fit.ok and profile.kv_cache_tokens == 8192
    assert profile.step_base_ms == pytest.approx(TRUE["step_base_ms"], rel=1e-3)
    idle = windows(n=1, kv_cache_tokens=8192)  # too little traffic to fit
    assert calibrator.update(ref, idle) == (profile, fit)
    calibrator.forget_except(set())
    again, failed = calibrator.update(ref, idle)
    assert again is None and not failed.ok


def test_no_profile_without_a_kv_capacity() -> None:
    """Without vllm:cache_config_info the fit is reported but no EngineProfile is made (KV has no default)."""
    profile, fit = Calibrator().update(DeploymentRef("llm", "chat"), windows(noise=0.0))
    assert profile is None and fit.ok


# -------------------------------------------------------------------------------------- token mixes

PROMPT_BUCKETS = [(1, 0), (2, 0), (5, 0), (10, 0), (20, 0), (50, 10), (100, 40), (200, 40), (500, 40),
                  (1000, 50), (2000, 50), (math.inf, 50)]
OUTPUT_BUCKETS = [(1, 0), (2, 0), (5, 0), (10, 0), (20, 20), (50, 50), (100, 50), (math.inf, 50)]


def test_a_token_mix_from_vllm_histograms_keeps_the_exact_means_and_the_buckets() -> None:
    mix = token_mix(PROMPT_BUCKETS, OUTPUT_BUCKETS, prompt_mean=180.0, output_mean=24.0)
    assert mix is not None and mix.prompt_tokens.size == 16
    assert mix.mean_prompt_tokens == pytest.approx(180.0)
    assert mix.mean_output_tokens == pytest.approx(24.0)
    # 20% of prompts in (20, 50], 60% in (50, 100], 20% in (500, 1000]: the samples follow.
    assert np.sum(mix.prompt_tokens > 400) == pytest.approx(0.2 * 16, abs=1)
    assert mix.output_tokens.min() >= 1
    # Prompts and outputs are not paired in sorted order (histograms keep no pairing).
    assert not np.array_equal(np.argsort(mix.prompt_tokens, kind="stable"),
                              np.argsort(mix.output_tokens, kind="stable"))


def test_no_requests_in_the_window_is_no_token_mix() -> None:
    empty = [(le, 0.0) for le, _ in PROMPT_BUCKETS]
    assert token_mix(empty, OUTPUT_BUCKETS) is None
    assert token_mix([], []) is None


def test_kv_capacity_from_cache_config_labels() -> None:
    assert kv_cache_tokens([{"num_gpu_blocks": "64", "block_size": "128"}]) == 8192
    assert kv_cache_tokens([{"num_gpu_blocks": "None", "kv_cache_size_tokens": "524288"}]) == 524288
    assert kv_cache_tokens([{"num_gpu_blocks": "100", "block_size": "16"},
                            {"num_gpu_blocks": "90", "block_size": "16"}]) == 1440  # the smallest replica
    assert kv_cache_tokens([{"engine": "0"}]) is None
    assert kv_cache_tokens([]) is None


# ------------------------------------------------------------------------------- front-end TTFT overhead


def test_the_calibrated_profile_carries_the_front_end_overhead() -> None:
    ref = DeploymentRef("llm", "chat", preset="vllm", max_num_batched_tokens=BUDGET)
    profile, fit = Calibrator().update(ref, windows(noise=0.0, kv_cache_tokens=8192))
    assert fit.ttft_overhead_ms == pytest.approx(40.0)  # the windows' TTFT − queue − prefill
    assert profile is not None and profile.ttft_overhead_ms == pytest.approx(40.0)


def test_the_front_end_overhead_shifts_every_ttft_and_nothing_else() -> None:
    import dataclasses

    from faro.optimizer.model.llm_latency import llm_predict
    from faro.optimizer.model.llm_profile import TokenMix

    engine = EngineProfile(step_base_ms=8.0, decode_ms_per_seq=0.5, prefill_ms_per_token=0.1, kv_cache_tokens=8192,
                           max_num_seqs=8, max_num_batched_tokens=512)
    fronted = dataclasses.replace(engine, ttft_overhead_ms=25.0)
    mix = TokenMix(np.array([40.0, 120.0, 300.0]), np.array([20.0, 60.0, 30.0]))
    rates = np.array([0.0, 2.0, 10.0])
    for pct in (50, 90, 99):
        bare = llm_predict(engine, mix, rates, percentile=pct)
        shifted = llm_predict(fronted, mix, rates, percentile=pct)
        np.testing.assert_allclose(shifted.ttft_ms, bare.ttft_ms + 25.0, rtol=1e-9)
        np.testing.assert_allclose(shifted.itl_ms, bare.itl_ms, rtol=1e-12)


def test_an_annotation_pins_the_overhead_over_the_calibrated_one() -> None:
    from faro.optimizer.kube.annotations import llm_profile, parse_annotations

    calibrated = EngineProfile(step_base_ms=8.0, decode_ms_per_seq=0.5, prefill_ms_per_token=0.1, kv_cache_tokens=8192,
                               ttft_overhead_ms=30.0)
    settings, problems = parse_annotations({"faro.dev/slo-ttft-ms": "500"})
    assert not problems
    assert llm_profile(settings, gpus=1, calibrated=calibrated)[0].ttft_overhead_ms == 30.0
    settings, _ = parse_annotations({"faro.dev/slo-ttft-ms": "500", "faro.dev/llm-ttft-overhead-ms": "5"})
    assert llm_profile(settings, gpus=1, calibrated=calibrated)[0].ttft_overhead_ms == 5.0
    _, problems = parse_annotations({"faro.dev/slo-ttft-ms": "500", "faro.dev/llm-ttft-overhead-ms": "-1"})
    assert [p.annotation for p in problems] == ["faro.dev/llm-ttft-overhead-ms"]

"""LLM annotations: TTFT/ITL SLOs and engine-profile fields, pinned over a calibrated profile, held with a reason."""

from types import SimpleNamespace

import numpy as np
import pytest
from faro.optimizer.kube.annotations import llm_profile, parse_annotations
from faro.optimizer.kube.state import DeploymentInfo, KubeSnapshot, QuotaInfo
from faro.optimizer.model.llm_profile import EngineProfile, LLMObservation, TokenMix
from faro.optimizer.service.view import Observed, build_cycle

PROFILE = {
    "faro.dev/llm-step-base-ms": "15", "faro.dev/llm-decode-ms-per-seq": "0.25",
    "faro.dev/llm-prefill-ms-per-token": "0.1", "faro.dev/llm-kv-cache-tokens": "200000",
}
LLM = {"faro.dev/slo-ttft-ms": "2000", "faro.dev/slo-itl-ms": "150", **PROFILE}


def test_ttft_and_itl_slos_make_an_llm_deployment_with_its_pinned_profile():
    settings, problems = parse_annotations({**LLM, "faro.dev/slo-percentile": "95", "faro.dev/llm-max-num-seqs": "64",
                                            "faro.dev/llm-model-load-s": "300"})
    assert problems == []
    assert (settings.llm_slo.ttft_ms, settings.llm_slo.itl_ms, settings.llm_slo.percentile) == (2000, 150, 95)
    assert settings.slo_latency_ms == 2000  # the primary SLO, for display
    assert settings.llm_profile["max_num_seqs"] == 64 and settings.llm_profile["model_load_s"] == 300
    profile, why = llm_profile(settings, gpus=2)
    assert why == "" and profile.gpus == 2 and profile.max_num_seqs == 64 and profile.kv_cache_tokens == 200000


def test_one_slo_is_enough():
    settings, problems = parse_annotations({"faro.dev/slo-itl-ms": "80"})
    assert problems == [] and settings.llm_slo.ttft_ms is None and settings.slo_latency_ms == 80


@pytest.mark.parametrize(("annotations", "annotation", "why"), [
    pytest.param({**LLM, "faro.dev/slo-ttft-ms": "soon"}, "faro.dev/slo-ttft-ms", "not a number", id="ttft-text"),
    pytest.param({**LLM, "faro.dev/slo-itl-ms": "0"}, "faro.dev/slo-itl-ms", "> 0", id="itl-zero"),
    pytest.param({**LLM, "faro.dev/llm-max-num-seqs": "8.5"}, "faro.dev/llm-max-num-seqs", "integer", id="seqs"),
    pytest.param({**LLM, "faro.dev/llm-step-base-ms": "0"}, "faro.dev/llm-step-base-ms", "> 0", id="base-zero"),
    pytest.param({**LLM, "faro.dev/llm-max-num-seqs": "512", "faro.dev/llm-max-num-batched-tokens": "256"},
                 "faro.dev/llm-max-num-batched-tokens", "below", id="budget-below-seqs"),
    pytest.param({**LLM, "faro.dev/slo-latency-ms": "500"}, "faro.dev/slo-latency-ms", "does not apply", id="both"),
    pytest.param({"faro.dev/slo-latency-ms": "500", "faro.dev/llm-kv-cache-tokens": "1000"},
                 "faro.dev/llm-kv-cache-tokens", "LLM engine setting", id="profile-without-llm-slo"),
])
def test_an_invalid_llm_annotation_is_named_with_its_reason(annotations, annotation, why):
    settings, problems = parse_annotations(annotations)
    assert settings is None
    assert any(p.annotation == annotation and why in p.reason for p in problems), problems


def test_pinned_fields_override_the_calibrated_profile_and_missing_ones_are_named():
    settings, _ = parse_annotations({"faro.dev/slo-ttft-ms": "2000", "faro.dev/llm-max-num-seqs": "32"})
    profile, why = llm_profile(settings, gpus=1)
    assert profile is None and "faro.dev/llm-step-base-ms" in why and "faro.dev/llm-kv-cache-tokens" in why
    calibrated = EngineProfile(step_base_ms=12, decode_ms_per_seq=0.3, prefill_ms_per_token=0.08,
                               kv_cache_tokens=90_000, max_num_seqs=256, gpus=8)
    profile, why = llm_profile(settings, gpus=1, calibrated=calibrated)
    assert why == "" and profile.max_num_seqs == 32 and profile.step_base_ms == 12 and profile.gpus == 1


def deployment(name, annotations, gpus=1.0):
    return DeploymentInfo("llm", name, f"uid-{name}", {"faro.dev/metrics-preset": "generic", **annotations},
                          {"cpu": 4.0, "nvidia.com/gpu": gpus}, {}, 2, 2)


def test_the_view_plans_an_llm_deployment_with_its_spec_and_observation_and_holds_one_without_a_profile():
    mix = TokenMix.fixed(900, 120)
    metrics = SimpleNamespace(rate_history_rpm=(60.0,) * 5, latency_ms=None,
                              llm=LLMObservation(ttft_ms=800.0, itl_ms=40.0, token_mix=mix))
    snapshot = KubeSnapshot(
        deployments=(deployment("chat", LLM, gpus=2.0), deployment("bare", {"faro.dev/slo-ttft-ms": "900"})),
        quotas=(QuotaInfo("llm", "gpus", {"requests.nvidia.com/gpu": 8.0}, {"requests.nvidia.com/gpu": 4.0}),),
    )
    observed = {key: Observed(metrics, 0.0) for key in (("llm", "chat"), ("llm", "bare"))}
    cycle = build_cycle(snapshot, observed, now_s=10.0)
    (job,) = cycle.view.jobs
    assert job.spec.llm.slo.itl_ms == 150 and job.spec.llm.profile.gpus == 2.0
    assert job.spec.resources["nvidia.com/gpu"] == 2.0
    assert job.spec.processing_time_ms == pytest.approx(15 + 0.1 * 900)
    assert job.observation.llm.token_mix is mix and job.observation.llm.ttft_ms == 800.0
    (held,) = cycle.held
    assert held.info.name == "bare" and "no engine profile" in held.reason
    assert np.isclose(cycle.view.quotas[0].used["requests.nvidia.com/gpu"], 0.0)  # the planned one's 4 GPUs

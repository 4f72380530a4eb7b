"""The engine profile an LLM job is planned with is visible: plan lines (gRPC ``faro.v1.Target``) and gauges."""

from __future__ import annotations

import dataclasses

import pytest
from faro.optimizer.metrics.base import JobMetrics
from faro.optimizer.model.llm_profile import LLMSLO, EngineProfile, LLMSpec
from faro.optimizer.model.problem import SLO
from faro.optimizer.model.profile_fit import StepFit
from faro.optimizer.policy.base import JobSpec, Target
from faro.optimizer.service.loop import _llm_fields
from faro.optimizer.service.plans import PublishedPlan, from_proto, to_proto
from faro.optimizer.service.telemetry import Telemetry
from prometheus_client import CollectorRegistry

CALIBRATED = EngineProfile(step_base_ms=14.0, decode_ms_per_seq=2.0, prefill_ms_per_token=0.2, kv_cache_tokens=8192)
FIT = StepFit(14.0, 2.0, 0.2, 40.0, error=0.12, itl_error=0.1, prefill_error=0.15, itl_rows=20, prefill_rows=18)


def spec(profile: EngineProfile) -> JobSpec:
    return JobSpec(name="chat", namespace="llm", slo=SLO(500.0, 99.0), processing_time_ms=20.0,
                   llm=LLMSpec(slo=LLMSLO(ttft_ms=500.0, itl_ms=80.0), profile=profile))


@pytest.mark.parametrize(("planned", "calibrated", "source", "error"), [
    pytest.param(CALIBRATED, CALIBRATED, "calibrated", 0.12, id="calibrated"),
    pytest.param(dataclasses.replace(CALIBRATED, decode_ms_per_seq=3.0), CALIBRATED, "calibrated+pinned", 0.12,
                 id="pinned-field"),
    pytest.param(CALIBRATED, None, "declared", 0.0, id="declared"),
])
def test_a_plan_line_carries_the_profile_and_where_it_came_from(planned, calibrated, source, error) -> None:
    metrics = JobMetrics(rate_history_rpm=(60.0,), llm_profile=calibrated, llm_fit=FIT if calibrated else None)
    fields = _llm_fields(spec(planned), metrics)
    assert fields["llm_profile_source"] == source and fields["llm_profile_fit_error"] == pytest.approx(error)
    assert fields["llm_decode_ms_per_seq"] == planned.decode_ms_per_seq and fields["llm_kv_cache_tokens"] == 8192
    target = Target("llm", "chat", 2, 1, **fields)
    wire = from_proto(to_proto(PublishedPlan(generation=1, created_s=0.0, valid_until_s=1.0, targets=(target,))))
    assert wire.targets[0] == target  # every field crosses the gRPC plan


def test_other_jobs_have_no_profile_fields() -> None:
    plain = JobSpec(name="resnet", namespace="cv", slo=SLO(300.0, 99.0), processing_time_ms=100.0)
    assert _llm_fields(plain, JobMetrics(rate_history_rpm=(60.0,))) == {}


def test_the_profile_and_its_fit_error_are_gauges_until_the_deployment_goes() -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    fields = _llm_fields(spec(CALIBRATED), JobMetrics(rate_history_rpm=(60.0,), llm_profile=CALIBRATED, llm_fit=FIT))
    telemetry.set_target(Target("llm", "chat", 2, 1, **fields))
    labels = {"namespace": "llm", "deployment": "chat"}
    value = registry.get_sample_value
    assert value("faro_optimizer_llm_profile", {**labels, "parameter": "decode_ms_per_seq"}) == 2.0
    assert value("faro_optimizer_llm_profile", {**labels, "parameter": "kv_cache_tokens"}) == 8192
    assert value("faro_optimizer_llm_profile_fit_error", labels) == pytest.approx(0.12)
    telemetry.forget_deployments(set())
    assert value("faro_optimizer_llm_profile_fit_error", labels) is None
    assert value("faro_optimizer_llm_profile", {**labels, "parameter": "step_base_ms"}) is None

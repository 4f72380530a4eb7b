"""The faro.dev annotation schema: defaults, and every invalid value named with its reason."""

import pytest
from faro.optimizer.kube.annotations import parse_annotations

OK = {"faro.dev/slo-latency-ms": "250"}


def test_defaults_fill_everything_but_the_required_slo():
    settings, problems = parse_annotations(OK, namespace="ns", name="d")
    assert problems == []
    assert (settings.slo_latency_ms, settings.slo_percentile, settings.weight) == (250.0, 99.0, 1.0)
    assert settings.processing_time_ms is None and settings.min_replicas is None and settings.max_replicas is None
    assert settings.ref.key == ("ns", "d") and settings.ref.preset == "generic"


def test_every_annotation_is_read():
    settings, problems = parse_annotations({**OK, "faro.dev/slo-percentile": "95", "faro.dev/processing-time-ms": "80",
                                            "faro.dev/weight": "2", "faro.dev/min-replicas": "2",
                                            "faro.dev/max-replicas": "9", "faro.dev/metrics-preset": "ray-serve",
                                            "faro.dev/promql-rate": "sum(rate(x[1m]))"})
    assert problems == []
    assert (settings.slo_percentile, settings.processing_time_ms, settings.weight) == (95.0, 80.0, 2.0)
    assert (settings.min_replicas, settings.max_replicas, settings.metrics_preset) == (2, 9, "ray-serve")
    assert settings.promql == {"rate": "sum(rate(x[1m]))"}


@pytest.mark.parametrize(("annotations", "annotation", "why"), [
    pytest.param({}, "faro.dev/slo-latency-ms", "required", id="missing-slo"),
    pytest.param({"faro.dev/slo-latency-ms": "fast"}, "faro.dev/slo-latency-ms", "not a number", id="slo-not-number"),
    pytest.param({"faro.dev/slo-latency-ms": "0"}, "faro.dev/slo-latency-ms", "> 0", id="slo-zero"),
    pytest.param({**OK, "faro.dev/slo-percentile": "100"}, "faro.dev/slo-percentile", "< 100", id="percentile-100"),
    pytest.param({**OK, "faro.dev/weight": "-1"}, "faro.dev/weight", ">= 0", id="negative-weight"),
    pytest.param({**OK, "faro.dev/min-replicas": "1.5"}, "faro.dev/min-replicas", "integer", id="fractional-min"),
    pytest.param({**OK, "faro.dev/min-replicas": "5", "faro.dev/max-replicas": "2"}, "faro.dev/max-replicas",
                 "below", id="max-below-min"),
    pytest.param({**OK, "faro.dev/processing-time-ms": "nan"}, "faro.dev/processing-time-ms", "finite", id="nan"),
    pytest.param({**OK, "faro.dev/metrics-preset": "no-such-server"}, "faro.dev/metrics-preset", "unknown preset",
                 id="unknown-preset"),
    pytest.param({**OK, "faro.dev/promql-latency": " "}, "faro.dev/promql-latency", "empty", id="empty-promql"),
])
def test_an_invalid_value_is_a_problem_naming_the_annotation_and_why(annotations, annotation, why):
    settings, problems = parse_annotations(annotations)
    assert settings is None
    assert any(p.annotation == annotation and why in p.reason for p in problems), problems
    assert annotation in str(problems[0]) or len(problems) > 1

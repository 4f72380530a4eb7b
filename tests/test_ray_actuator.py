"""The Ray Serve actuator's handling of Ray's answers, per job, with a fake transport (the real Ray Serve
contract is exercised in ``test_ray_serve_e2e.py``)."""

from __future__ import annotations

import json

import pytest
from faro.optimizer.actuate.ray_serve import RayServeActuator
from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.base import Plan, Target


class FakeRay:
    """Answers scale requests by (app, deployment); records what it was sent."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, dict]] | None = None) -> None:
        self.answers = answers or {}
        self.sent: list[tuple[str, str, int, str | None]] = []

    def __call__(self, url, body, headers, timeout_s):
        path = url.split("/api/v1/applications/", 1)[1]
        app, rest = path.split("/deployments/", 1)
        deployment = rest.removesuffix("/scale")
        self.sent.append((app, deployment, json.loads(body)["target_num_replicas"], headers.get("Authorization")))
        if (app, deployment) == ("down", "any"):
            raise ConnectionRefusedError("connection refused")
        status, answer = self.answers.get((app, deployment), (200, {"message": "Scaling request received."}))
        return status, json.dumps(answer).encode()


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def plan(*targets: tuple[str, str, int]) -> Plan:
    return Plan(targets=tuple(Target(ns, name, desired_replicas=n, current_replicas=1) for ns, name, n in targets))


def make(ray: FakeRay, clock: FakeClock | None = None, **options) -> RayServeActuator:
    return RayServeActuator("http://ray-head:8265", transport=ray, clock=clock or FakeClock(), max_workers=1, **options)


def test_each_target_is_posted_as_target_num_replicas_to_its_app_and_deployment() -> None:
    ray = FakeRay()
    errors = make(ray).apply(plan(("vision", "ResNet", 3), ("nlp", "Bert", 1)))
    assert errors == {}
    assert sorted(ray.sent) == [("nlp", "Bert", 1, None), ("vision", "ResNet", 3, None)]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        pytest.param(404, "Application or Deployment not found", "not found", id="unknown-app-404"),
        pytest.param(412, "external_scaler_enabled=false", "external_scaler_enabled: true", id="external-off-412"),
        pytest.param(503, "Serve controller is not available", "controller unavailable", id="controller-down-503"),
        pytest.param(401, "Missing authentication token", "--ray-token-file", id="unauthorised-401"),
    ],
)
def test_a_bad_answer_is_that_jobs_error_and_the_other_jobs_are_still_scaled(
    status: int, error: str, expected: str
) -> None:
    ray = FakeRay({("bad", "model"): (status, {"error": error})})
    errors = make(ray).apply(plan(("bad", "model", 2), ("good", "model", 4)))
    assert set(errors) == {("bad", "model")}
    assert expected in errors[("bad", "model")] and f"HTTP {status}" in errors[("bad", "model")]
    assert error in errors[("bad", "model")]
    assert ("good", "model", 4, None) in ray.sent


def test_an_unreachable_dashboard_is_reported_per_job_without_raising() -> None:
    ray = FakeRay()
    errors = make(ray).apply(plan(("down", "any", 2), ("up", "model", 1)))
    assert "unreachable" in errors[("down", "any")] and ("up", "model") not in errors


def test_a_failing_job_backs_off_exponentially_and_is_retried_when_due() -> None:
    ray, clock = FakeRay({("a", "m"): (503, {"error": "Internal Server Error"})}), FakeClock()
    actuator = make(ray, clock, backoff_s=5, max_backoff_s=20)

    attempts = []
    for _ in range(40):  # 40 s of 1 s plans
        before = len(ray.sent)
        errors = actuator.apply(plan(("a", "m", 2)))
        assert ("a", "m") in errors  # reported on every plan, sent or backing off
        if len(ray.sent) > before:
            attempts.append(clock.now_s - 1000.0)
        clock.now_s += 1

    assert attempts == [0, 5, 15, 35]  # back-off 5, 10, 20 (capped) s
    assert "backing off" in actuator.apply(plan(("a", "m", 2)))[("a", "m")]

    ray.answers.clear()  # Ray recovers
    clock.now_s += 20
    assert actuator.apply(plan(("a", "m", 2))) == {}


def test_an_unchanged_target_is_only_resent_after_the_resync_interval() -> None:
    ray, clock = FakeRay(), FakeClock()
    actuator = make(ray, clock, resync_s=60)
    for _ in range(3):
        actuator.apply(plan(("a", "m", 2)))
        clock.now_s += 10
    assert len(ray.sent) == 1
    actuator.apply(plan(("a", "m", 3)))
    assert len(ray.sent) == 2
    clock.now_s += 61
    actuator.apply(plan(("a", "m", 3)))
    assert len(ray.sent) == 3


def test_the_resolver_maps_keys_to_ray_names_and_none_skips_a_job() -> None:
    ray = FakeRay()
    names = {("team-a", "resnet"): ("vision", "ResNet")}
    errors = make(ray, resolve=lambda ns, name: names.get((ns, name))).apply(
        plan(("team-a", "resnet", 2), ("team-a", "hpa-scaled", 5))
    )
    assert errors == {} and ray.sent == [("vision", "ResNet", 2, None)]


def test_the_bearer_token_is_read_from_the_token_file_on_every_apply(tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    ray, clock = FakeRay(), FakeClock()
    actuator = make(ray, clock, token_file=token_file, resync_s=0.5)
    actuator.apply(plan(("a", "m", 1)))
    token_file.write_text("second")
    clock.now_s += 1
    actuator.apply(plan(("a", "m", 1)))
    assert [auth for *_rest, auth in ray.sent] == ["Bearer first", "Bearer second"]


def test_names_with_url_metacharacters_are_quoted_in_the_path() -> None:
    actuator = make(FakeRay())
    assert actuator.scale_url("my app", "a/b") == (
        "http://ray-head:8265/api/v1/applications/my%20app/deployments/a%2Fb/scale"
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"dashboard_url": "ray-head:8265"}, "--ray-dashboard-url", id="no-scheme"),
        pytest.param(
            {"dashboard_url": "http://x", "token_file": "/nonexistent/token"}, "--ray-token-file", id="no-file"
        ),
        pytest.param({"dashboard_url": "http://x", "timeout_s": 0}, "timeout_s", id="zero-timeout"),
    ],
)
def test_bad_configuration_names_the_flag(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        RayServeActuator(**kwargs)


def test_ray_names_follow_the_annotations_and_skip_jobs_that_are_not_ray_serve() -> None:
    from faro.optimizer.actuate.ray_serve import RayNames
    from faro.optimizer.metrics import DeploymentRef

    names = RayNames()
    assert names("shop", "ranker") == ("shop", "ranker")  # before the first cycle: direct-mode convention
    names.update(
        [
            DeploymentRef.from_annotations(
                "team-a", "resnet-pods", {"faro.dev/ray-app": "vision", "faro.dev/ray-deployment": "ResNet"}
            ),
            DeploymentRef("shop", "ranker", preset="ray-serve"),
            DeploymentRef("team-b", "plain-http"),
        ]
    )
    ray = FakeRay()
    errors = make(ray, resolve=names).apply(
        plan(("team-a", "resnet-pods", 3), ("shop", "ranker", 2), ("team-b", "plain-http", 4))
    )
    assert errors == {}
    assert sorted(ray.sent) == [("shop", "ranker", 2, None), ("vision", "ResNet", 3, None)]

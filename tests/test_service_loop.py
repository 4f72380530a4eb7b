"""The control loop against the test API server, one tick at a time on a fake clock: failure cases."""

import time
from itertools import pairwise

import pytest
from faro.optimizer.kube.events import EventRecorder
from faro.optimizer.kube.state import ClusterState
from faro.optimizer.policy.registry import make_policy
from faro.optimizer.service.config import ServiceConfig
from faro.optimizer.service.loop import ControlLoop
from faro.optimizer.service.plans import PlanStore
from faro.optimizer.service.telemetry import Telemetry
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client
from prometheus_client import CollectorRegistry, generate_latest
from service_fakes import FakeMetrics

ANN = {"faro.dev/slo-latency-ms": "300", "faro.dev/processing-time-ms": "100"}


class Rig:
    def __init__(self, kube_client, actuators=()):
        self.apps = client.AppsV1Api(kube_client)
        self.core = client.CoreV1Api(kube_client)
        self.hpas = client.AutoscalingV2Api(kube_client)
        self.state = ClusterState(kube_client, watch_timeout_s=30)
        self.metrics = FakeMetrics()
        self.now = [1_700_000_000.0]
        self.registry = CollectorRegistry()
        self.store = PlanStore()
        config = ServiceConfig(interval_s=60, reactive_interval_s=10, identity="test")
        self.loop = ControlLoop(config=config, policy=make_policy("faro-fairsum", interval_s=60, first_long_s=0),
                                snapshot=self.state.snapshot, metrics_source=self.metrics, store=self.store,
                                telemetry=Telemetry(self.registry), clock=lambda: self.now[0],
                                events=EventRecorder(self.core, clock=lambda: self.now[0]), actuators=actuators)

    def add(self, name, *, annotations=ANN, replicas=1, with_hpa=True):
        self.apps.create_namespaced_deployment("team-a", deployment(name, annotations=dict(annotations),
                                                                    replicas=replicas))
        if with_hpa:
            self.hpas.create_namespaced_horizontal_pod_autoscaler("team-a", hpa(name, max_replicas=50))

    def settle(self, count):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            snap = self.state.snapshot()
            if snap.synced and len(snap.deployments) == count:
                return
            time.sleep(0.05)
        raise AssertionError("cache did not settle")

    def tick(self, advance_s=60.0):
        self.now[0] += advance_s
        return self.loop.tick()


@pytest.fixture
def rig(kube_client):
    r = Rig(kube_client)
    r.state.start()
    assert r.state.wait_synced(20)
    yield r
    r.state.stop()


def test_prometheus_down_keeps_the_last_good_forecast_and_marks_it_stale(rig):
    rig.add("a")
    rig.settle(1)
    rig.metrics.set_load(("team-a", "a"), 3000)
    good = rig.tick()
    assert not good.targets[0].stale and good.targets[0].desired_replicas >= 6
    rig.metrics.down = True
    for _ in range(2):
        plan = rig.tick()
    [target] = plan.targets
    assert target.held_reason == "" and target.stale and target.observations_age_s >= 120
    assert target.desired_replicas == good.targets[0].desired_replicas
    assert target.forecast_rps == pytest.approx(good.targets[0].forecast_rps)
    assert b'faro_optimizer_observations_age_seconds{deployment="a",namespace="team-a"} 120.0' in \
        generate_latest(rig.registry)
    rig.metrics.down = False
    assert not rig.tick().targets[0].stale


def test_invalid_annotations_hold_that_deployment_with_an_event_and_plan_the_rest(rig, kubeapi):
    rig.add("good")
    rig.add("bad", annotations={"faro.dev/slo-latency-ms": "soon", "faro.dev/weight": "2"}, replicas=4)
    rig.settle(2)
    for _ in range(3):
        plan = rig.tick()
    bad, good = plan.targets
    assert bad.name == "bad" and bad.desired_replicas == 4 and "faro.dev/slo-latency-ms" in bad.held_reason
    assert good.held_reason == "" and good.desired_replicas >= 1
    warnings = [e for e in kubeapi.objects("", "events", "team-a") if e["reason"] == "FaroInvalidSLO"]
    assert len(warnings) == 1 and warnings[0]["involvedObject"]["name"] == "bad"
    assert "faro.dev/slo-latency-ms" in warnings[0]["message"] and "not a number" in warnings[0]["message"]
    text = generate_latest(rig.registry).decode()
    assert 'faro_optimizer_invalid_annotations_total{annotation="faro.dev/slo-latency-ms",deployment="bad"' in text
    assert "faro_optimizer_held_deployments 1.0" in text


def test_a_deployment_without_a_faro_hpa_gets_one_normal_event_naming_the_hpa_to_create(rig, kubeapi):
    rig.add("lonely", with_hpa=False)
    rig.settle(1)
    for _ in range(3):
        rig.tick()
    events = [e for e in kubeapi.objects("", "events", "team-a") if e["reason"] == "FaroHPAMissing"]
    assert len(events) == 1 and events[0]["type"] == "Normal"
    assert "faro_desired_replicas" in events[0]["message"] and "Deployment/lonely" in events[0]["message"]


def test_quota_reduced_below_the_current_sum_shrinks_the_plan_fairly(rig):
    rig.core.create_namespaced_resource_quota("team-a", quota("q", {"requests.cpu": "20"}))
    for name in ("a", "b"):
        rig.add(name)
        rig.metrics.set_load(("team-a", name), 4800)
    rig.settle(2)
    before = rig.tick().desired()
    assert sum(before.values()) <= 20 and min(before.values()) >= 8
    rig.core.patch_namespaced_resource_quota("q", "team-a", {"spec": {"hard": {"requests.cpu": "10"}}})
    rig.core.patch_namespaced_resource_quota_status("q", "team-a", {"status": {"hard": {"requests.cpu": "10"}}})
    deadline = time.monotonic() + 20
    while rig.state.snapshot().quotas[0].hard["requests.cpu"] != 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = rig.tick().desired()
    assert sum(after.values()) <= 10
    assert abs(after[("team-a", "a")] - after[("team-a", "b")]) <= 1  # identical jobs: an even split


def test_a_deleted_deployment_leaves_the_plan(rig):
    rig.add("a")
    rig.add("b")
    rig.settle(2)
    assert {t.name for t in rig.tick().targets} == {"a", "b"}
    rig.apps.delete_namespaced_deployment("b", "team-a")
    rig.settle(1)
    plan = rig.tick()
    assert [t.name for t in plan.targets] == ["a"]
    assert b'deployment="b"' not in generate_latest(rig.registry)


def test_load_drops_and_the_plan_falls_back(rig):
    rig.add("a")
    rig.settle(1)
    rig.metrics.set_load(("team-a", "a"), 6000)
    high = rig.tick().desired()[("team-a", "a")]  # backfilled: a whole day at 6000 rpm
    rig.metrics.set_load(("team-a", "a"), 300)
    # Half an hour of low load: after a day of high load the forecast comes down over ~20 minutes
    # (about 10 when it was fitted on the last hour only), never back up.
    lows = [rig.tick().desired()[("team-a", "a")] for _ in range(30)]
    assert high >= 10 and lows[-1] < high / 3
    assert all(later <= earlier for earlier, later in pairwise(lows))


def test_the_ray_actuator_scales_the_ray_names_the_deployment_annotations_give(kube_client):
    import json

    from faro.optimizer.actuate.ray_serve import RayNames, RayServeActuator

    sent = []

    def ray(url, body, headers, timeout_s):
        sent.append((url.split("/api/v1/applications/", 1)[1], json.loads(body)["target_num_replicas"]))
        return 200, b"{}"

    actuator = RayServeActuator("http://ray-head:8265", resolve=RayNames(), transport=ray, max_workers=1)
    rig = Rig(kube_client, actuators=[actuator])
    rig.state.start()
    try:
        assert rig.state.wait_synced(20)
        rig.add("resnet-pods", annotations={**ANN, "faro.dev/ray-app": "vision", "faro.dev/ray-deployment": "ResNet"})
        rig.add("plain", annotations=ANN)  # not a Ray Serve job: scaled by its HPA, never POSTed
        rig.settle(2)
        rig.metrics.set_load(("team-a", "resnet-pods"), 3000)
        rig.metrics.set_load(("team-a", "plain"), 600)
        plan = rig.tick()
    finally:
        rig.state.stop()
    desired = {t.name: t.desired_replicas for t in plan.targets}
    assert sent == [("vision/deployments/ResNet/scale", desired["resnet-pods"])]


def test_the_running_loop_looks_again_within_a_second_while_the_caches_fill(rig):
    # At start-up the first tick often finds the informers still listing: no plan. The next look came one reactive
    # interval later (10 s by default). With a 600 s interval, a plan within 60 s (room for a loaded machine) comes
    # only from the loop looking again soon while the caches are not synced.
    import dataclasses
    import threading

    from faro.optimizer.service.loop import UNSYNCED_RETRY_S

    rig.add("a")
    rig.settle(1)
    looks = []

    def snapshot():
        looks.append(time.monotonic())
        snap = rig.state.snapshot()
        return dataclasses.replace(snap, synced=False) if len(looks) <= 2 else snap

    loop = ControlLoop(config=ServiceConfig(interval_s=600, reactive_interval_s=600, identity="test"),
                       policy=make_policy("faro-fairsum", interval_s=60, first_long_s=0), snapshot=snapshot,
                       metrics_source=rig.metrics, store=rig.store, telemetry=Telemetry(CollectorRegistry()),
                       clock=lambda: rig.now[0], events=EventRecorder(rig.core, clock=lambda: rig.now[0]))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while rig.store.current() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rig.store.current() is not None and len(looks) == 3, looks
        assert all(b - a >= UNSYNCED_RETRY_S * 0.9 for a, b in pairwise(looks))  # not a busy loop either
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()

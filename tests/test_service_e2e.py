"""End to end: `faro optimizer` wiring (flags → service) against the test API server, plans over gRPC,
leader election with a second replica taking over."""

import argparse
import time

import grpc
import pytest
from faro.optimizer.commands import optimizer as command
from faro.v1 import plan_pb2, plan_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client
from pki import plan_api_certs
from prometheus_client import CollectorRegistry
from service_fakes import AcceleratedClock, FakeMetrics

ANN = {"faro.dev/slo-latency-ms": "300", "faro.dev/processing-time-ms": "100"}


def start_service(kube_client, metrics, clock, identity, certs, *, leader_elect=True, reactive_interval_s=0.25):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([
        "--grpc-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--interval-s", "60",
        "--reactive-interval-s", str(reactive_interval_s), "--identity", identity, "--lease-namespace", "faro-system",
        "--lease-duration-s", "3", "--renew-deadline-s", "2", "--retry-period-s", "1",
        *([] if leader_elect else ["--no-leader-elect"]), *certs.server_flags(),
    ])
    return command.build_service(args, api_client=kube_client, metrics_source=metrics, registry=CollectorRegistry(),
                                 clock=clock).start()


def stub(service, certs):
    """A client as the adapter connects: mTLS with its certificate from the chart's CA."""
    channel = certs.client_tls().channel(f"127.0.0.1:{service.grpc_port}")
    return channel, plan_pb2_grpc.PlanServiceStub(channel)


@pytest.fixture
def certs(tmp_path):
    return plan_api_certs(tmp_path)


def wait_plan(plans, predicate, timeout_s=60.0):
    """Read the WatchPlans stream until a plan satisfies ``predicate``."""
    deadline = time.monotonic() + timeout_s
    for plan in plans:
        if predicate(plan):
            return plan
        if time.monotonic() > deadline:
            break
    raise AssertionError("no matching plan in time")


def desired(plan):
    return {t.deployment: t.desired_replicas for t in plan.targets}


@pytest.fixture
def cluster(kube_client):
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    hpas = client.AutoscalingV2Api(kube_client)
    core.create_namespaced_resource_quota("team-a", quota("compute", {"requests.cpu": "16"}))
    for name in ("a", "b"):
        apps.create_namespaced_deployment("team-a", deployment(name, annotations=dict(ANN)))
        hpas.create_namespaced_horizontal_pod_autoscaler("team-a", hpa(name, max_replicas=40))
    return kube_client


def test_plans_over_grpc_rise_with_load_respect_the_quota_and_fall_back(cluster, certs):
    metrics = FakeMetrics(default_rpm=300)
    service = start_service(cluster, metrics, AcceleratedClock(factor=120), "opt-0", certs, leader_elect=False)
    channel, plans_api = stub(service, certs)
    try:
        plans = plans_api.WatchPlans(plan_pb2.WatchPlansRequest(), timeout=120)
        low = wait_plan(plans, lambda p: p.kind == "solve" and len(p.targets) == 2)
        assert max(desired(low).values()) <= 3 and low.valid_until.seconds > low.created.seconds
        for name in ("a", "b"):
            metrics.set_load(("team-a", name), 12000)  # 200 rps each: far more than the quota allows
        # The forecast (fitted on a backfilled day at 5 rps) climbs over a few minutes towards 200 rps.
        high = wait_plan(plans, lambda p: p.kind == "solve" and min(t.forecast_rps for t in p.targets) > 100)
        assert sum(desired(high).values()) <= 16  # requests.cpu quota, 1 CPU per replica
        assert min(desired(high).values()) >= 7 and all(t.expected_latency_ms > 0 for t in high.targets)
        for name in ("a", "b"):
            metrics.set_load(("team-a", name), 300)
        wait_plan(plans, lambda p: p.kind == "solve" and max(desired(p).values()) <= 3)
        got = plans_api.GetPlan(plan_pb2.GetPlanRequest(), timeout=10)
        assert got.generation >= high.generation and got.leader == "opt-0"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="faro.v1.PlanService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        service.stop()


def wait_leader(services, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leaders = [s for s in services if s.is_leader()]
        if len(leaders) == 1 and leaders[0].store.current() is not None:
            return leaders[0]
        time.sleep(0.05)
    raise AssertionError("no leader with a plan")


@pytest.mark.parametrize("release", [pytest.param(True, id="graceful-stop"), pytest.param(False, id="crash")])
def test_a_second_replica_takes_over_within_one_lease_duration(cluster, kubeapi, certs, release, tmp_path):
    from kubeapi.rbac import User
    from kubernetes import config

    clock = AcceleratedClock(factor=60)
    first = start_service(cluster, FakeMetrics(), clock, "opt-1", certs)
    # The second replica talks to the API server as its own user, so its Lease attempts can be counted.
    token = kubeapi.user_token(User("opt-2", ("system:masters", "system:authenticated")))
    second_client = config.new_client_from_config(config_file=str(kubeapi.kubeconfig(tmp_path / "kc2", token=token)))
    second = None

    def tries_until_acquired(since: int) -> int:
        """The follower's Lease reads from audit index ``since`` up to its first write (the take-over)."""
        tries = 0
        for e in list(kubeapi.audit)[since:]:
            if e.user == "opt-2" and e.resource == "leases":
                if e.verb in ("update", "create"):
                    return tries
                tries += e.verb == "get"
        raise AssertionError("the follower never wrote the Lease")

    try:
        assert wait_leader([first]) is first
        second = start_service(second_client, FakeMetrics(), clock, "opt-2", certs)
        time.sleep(1.5)
        assert not second.is_leader()
        channel, follower = stub(second, certs)
        with pytest.raises(grpc.RpcError) as err:
            follower.GetPlan(plan_pb2.GetPlanRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "opt-1" in err.value.details()
        since = len(kubeapi.audit)
        first.stop(release=release)
        new = wait_leader([second], timeout_s=60)
        tries = tries_until_acquired(since)
        # Counted in the follower's own attempts (one GET per retry period of 1 s), not in wall time, so a
        # loaded machine cannot break it: a released Lease is taken at the next attempt or the one after; a
        # crashed leader's Lease (3 s) has expired by the 3rd attempt after its last renew (+2 for the
        # attempt in flight and the one that writes).
        lease_s, retry_s = 3, 1
        assert 1 <= tries <= (2 if release else lease_s // retry_s + 2), tries
        plan = follower.GetPlan(plan_pb2.GetPlanRequest(), timeout=10)
        assert new is second and plan.leader == "opt-2" and len(plan.targets) == 2
        [lease] = kubeapi.objects("coordination.k8s.io", "leases", "faro-system")
        assert lease["spec"]["holderIdentity"] == "opt-2"
        channel.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        second_client.close()


def test_a_replica_that_wins_the_lease_plans_at_once_not_one_reactive_interval_later(cluster, kubeapi, certs):
    # The loop looks at leadership once per reactive interval: a replica that won the Lease just after a look sat
    # idle until the next one (10 s by default). Here the Lease is held by a replica that is gone, so this one wins
    # it after the Lease's 3 s, well after the loop's first look; with a 600 s interval, a plan within 60 s (room
    # for a loaded machine) comes only from the service waking the loop on the leadership change.
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    client.CoordinationV1Api(cluster).create_namespaced_lease("faro-system", client.V1Lease(
        metadata=client.V1ObjectMeta(name="faro-optimizer"),
        spec=client.V1LeaseSpec(holder_identity="opt-gone", lease_duration_seconds=3, acquire_time=now,
                                renew_time=now, lease_transitions=0)))
    service = start_service(cluster, FakeMetrics(), AcceleratedClock(factor=60), "opt-1", certs,
                            reactive_interval_s=600)
    try:
        time.sleep(0.5)
        assert not service.is_leader()  # the loop's first look found no Lease of its own
        assert wait_leader([service], timeout_s=60) is service
        [lease] = kubeapi.objects("coordination.k8s.io", "leases", "faro-system")
        assert lease["spec"]["holderIdentity"] == "opt-1"
    finally:
        service.stop()


@pytest.mark.parametrize("name", ["faro-sum", "faro-fairsum", "hpa-cpu", "aiad", "oneshot", "mark", "fairshare"])
def test_the_service_wiring_builds_every_cpu_policy_with_the_options_it_takes(kube_client, name, certs):
    # The planning flags configure Faro's policies; a baseline (the e2e tests' comparisons) gets only its own.
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--grpc-address", "127.0.0.1:0", "--metrics-address", "", "--no-leader-elect",
                              *certs.server_flags()])
    args.policy = name  # the CLI offers Faro's policies; tests reach the baselines through the same wiring
    extra = {"quota_order": "job"} if name == "hpa-cpu" else None
    service = command.build_service(args, api_client=kube_client, metrics_source=FakeMetrics(),
                                    registry=CollectorRegistry(), policy_options=extra)
    assert service.loop.policy.name == name

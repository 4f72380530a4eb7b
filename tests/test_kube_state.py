"""Cluster state through the official client's informers against the test API server."""

import time

import pytest
from faro.optimizer.kube.events import EventRecorder
from faro.optimizer.kube.state import ClusterState
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client


def wait_for(predicate, timeout_s=20.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def state(kube_client):
    s = ClusterState(kube_client, watch_timeout_s=30, backoff_max_s=1.0)
    s.start()
    assert s.wait_synced(20)
    yield s
    s.stop()


def names(state):
    return sorted(d.name for d in state.snapshot().deployments)


def test_labelled_deployments_quotas_and_hpas_are_read_with_their_resources(kube_client, state):
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    hpas = client.AutoscalingV2Api(kube_client)
    apps.create_namespaced_deployment("team-a", deployment("a", replicas=3, cpu="500m", memory="1Gi", containers=2,
                                                           annotations={"faro.dev/slo-latency-ms": "100"}))
    apps.create_namespaced_deployment("team-a", deployment("other", enabled=False))
    apps.patch_namespaced_deployment_status("a", "team-a", {"status": {"readyReplicas": 2}})
    core.create_namespaced_resource_quota("team-a", quota("q", {"requests.cpu": "10", "limits.memory": "20Gi",
                                                                "pods": "30", "count/services": "5"},
                                                          used={"requests.cpu": "1500m"}))
    hpas.create_namespaced_horizontal_pod_autoscaler("team-a", hpa("a", min_replicas=2, max_replicas=7))
    def complete():
        s = state.snapshot()
        return s if s.deployments and s.deployments[0].ready_replicas == 2 and s.quotas and s.hpas else None

    snap = wait_for(complete, what="cache")
    [dep] = snap.deployments
    assert (dep.namespace, dep.name, dep.replicas, dep.ready_replicas) == ("team-a", "a", 3, 2)
    assert dep.requests == {"cpu": 1.0, "memory": 2 * 2**30}  # summed over the two containers
    assert dep.annotations["faro.dev/slo-latency-ms"] == "100"
    [q] = snap.quotas
    assert q.hard == {"requests.cpu": 10.0, "limits.memory": 20 * 2**30, "pods": 30.0}  # count/* is not planned
    assert q.used == {"requests.cpu": 1.5}
    assert snap.hpa_for("team-a", "a").uses_faro_metric
    assert (snap.hpa_for("team-a", "a").min_replicas, snap.hpa_for("team-a", "a").max_replicas) == (2, 7)


def test_dropped_watches_and_410_gone_lose_and_duplicate_nothing(kubeapi, kube_client, state):
    apps = client.AppsV1Api(kube_client)
    for name in ("a", "b", "c"):
        apps.create_namespaced_deployment("team-a", deployment(name))
    wait_for(lambda: names(state) == ["a", "b", "c"], what="three Deployments")
    kubeapi.drop_watches()
    apps.delete_namespaced_deployment("b", "team-a")  # while the watch is down
    apps.create_namespaced_deployment("team-a", deployment("d"))
    wait_for(lambda: names(state) == ["a", "c", "d"], what="resume from the last resourceVersion")
    lists_before = state.deployments.stats.lists
    kubeapi.fail_requests = lambda entry: 500 if entry.verb == "watch" else None  # keep the watch down ...
    kubeapi.drop_watches()
    apps.delete_namespaced_deployment("a", "team-a")
    apps.create_namespaced_deployment("team-a", deployment("e"))
    kubeapi.compact()  # ... while history is compacted: resuming gets 410 Expired, the informer must re-list
    kubeapi.fail_requests = lambda entry: None
    wait_for(lambda: names(state) == ["c", "d", "e"], what="re-list after 410")
    assert state.deployments.stats.lists > lists_before
    assert "watch" in kubeapi.verbs("deployments")
    assert len(state.snapshot().deployments) == 3


def test_an_informer_resumes_from_a_bookmark_after_compaction_without_a_re_list(kubeapi, kube_client, state):
    from kubernetes.informer import BOOKMARK

    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    marks: list[int] = []
    state.deployments.informer.add_event_handler(
        BOOKMARK, lambda obj: marks.append(int((obj.get("metadata") or {}).get("resourceVersion") or 0)))
    apps.create_namespaced_deployment("team-a", deployment("a"))
    wait_for(lambda: names(state) == ["a"], what="the first Deployment")

    def noise() -> int:  # a change elsewhere: the resourceVersion moves on, the Deployment watch sees no event
        cm = core.create_namespaced_config_map("team-a", {"metadata": {"generateName": "noise-"}})
        return int(cm.metadata.resource_version)

    # 1. A bookmark carries the newer resourceVersion to the informer: after compaction + a dropped watch it
    #    resumes from there (no 410) and sees the next change without listing again.
    rv = noise()
    wait_for(lambda: marks and marks[-1] >= rv, what="a bookmark at the latest resourceVersion")
    lists = kubeapi.verbs("deployments").count("list"), state.deployments.stats.lists
    kubeapi.compact()
    kubeapi.drop_watches()
    apps.create_namespaced_deployment("team-a", deployment("b"))
    wait_for(lambda: names(state) == ["a", "b"], what="the change after the resumed watch")
    assert (kubeapi.verbs("deployments").count("list"), state.deployments.stats.lists) == lists

    # 2. The control: with no bookmark since the last Deployment event, the same steps end in 410 + a re-list.
    kubeapi.bookmark_interval_s = 3600.0
    watches = kubeapi.verbs("deployments").count("watch")
    kubeapi.drop_watches()
    wait_for(lambda: kubeapi.verbs("deployments").count("watch") > watches, what="a watch without bookmarks")
    noise()
    kubeapi.compact()
    kubeapi.drop_watches()
    apps.create_namespaced_deployment("team-a", deployment("c"))
    wait_for(lambda: names(state) == ["a", "b", "c"], what="the change after the re-list")
    assert kubeapi.verbs("deployments").count("list") == lists[0] + 1
    assert state.deployments.stats.lists == lists[1] + 1


def test_watch_errors_back_off_instead_of_spinning(kubeapi, kube_client, state):
    before = kubeapi.verbs("deployments").count("watch")
    started = time.monotonic()
    kubeapi.fail_requests = lambda entry: 500 if entry.verb == "watch" else None
    kubeapi.drop_watches()
    wait_for(lambda: state.deployments.stats.errors >= 3, timeout_s=60, what="three failed watches")
    elapsed_s = time.monotonic() - started
    watches = kubeapi.verbs("deployments").count("watch") - before
    # Back-off 0.5 s, 1 s, 1 s ... allows at most elapsed/0.5 + 1 attempts; a tight loop makes hundreds. A slow
    # machine only lengthens elapsed_s, so the bound never tightens under load.
    assert watches <= elapsed_s / 0.5 + 2, (watches, elapsed_s)
    kubeapi.fail_requests = lambda entry: None
    client.AppsV1Api(kube_client).create_namespaced_deployment("team-a", deployment("late"))
    wait_for(lambda: names(state) == ["late"], what="recovery after errors")


def test_events_are_created_once_then_counted(kubeapi, kube_client):
    now = [1000.0]
    recorder = EventRecorder(client.CoreV1Api(kube_client), clock=lambda: now[0], repeat_interval_s=60)
    for _ in range(3):
        recorder.record(namespace="team-a", name="a", uid="", event_type="Warning", reason="FaroInvalidSLO",
                        message="invalid annotation faro.dev/weight: '-1' must be >= 0")
    events = kubeapi.objects("", "events", "team-a")
    assert len(events) == 1 and events[0]["count"] == 1 and events[0]["type"] == "Warning"
    now[0] += 61
    recorder.record(namespace="team-a", name="a", uid="", event_type="Warning", reason="FaroInvalidSLO",
                    message="invalid annotation faro.dev/weight: '-1' must be >= 0")
    [event] = kubeapi.objects("", "events", "team-a")
    assert event["count"] == 4
    for _ in range(2):
        recorder.record(namespace="team-a", name="a", uid="", event_type="Normal", reason="FaroHPAMissing",
                        message="create an HPA", once=True)
    now[0] += 1000
    recorder.record(namespace="team-a", name="a", uid="", event_type="Normal", reason="FaroHPAMissing",
                    message="create an HPA", once=True)
    assert [e["reason"] for e in kubeapi.objects("", "events", "team-a")].count("FaroHPAMissing") == 1
    assert kubeapi.verbs("events").count("create") == 2


def test_a_snapshot_finds_the_hpa_of_each_deployment_preferring_one_that_uses_faro():
    from faro.optimizer.kube.state import HpaInfo, KubeSnapshot

    def info(name, target, *, faro, namespace="team-a", kind="Deployment"):
        return HpaInfo(namespace=namespace, name=name, target_kind=kind, target_name=target, min_replicas=1,
                       max_replicas=10, uses_faro_metric=faro)

    snap = KubeSnapshot(hpas=(
        info("cpu-a", "a", faro=False), info("z-faro-a", "a", faro=True), info("b", "b", faro=False),
        info("other-ns", "c", faro=True, namespace="team-b"), info("sts", "d", faro=True, kind="StatefulSet"),
    ))
    assert snap.hpa_for("team-a", "a").name == "z-faro-a"
    assert snap.hpa_for("team-a", "b").name == "b"
    assert snap.hpa_for("team-a", "c") is None
    assert snap.hpa_for("team-b", "c").name == "other-ns"
    assert snap.hpa_for("team-a", "d") is None

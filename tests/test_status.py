"""``faro status`` against a running optimizer (the real `faro optimizer` wiring, test API server, plans over
gRPC): the table, ``-o wide``, ``-o json``, ``--watch`` and the explanation of one Deployment's decision."""

from __future__ import annotations

import argparse
import json
import socket

import pytest
from faro.optimizer.cli import main
from faro.optimizer.commands import optimizer as command
from faro.optimizer.policy.names import DEFAULT_POLICY
from faro.v1 import plan_pb2
from kubeapi.objects import deployment, hpa, quota
from kubernetes import client
from pki import plan_api_certs
from prometheus_client import CollectorRegistry
from service_fakes import AcceleratedClock, FakeMetrics
from stack_helpers import eventually

ANN = {"faro.dev/slo-latency-ms": "300", "faro.dev/processing-time-ms": "100"}


@pytest.fixture
def certs(tmp_path):
    return plan_api_certs(tmp_path)  # the plan API's mTLS as the chart sets it up


@pytest.fixture
def optimizer(kube_client, certs):
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    hpas = client.AutoscalingV2Api(kube_client)
    core.create_namespaced_resource_quota("team-a", quota("compute", {"requests.cpu": "6"}))
    for name in ("busy", "quiet"):
        apps.create_namespaced_deployment("team-a", deployment(name, annotations=dict(ANN)))
        apps.patch_namespaced_deployment_status(name, "team-a", {"status": {"replicas": 1, "readyReplicas": 1}})
        hpas.create_namespaced_horizontal_pod_autoscaler("team-a", hpa(name, max_replicas=40))
    apps.create_namespaced_deployment("team-a", deployment("broken", annotations={"faro.dev/slo-latency-ms": "abc"}))
    metrics = FakeMetrics(default_rpm=300)
    metrics.set_load(("team-a", "busy"), 6000)  # 100 req/s at 100 ms: far more than 6 CPUs can serve at 300 ms
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--grpc-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--interval-s", "60",
                              "--reactive-interval-s", "0.25", "--identity", "opt-0", "--no-leader-elect",
                              *certs.server_flags()])
    service = command.build_service(args, api_client=kube_client, metrics_source=metrics,
                                    registry=CollectorRegistry(), clock=AcceleratedClock(factor=120)).start()
    try:
        eventually(lambda: (p := service.store.current()) is not None and p.kind == "solve"
                   and p.target("team-a", "busy").forecast_rps > 50, timeout_s=60, what="a solve plan for busy")
        yield f"127.0.0.1:{service.grpc_port}", certs.client_flags()
    finally:
        service.stop()


def status(capsys, optimizer: tuple[str, list[str]], *argv: str) -> tuple[int, str, str]:
    address, credentials = optimizer
    code = main(["status", "--optimizer-address", address, *credentials, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NAMESPACE"))
    return {line.split()[1]: line.split() for line in lines[header + 1:] if line.strip()}


def test_status_table_wide_json_watch_and_explain_against_a_running_optimizer(optimizer, capsys):
    code, out, _ = status(capsys, optimizer)
    assert code == 0
    assert out.splitlines()[0].startswith("plan ") and f"policy {DEFAULT_POLICY}" in out and "leader opt-0" in out
    header = next(line for line in out.splitlines() if line.startswith("NAMESPACE")).split()
    assert header == ["NAMESPACE", "DEPLOYMENT", "DESIRED", "CURRENT", "READY", "FORECAST", "LATENCY/SLO", "UTILITY",
                      "HELD", "AGE"]
    table = rows(out)
    assert set(table) == {"broken", "busy", "quiet"}
    busy = table["busy"]
    assert busy[:5] == ["team-a", "busy", busy[2], "1", "1"] and int(busy[2]) >= 2  # spec.replicas 1, 1 ready
    assert busy[5].endswith("/s") and float(busy[5][:-2]) > 50
    assert busy[6] == "p99" and busy[7].endswith("/300ms")
    assert "invalid" in next(line for line in out.splitlines() if " broken " in line)

    code, out, _ = status(capsys, optimizer, "-o", "wide")
    assert code == 0
    wide = next(line for line in out.splitlines() if " busy " in line)
    assert "quota team-a/compute requests.cpu" in wide  # the quota is what stops busy from growing

    code, out, _ = status(capsys, optimizer, "-o", "json", "-n", "team-a")
    assert code == 0
    doc = json.loads(out)
    assert doc["policy"] == DEFAULT_POLICY and doc["age_s"] >= 0 and int(doc["generation"]) > 0
    by_name = {t["deployment"]: t for t in doc["targets"]}
    assert set(by_name) == {"broken", "busy", "quiet"}
    assert by_name["busy"]["binding_quota"].startswith("quota team-a/compute requests.cpu: ")
    assert by_name["busy"]["forecast_quantile"] > 0 and by_name["busy"]["steady_latency_ms"] > 0
    assert by_name["broken"]["held_reason"] and by_name["broken"]["desired_replicas"] == 1
    assert sum(t["desired_replicas"] for n, t in by_name.items() if n != "broken") <= 6

    code, out, _ = status(capsys, optimizer, "team-a/busy")
    assert code == 0
    busy = by_name["busy"]
    n = busy["desired_replicas"]
    assert out.startswith(f"team-a/busy: {n} replicas")
    assert "forecast" in out and "quantile of the load forecast" in out
    expected = next(line for line in out.splitlines() if "expected p99" in line)
    assert f"{n - 1} replicas" in expected and f"{n} (chosen)" in expected and f"{n + 1} " in expected
    assert "limited by      quota team-a/compute requests.cpu" in out

    code, out, _ = status(capsys, optimizer, "--watch", "--watch-count", "2")
    assert code == 0
    plans = [block for block in out.split("\n\n") if block.startswith("plan ")]
    assert len(plans) == 2 and plans[0].split()[1] != plans[1].split()[1]  # two generations

    code, _, err = status(capsys, optimizer, "team-a/nope")
    assert code == 2 and "team-a/nope: not in the current plan" in err


def test_status_says_when_no_optimizer_answers(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    code, out, err = status(capsys, (f"127.0.0.1:{port}", ["--optimizer-insecure"]), "--timeout-s", "5")
    assert code == 1 and out == ""
    assert f"cannot reach a leading optimizer at 127.0.0.1:{port}" in err or "no answer" in err


def test_the_plan_proto_carries_the_explanation_fields():
    fields = plan_pb2.Target.DESCRIPTOR.fields_by_name
    for name in ("ready_replicas", "forecast_quantile", "latency_one_fewer_ms", "steady_latency_ms",
                 "latency_one_more_ms", "binding_quota"):
        assert name in fields

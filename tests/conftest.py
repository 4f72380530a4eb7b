"""Shared fixtures: the test Kubernetes API server (``tests/kubeapi``) and real Prometheus (``tests/prom_fixture``).

``kubeapi`` is a running ``KubeApiServer`` (every stored object schema-validated; the test fails at
teardown if any was invalid); ``kube_client`` an official-client ``ApiClient`` built from a
generated kubeconfig pointing at it.
"""

from __future__ import annotations

import pytest
from kubeapi import KubeApiServer
from prom_fixture import prometheus, prometheus_binary, prometheus_factory, traffic_exporter  # noqa: F401


@pytest.fixture
def kubeapi():
    server = KubeApiServer(bookmark_interval_s=0.5).start()
    yield server
    server.stop()
    assert server.validation_errors == [], "objects failed the OpenAPI schema"


@pytest.fixture
def kube_client(kubeapi, tmp_path):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeapi.kubeconfig(tmp_path / "kubeconfig")))
    yield api
    api.close()

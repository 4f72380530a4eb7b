"""Shared fixtures: the test Kubernetes API server (``tests/kubeapi``) and real Prometheus (``tests/prom_fixture``).

``kubeapi`` is a running ``KubeApiServer`` (every stored object schema-validated, every request
authorised by RBAC; the test fails at teardown if any object was invalid or any request denied —
``KubeApiServer.check``); ``kubeapi_factory`` makes more of them, checked the same way;
``kube_client`` an official-client ``ApiClient`` built from a generated kubeconfig pointing at
``kubeapi`` with the admin token.
"""

from __future__ import annotations

import pytest
from kubeapi import KubeApiServer
from prom_fixture import prometheus, prometheus_binary, prometheus_factory, traffic_exporter  # noqa: F401


@pytest.fixture
def kubeapi_factory():
    servers: list[KubeApiServer] = []

    def make(**kwargs) -> KubeApiServer:
        server = KubeApiServer(**{"bookmark_interval_s": 0.5, **kwargs}).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        server.check()


@pytest.fixture
def kubeapi(kubeapi_factory):
    return kubeapi_factory()


@pytest.fixture
def kube_client(kubeapi, tmp_path):
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeapi.kubeconfig(tmp_path / "kubeconfig")))
    yield api
    api.close()

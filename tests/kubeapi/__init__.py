"""Test Kubernetes API server (see ``server.py``) and helpers to build valid objects for it."""

from .server import AuditEntry, KubeApiServer

__all__ = ["AuditEntry", "KubeApiServer"]

"""Test Kubernetes API server (see ``server.py``), its RBAC (``rbac.py``) and builders of valid objects."""

from .rbac import BOOTSTRAP, Attributes, RBACAuthorizer, User, forbidden_status, service_account_user
from .server import ADMIN_TOKEN, AuditEntry, KubeApiServer

__all__ = ["ADMIN_TOKEN", "BOOTSTRAP", "Attributes", "AuditEntry", "KubeApiServer", "RBACAuthorizer", "User",
           "forbidden_status", "service_account_user"]

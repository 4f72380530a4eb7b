"""Kubernetes resource quantities for people: canonical strings (``4Gi``, ``500m``) and the unit of each
resource. Used by ``faro plan`` (table and JSON) and ``faro status`` (which quota binds).

Values are in the canonical units the optimizer computes in: cores for CPU, bytes for memory and storage,
a count for everything else (pods, GPUs).
"""

from __future__ import annotations

import math

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_BYTES = ("memory", "storage", "ephemeral-storage")


def base_resource(resource: str) -> str:
    """``requests.cpu`` / ``limits.memory`` → ``cpu`` / ``memory`` (quota names carry the prefix)."""
    return resource.removeprefix("requests.").removeprefix("limits.")


def unit_of(resource: str) -> str:
    name = base_resource(resource)
    if name == "cpu":
        return "cores"
    if name in _BYTES or name.endswith("storage"):
        return "bytes"
    return "count"


def format_quantity(resource: str, value: float) -> str:
    """The quantity as ``kubectl`` would write it: ``500m``, ``4``, ``1536Mi``, ``4Gi``, ``2``."""
    if not math.isfinite(value):
        return str(value)
    unit = unit_of(resource)
    if unit == "cores":
        milli = round(value * 1000)
        return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"
    if unit == "bytes":
        whole = round(value)
        for suffix, size in _BINARY:
            if whole and whole % size == 0:
                return f"{whole // size}{suffix}"
        for suffix, size in _BINARY:  # not a whole number of any unit: three significant digits
            if abs(whole) >= size:
                return f"{whole / size:.3g}{suffix}"
        return str(whole)
    return str(round(value)) if float(value).is_integer() else f"{value:g}"


def quantity_json(resource: str, value: float) -> dict[str, object]:
    """``{"value": 4294967296, "unit": "bytes", "quantity": "4Gi"}``: the number, its unit and the string."""
    number: float | int = round(value) if float(value).is_integer() else float(value)
    return {"value": number, "unit": unit_of(resource), "quantity": format_quantity(resource, value)}

"""The one blocking HTTP POST the optimizer's clients share (Prometheus source, Ray Serve actuator).

Both take it as an injectable ``Transport`` so tests can answer without a server.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

# (url, body, headers, timeout_s) -> (HTTP status, body); raises OSError when the peer is unreachable.
Transport = Callable[[str, bytes, Mapping[str, str], float], tuple[int, bytes]]


def urllib_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> tuple[int, bytes]:
    """POST ``body`` with urllib; HTTP errors come back as (status, body), network errors raise OSError."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()

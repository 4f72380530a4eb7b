"""The adapter answers fuzzed and schema-generated requests within its published contract.

Short versions of ``bench/fuzz.py`` (the bench sends up to 10⁵ requests per surface; these send a thousand to
the adapter's surfaces and 150 to the optimizer's plan API, seconds on a shared machine) plus schemathesis
against ``docs/openapi/external-metrics.yaml``: every operation of the document called with generated
parameters, and the real answers checked for status codes, content types and response schemas. The adapter
is a real process (mode ``both``: HTTPS + KEDA gRPC over TLS, delegated auth on); so is the optimizer (mTLS
plan API, bounded ``Solve``, against the test API server).
"""

from __future__ import annotations

import importlib.util
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_fuzz", ROOT / "bench" / "fuzz.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["bench_fuzz"] = fuzz
_spec.loader.exec_module(fuzz)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target() -> Iterator[fuzz.Target]:
    with fuzz.AdapterProcess() as running:
        yield running


@pytest.fixture(scope="module")
def optimizer() -> Iterator[fuzz.PlanTarget]:
    with fuzz.OptimizerProcess() as running:
        yield running


@pytest.mark.parametrize(("surface", "requests"), [("https", 1000), ("keda", 1000), ("plan", 150)])
def test_fuzzed_requests_get_documented_answers_and_never_a_server_error(request, surface: str,
                                                                         requests: int) -> None:
    import asyncio

    # Each accepted Solve runs a real solver in a child process (2 at a time): the plan surface is slow per call.
    target = request.getfixturevalue("optimizer" if surface == "plan" else "target")
    result = asyncio.run(fuzz.SURFACES[surface](target, requests=requests, seed=11))
    assert result.requests == requests
    assert result.server_errors == 0, result.examples
    assert result.nonconforming == 0, result.examples
    assert result.alive_after  # for the plan API: also new plans published while it was fuzzed
    assert len(result.statuses) >= 3, result.statuses  # the generator reaches several outcomes, not one
    if surface != "https":  # random bytes as messages: refused INVALID_ARGUMENT by our decoding (grpc_decode)
        assert result.malformed_refused > 0, result.statuses
    # Bounded memory: a leak per request would show; 64 MiB is far above the few MiB caches and
    # allocator noise of a healthy run and far below 1,000 leaked large bodies.
    assert result.rss_growth_mib() < 64, result.rss_mib


def test_the_oracle_rejects_answers_outside_the_document() -> None:
    oracle = fuzz.Oracle()
    status = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"NotFound",'
    assert oracle.check("GET", "/nope", 404, status + b'"code":404}', "application/json") is None
    assert "server error" in oracle.check("GET", "/apis", 500, b"{}", "application/json")
    assert "not in the document" in oracle.check("GET", "/healthz", 404, status + b'"code":404}', "application/json")
    assert "breaks the schema" in oracle.check("GET", fuzz.GROUP_PATH + "/namespaces/a/m", 200, b'{"items":[]}',
                                               "application/json")
    assert "!= HTTP" in oracle.check("GET", "/nope", 404, status + b'"code":400}', "application/json")


schemathesis = pytest.importorskip("schemathesis")
SCHEMA = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi" / "external-metrics.yaml"))


@pytest.fixture(scope="module")
def tls(target: fuzz.Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``requests`` TLS options: trust the serving CA, present the front-proxy certificate."""
    ca = tmp_path_factory.mktemp("ca") / "serving-ca.crt"
    ca.write_bytes(target.serving_ca_pem)
    return {"verify": str(ca), "cert": (str(target.front_proxy[0]), str(target.front_proxy[1]))}


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))  # seconds per operation
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_adapter_conforms_to_its_openapi_document(case, target: fuzz.Target, tls) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    base_url = f"https://127.0.0.1:{target.https_port}"
    # As the HPA controller through the aggregator: front-proxy certificate (session) + the user's headers.
    headers = {"X-Remote-User": fuzz.HPA_USER, "X-Remote-Group": "system:serviceaccounts"}
    try:
        response = case.call(base_url=base_url, headers=headers, timeout=30, **tls)
    except ssl.SSLError as exc:  # pragma: no cover - would be a TLS bug, not a contract one
        pytest.fail(f"TLS failed: {exc}")
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                             response_schema_conformance])

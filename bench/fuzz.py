"""Fuzz the adapter's two surfaces on loopback: the HTTPS External Metrics API and the KEDA external scaler.

The adapter runs in its own process (mode ``both``, a 200-Deployment plan, delegated auth on: a front-proxy CA,
a token reviewer that knows one token, an access reviewer that denies user ``eve``). Seeded generators send:

* **https** — methods, paths (served ones, mutations, percent-encoded bytes, dot segments, 4 KiB segments),
  ``labelSelector`` from the selector grammar and random text, credentials (front-proxy certificate with
  good/odd/empty users, groups and extras; good/bad/garbage bearer tokens; none), random headers, and bodies up to
  128 KiB (the server's limit is 64 KiB). Every answer must be a listed status of the operation in
  ``docs/openapi/external-metrics.yaml`` (404 Status for unknown paths, 405 for other methods, 413 for large
  bodies) and its body must validate against the document's schema for that status.
* **keda** — ``IsActive``/``GetMetricSpec``/``GetMetrics`` with random ScaledObjectRefs (names, namespaces, up to
  64 metadata entries, unicode, 16 KiB strings) and metric names, plus random bytes as request messages
  (malformed protobufs). Every answer must be OK or one of the codes the scaler documents.

Both check: no 500 / INTERNAL / UNKNOWN, the process alive and answering ``/healthz`` at the end, and the
adapter's RSS (``/proc/<pid>/status`` VmRSS) sampled throughout — bounded memory means the growth after the
first 10% of requests stays small. Loopback only; the request count bounds each run.

    python bench/fuzz.py [--requests 100000] [--surfaces https keda] [--seed 1]

Prints a table and writes ``bench/results/fuzz.json``. ``tests/test_fuzz.py`` runs the same code with a few
thousand requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test PKI and plan fakes
RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.json"
OPENAPI = ROOT / "docs" / "openapi" / "external-metrics.yaml"
N_DEPLOYMENTS = 200
GOOD_TOKEN = "fuzz-good-token"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
GROUP_PATH = "/apis/external.metrics.k8s.io/v1beta1"


# ------------------------------------------------------------------ the adapter under test (child process)
def _serve(workdir: str) -> None:
    """The child: run the adapter until SIGTERM, print its ports as one JSON line when it listens."""
    import signal

    from adapter_fakes import make_plan
    from faro.adapter.app import Adapter, AdapterConfig
    from faro.adapter.auth import Attributes, Authenticator, Authorizer, UserInfo, auth_config_from_configmap
    from google.protobuf import json_format

    class Reviewer:
        def review_token(self, token: str) -> UserInfo | None:
            return UserInfo(HPA_USER, ("system:serviceaccounts",)) if token == GOOD_TOKEN else None

        def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
            return user.name != "eve"

    d = Path(workdir)
    plan = make_plan(1, {("default", f"job-{i}"): 1 + i % 17 for i in range(N_DEPLOYMENTS)}, created_s=time.time(),
                     valid_for_s=24 * 3600)
    (d / "plan.json").write_text(json_format.MessageToJson(plan))
    auth = auth_config_from_configmap({"requestheader-client-ca-file": (d / "front-ca.crt").read_text(),
                                       "requestheader-allowed-names": '["front-proxy-client"]'})
    config = AdapterConfig(plan_file=d / "plan.json", plan_ttl_s=24 * 3600, mode="both",
                           secure_address="127.0.0.1:0", tls_cert_file=d / "server.crt",
                           tls_private_key_file=d / "server.key", keda_address="127.0.0.1:0",
                           keda_tls_cert_file=d / "server.crt", keda_tls_private_key_file=d / "server.key",
                           metrics_address=None)

    async def main() -> None:
        reviewer = Reviewer()
        adapter = Adapter(config, authenticator=Authenticator(auth, token_reviewer=reviewer, clock=time.monotonic),
                          authorizer=Authorizer(reviewer, clock=time.monotonic), client_ca_pem=auth.trusted_ca_pem)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await adapter.start()
        print(json.dumps({"https": adapter.secure_port, "keda": adapter.keda_port}), flush=True)
        await stop.wait()
        await adapter.stop()

    asyncio.run(main())


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Target:
    """A running adapter process and how to reach it."""

    pid: int
    https_port: int
    keda_port: int
    serving_ca_pem: bytes
    front_proxy: tuple[Path, Path]
    alive: Callable[[], bool]


class AdapterProcess:
    """Start the adapter in a spawned process with a throw-away PKI; a context manager."""

    def __enter__(self) -> Target:
        from pki import CertificateAuthority

        self._tmp = tempfile.TemporaryDirectory()
        d = Path(self._tmp.name)
        serving, front = CertificateAuthority("serving-ca"), CertificateAuthority("front-proxy-ca")
        serving.issue("faro-adapter", server=True).write(d, "server")
        (d / "front-ca.crt").write_bytes(front.cert_pem)
        front_proxy = front.issue("front-proxy-client").write(d, "front-proxy")
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve", self._tmp.name], stdout=subprocess.PIPE,
                                      text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the ports, once listening (EOF if the child failed)
        if not line:
            raise RuntimeError(f"the adapter process exited ({self._proc.wait(30)}) before listening")
        ports = json.loads(line)
        proc = self._proc
        return Target(proc.pid, ports["https"], ports["keda"], serving.cert_pem, front_proxy,
                      lambda: proc.poll() is None)

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(30)
        self._tmp.cleanup()


# ------------------------------------------------------------------ the OpenAPI document as the oracle
class Oracle:
    """Which statuses and bodies ``docs/openapi/external-metrics.yaml`` allows for a request."""

    def __init__(self, path: Path = OPENAPI) -> None:
        import jsonschema
        import yaml

        doc = yaml.safe_load(path.read_text())
        self._components = doc["components"]
        self._routes: list[tuple[re.Pattern[str], dict[str, Any]]] = []
        for template, item in doc["paths"].items():
            regex = "^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
            self._routes.append((re.compile(regex + "$"), self._resolve(item["get"]["responses"])))
        self._status_schema = self._resolve({"$ref": "#/components/schemas/Status"})
        self._validators: dict[int, Any] = {}
        self._jsonschema = jsonschema

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                kind, name = node["$ref"].split("/")[-2:]
                return self._resolve(self._components[kind][name])
            return {k: self._resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._resolve(v) for v in node]
        return node

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = id(schema)
        if key not in self._validators:
            self._validators[key] = (schema, self._jsonschema.Draft4Validator(schema))  # keeps schema alive
        return self._validators[key][1]

    def check(self, method: str, raw_path: str, status: int, body: bytes, content_type: str) -> str | None:
        """None when the answer conforms, else why not."""
        if status >= 500 and status != 503:
            return f"server error {status}"
        if status == 400 and content_type.startswith("text/plain") and len(raw_path) > 8000:
            return None  # the HTTP layer refuses a request line over 8 KiB before any handler (documented)
        path = raw_path.split("?", 1)[0]
        responses = next((r for regex, r in self._routes if regex.match(path)), None)
        is_json = content_type.startswith("application/json")
        if responses is None or method not in ("GET", "HEAD"):
            # Not an operation of the document: refused with a Status (auth first, like kube-apiserver).
            allowed = {401, 403, 404, 405, 413}
            schema = self._status_schema
        else:
            allowed = {int(code) for code in responses} | {413}
            chosen = responses.get(str(status))
            media = (chosen or {}).get("content", {})
            schema = (media.get("application/json") or {}).get("schema")
            if chosen is not None and "text/plain" in media:
                return None if content_type.startswith("text/plain") else f"{status} should be text/plain"
            if status == 413:
                schema = self._status_schema
        if status not in allowed:
            return f"status {status} is not in the document for {method} {path} ({sorted(allowed)})"
        if method == "HEAD" or schema is None:
            return None
        if not is_json:
            return f"{status} answered {content_type!r}, not JSON"
        try:
            document = json.loads(body)
        except ValueError:
            return f"{status} body is not JSON"
        error = next(iter(self._validator(schema).iter_errors(document)), None)
        if error is not None:
            return f"{status} body breaks the schema: {error.message} at {list(error.path)}"
        if document.get("kind") == "Status" and document.get("code") != status:
            return f"Status code {document.get('code')} != HTTP {status}"
        return None


# ------------------------------------------------------------------ generators
SEGMENTS = ["apis", "api", "external.metrics.k8s.io", "v1beta1", "v1", "namespaces", "default", "kube-system",
            "faro_desired_replicas", "other_metric", "healthz", "livez", "readyz", "metrics", "", ".", "..",
            "%2F", "%2e%2e", "%00", "%ff", "job-1", "x" * 4096]
SELECTOR_PARTS = ["deployment", "=", "==", "!=", "in", "notin", "(", ")", ",", "!", " ", "job-1", "job-199",
                  "job-999", "app", "a.b/c", "-", "_", "x" * 300, "é", "\u202e", "%", "&", "=="]
METHODS = ["GET"] * 8 + ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


def _text(rng: random.Random, max_len: int, alphabet: str = PRINTABLE) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(max_len + 1)))


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def https_case(rng: random.Random) -> dict[str, Any]:
    """One request: method, raw path+query, headers, body, whether to present the front-proxy certificate."""
    shape = rng.random()
    if shape < 0.35:  # well-formed metric requests, random selectors
        ns = rng.choice(["default", "kube-system", _quote(_text(rng, 20))]) or "default"
        metric = rng.choice(["faro_desired_replicas"] * 4 + ["other", _quote(_text(rng, 30)) or "m"])
        path = f"{GROUP_PATH}/namespaces/{ns}/{metric}"
    elif shape < 0.5:
        path = rng.choice(["/apis", "/apis/external.metrics.k8s.io", GROUP_PATH, "/healthz", "/livez", "/readyz",
                           "/", "/metrics", "/api", "/openapi/v2", GROUP_PATH + "/namespaces"])
    else:  # mutated paths
        segs = [rng.choice(SEGMENTS) if rng.random() < 0.7 else _quote(_text(rng, 40)) for _ in range(rng.randrange(9))]
        path = "/" + "/".join(segs)
        if rng.random() < 0.1:
            path = path.replace("/", "//", 1)
    query = ""
    if rng.random() < 0.8:
        if rng.random() < 0.5:
            selector = f"deployment={rng.choice(['job-' + str(rng.randrange(N_DEPLOYMENTS + 20)), 'x', ''])}"
        else:
            selector = "".join(rng.choice(SELECTOR_PARTS) for _ in range(rng.randrange(12)))
        query = "labelSelector=" + _quote(selector)
    if rng.random() < 0.1:
        query += ("&" if query else "") + _quote(_text(rng, 10)) + "=" + _quote(_text(rng, 30))
    if rng.random() < 0.05:
        query = "labelSelector=" + _quote("deployment=job-1") + "&labelSelector=" + _quote("deployment=job-2")
    creds = rng.random()
    headers: dict[str, str] = {}
    cert = False
    if creds < 0.45:
        cert = True
        headers["X-Remote-User"] = rng.choice([HPA_USER] * 3 + ["eve", "", " ", _text(rng, 60), "system:masters"])
        for _ in range(rng.randrange(3)):
            headers[rng.choice(["X-Remote-Group", "x-remote-group"])] = _text(rng, 30)
        if rng.random() < 0.2:
            headers["X-Remote-Extra-" + (_text(rng, 8, string.ascii_letters) or "k")] = _text(rng, 30)
    elif creds < 0.75:
        token = rng.choice([GOOD_TOKEN] * 3 + ["wrong", "", _text(rng, 200, string.ascii_letters + string.digits)])
        headers["Authorization"] = rng.choice(["Bearer ", "bearer ", "Basic ", "Bearer  ", ""]) + token
    elif creds < 0.85:
        headers["X-Remote-User"] = HPA_USER  # headers without the certificate: must be ignored (401)
    for _ in range(rng.randrange(3)):
        name = rng.choice(["Accept", "Content-Type", "X-Forwarded-For", "Impersonate-User", "Connection-Foo",
                           "X-" + (_text(rng, 10, string.ascii_letters) or "a")])
        headers[name] = _text(rng, 100).strip()
    method = rng.choice(METHODS)
    body = b""
    if method in ("POST", "PUT", "PATCH") or rng.random() < 0.02:
        size = rng.choice([0, 10, 1000, 70_000, 128 * 1024])
        body = rng.randbytes(size) if rng.random() < 0.5 else json.dumps({"kind": _text(rng, 10)}).encode() * max(
            1, size // 20)
    return {"method": method, "path": path + ("?" + query if query else ""), "headers": headers, "body": body,
            "cert": cert}


@dataclass
class SurfaceResult:
    surface: str
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    nonconforming: int = 0
    client_errors: int = 0  # the client could not send or read (counted, reported; not the server's answer)
    malformed_refused: int = 0  # gRPC: requests that are not valid protobuf, answered INVALID_ARGUMENT by our code
    examples: list[str] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    alive_after: bool = True

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def rss_growth_mib(self) -> float:
        """RSS at the end minus RSS after the first 10% of requests (start-up and warm caches excluded)."""
        if len(self.rss_mib) < 2:
            return 0.0
        return self.rss_mib[-1] - self.rss_mib[max(0, len(self.rss_mib) // 10)]

    def rss_growth_second_half_mib(self) -> float:
        """RSS at the end minus RSS halfway: a leak per request keeps growing here, warm-up does not."""
        if len(self.rss_mib) < 2:
            return 0.0
        return self.rss_mib[-1] - self.rss_mib[len(self.rss_mib) // 2]

    def count_malformed(self, code: str, detail: str) -> None:
        """Count a gRPC refusal of a malformed message (``grpc_decode``'s wording); grpcio's own refusal of one
        (INTERNAL/UNKNOWN "deserializing"/"DecodeError") is not this: it counts as a server error."""
        if code == "INVALID_ARGUMENT" and "is not a valid" in detail and " message (" in detail:
            self.malformed_refused += 1

    def note(self, problem: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(problem[:300])

    def sample(self, i: int, every: int, pid: int, progress: Callable[[int], None] | None) -> None:
        """Every ``every``-th request: the target's RSS, and progress."""
        if i % every == 0:
            self.rss_mib.append(rss_mib(pid))
            if progress:
                progress(i)

    def close(self, statuses: Counter[str], started: float, pid: int) -> None:
        """The run's totals once the last request is answered."""
        self.seconds = time.perf_counter() - started
        self.requests = sum(statuses.values())
        self.statuses = dict(sorted(statuses.items()))
        self.rss_mib.append(rss_mib(pid))


async def fuzz_https(target: Target, *, requests: int, seed: int, concurrency: int = 16,
                     progress: Callable[[int], None] | None = None) -> SurfaceResult:
    import aiohttp
    from yarl import URL

    oracle = Oracle()
    result = SurfaceResult("https")
    statuses: Counter[str] = Counter()
    base = f"https://127.0.0.1:{target.https_port}"
    plain = ssl.create_default_context(cadata=target.serving_ca_pem.decode())
    with_cert = ssl.create_default_context(cadata=target.serving_ca_pem.decode())
    with_cert.load_cert_chain(str(target.front_proxy[0]), str(target.front_proxy[1]))
    timeout = aiohttp.ClientTimeout(total=30)
    counter = iter(range(requests))
    sample_every = max(1, requests // 100)
    started = time.perf_counter()
    async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=plain, limit=concurrency),
                                      timeout=timeout, auto_decompress=False) as anon,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=with_cert, limit=concurrency),
                                      timeout=timeout, auto_decompress=False) as proxy):

        async def worker(wid: int) -> None:
            for i in counter:
                rng = random.Random(seed * 1_000_003 + i)
                case = https_case(rng)
                session = proxy if case["cert"] else anon
                try:
                    async with session.request(case["method"], URL(base + case["path"], encoded=True),
                                               headers=case["headers"], data=case["body"] or None,
                                               skip_auto_headers=("User-Agent",)) as resp:
                        body = await resp.read()
                        status, ctype = resp.status, resp.headers.get("Content-Type", "")
                except (aiohttp.ClientError, ValueError, UnicodeError) as exc:
                    result.client_errors += 1
                    statuses["client-error"] += 1
                    result.note(f"client could not send {case['method']} {case['path'][:120]}: {exc!r}")
                    continue
                statuses[str(status)] += 1
                if status >= 500 and status != 503:
                    result.server_errors += 1
                problem = oracle.check(case["method"], case["path"], status, body, ctype)
                if problem:
                    result.nonconforming += 1
                    result.note(f"{case['method']} {case['path'][:160]} headers={list(case['headers'])}: {problem}")
                result.sample(i, sample_every, target.pid, progress)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.close(statuses, started, target.pid)
    result.alive_after = target.alive() and _healthy(target)
    return result


def _healthy(target: Target) -> bool:
    import http.client

    ctx = ssl.create_default_context(cadata=target.serving_ca_pem.decode())
    conn = http.client.HTTPSConnection("127.0.0.1", target.https_port, context=ctx, timeout=30)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


# KEDA: the codes the scaler documents (adapter/keda.py); anything else is a failure.
KEDA_OK_CODES = {"OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED",
                 "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"}
KEDA_METHODS = ("IsActive", "GetMetricSpec", "GetMetrics")


def keda_case(rng: random.Random) -> tuple[str, bytes]:
    """(method, serialized request): a random valid message, or random bytes (a malformed protobuf)."""
    from faro.externalscaler import externalscaler_pb2 as pb

    method = rng.choice(KEDA_METHODS)
    if rng.random() < 0.15:
        return method, rng.randbytes(rng.choice([0, 1, 7, 100, 5000]))

    def text(limit: int) -> str:
        pick = rng.random()
        if pick < 0.5:
            return rng.choice(["default", "job-1", "job-7", "job-999", "", "kube-system", "faro_desired_replicas"])
        if pick < 0.9:
            return _text(rng, limit)
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(limit)))

    ref = pb.ScaledObjectRef(name=text(40), namespace=text(30))
    for _ in range(rng.choice([0, 1, 2, 3, 64])):
        ref.scalerMetadata[rng.choice(["deployment", "namespace", text(20)])] = text(40)
    if rng.random() < 0.02:
        ref.scalerMetadata["deployment"] = "x" * 16384
    if method == "GetMetrics":
        metric = rng.choice(["faro_desired_replicas", "", "s0-faro_desired_replicas", text(30)])
        return method, pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric).SerializeToString()
    return method, ref.SerializeToString()


async def fuzz_keda(target: Target, *, requests: int, seed: int, concurrency: int = 16,
                    progress: Callable[[int], None] | None = None) -> SurfaceResult:
    import grpc

    result = SurfaceResult("keda")
    statuses: Counter[str] = Counter()
    creds = grpc.ssl_channel_credentials(root_certificates=target.serving_ca_pem)
    counter = iter(range(requests))
    sample_every = max(1, requests // 100)
    started = time.perf_counter()
    async with grpc.aio.secure_channel(f"127.0.0.1:{target.keda_port}", creds) as channel:
        calls = {m: channel.unary_unary(f"/externalscaler.ExternalScaler/{m}") for m in KEDA_METHODS}

        async def worker(wid: int) -> None:
            for i in counter:
                rng = random.Random(seed * 1_000_003 + i)
                method, payload = keda_case(rng)
                detail = ""
                try:
                    await calls[method](payload, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code, detail = exc.code().name, exc.details() or ""
                    if code not in KEDA_OK_CODES:
                        result.note(f"{method} {payload[:80]!r}: {code} {detail}")
                result.count_malformed(code, detail)
                statuses[code] += 1
                if code in ("INTERNAL", "UNKNOWN"):
                    result.server_errors += 1
                elif code not in KEDA_OK_CODES:
                    result.nonconforming += 1
                result.sample(i, sample_every, target.pid, progress)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.close(statuses, started, target.pid)
    result.alive_after = target.alive() and _healthy(target)
    return result


# ------------------------------------------------------------------ the optimizer's plan gRPC API
@dataclass
class PlanTarget:
    """A running ``faro optimizer`` (mTLS plan API, the chart's defaults) and a client identity for it."""

    pid: int
    port: int
    client_tls: Any  # faro.optimizer.service.plan_client.PlanClientTLS
    alive: Callable[[], bool]


class OptimizerProcess:
    """``faro optimizer`` against the test API server (5 Deployments, ``--metrics-source none``); a context
    manager yielding a ``PlanTarget`` once it serves a plan."""

    def __enter__(self) -> PlanTarget:
        from kubeapi import KubeApiServer
        from kubeapi.objects import deployment, quota
        from pki import plan_api_certs

        self._tmp = tempfile.TemporaryDirectory()
        d = Path(self._tmp.name)
        self._server = KubeApiServer(bookmark_interval_s=5.0).start()
        rtype = self._server._rtype
        self._server.create(rtype("", "resourcequotas"), "team-a", quota("q", {"requests.cpu": "20"}))
        for i in range(5):
            self._server.create(rtype("apps", "deployments"), "team-a", deployment(f"job-{i}"))
        certs = plan_api_certs(d)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [sys.executable, "-m", "faro.optimizer.cli", "optimizer",
                f"--kubeconfig={self._server.kubeconfig(d / 'kubeconfig')}", "--metrics-source=none",
                "--no-leader-elect", "--interval-s=5", "--reactive-interval-s=1", f"--grpc-address=127.0.0.1:{port}",
                "--metrics-address=", "--log-format=json", *certs.server_flags()]
        self._log = (d / "optimizer.log").open("wb")
        self._proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        self.client_tls = certs.client_tls()
        target = PlanTarget(self._proc.pid, port, self.client_tls, lambda: self._proc.poll() is None)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self._proc.poll() is None:
            if plan_generation(target) is not None:
                return target
            time.sleep(0.5)
        raise RuntimeError(f"faro optimizer did not serve a plan: {(d / 'optimizer.log').read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(30)
        self._log.close()
        self._server.stop()
        self._tmp.cleanup()


def plan_generation(target: PlanTarget) -> int | None:
    import grpc
    from faro.v1 import plan_pb2, plan_pb2_grpc

    try:
        with target.client_tls.channel(f"127.0.0.1:{target.port}") as channel:
            return plan_pb2_grpc.PlanServiceStub(channel).GetPlan(plan_pb2.GetPlanRequest(), timeout=10).generation
    except grpc.RpcError:
        return None


PLAN_OK_CODES = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "NOT_FOUND",
                 "CANCELLED", "FAILED_PRECONDITION"}
PLAN_METHODS = ("GetPlan", "Solve", "WatchPlans")
PLAN_WAIT_S = 30.0  # for the next plan after a run: 6 of the optimizer's 5 s intervals, for a loaded machine


def plan_case(rng: random.Random) -> tuple[str, bytes]:
    """(method, serialized request): random bytes, or a SolveRequest from sane to huge and malformed."""
    from faro.v1 import plan_pb2

    pick = rng.random()
    if pick < 0.15:
        return rng.choice(PLAN_METHODS), rng.randbytes(rng.choice([0, 1, 9, 200, 5000]))
    if pick < 0.25:
        return "GetPlan", plan_pb2.GetPlanRequest().SerializeToString()
    if pick < 0.28:
        return "WatchPlans", plan_pb2.WatchPlansRequest().SerializeToString()
    odd = [0.0, -1.0, math.nan, math.inf, 1e12, 1e-9]
    req = plan_pb2.SolveRequest(
        objective=rng.choice(["sum", "fair", "fairsum", "penaltysum", "penaltyfairsum", "", "bogus"]),
        solver=rng.choice(["auto", "greedy", "dp", "cvxpy", "cobyla", "", "x" * 50]),
        time_limit_s=rng.choice([0.0, 0.05, 1.0, 1e9, -1.0, math.nan]))
    n_jobs = rng.choice([0, 1, 2, 5, 20, 120, 501]) if rng.random() < 0.98 else 5000  # over the 500-job cap
    horizon = rng.choice([0, 1, 3, 7, 61]) if rng.random() < 0.98 else 500  # over the 60-step cap
    sane = rng.random() < 0.5
    for i in range(n_jobs):
        job = req.jobs.add(name=f"j{i}" if rng.random() < 0.98 else _text(rng, 20), namespace="team-a",
                           slo_latency_ms=200.0 if sane else rng.choice([200.0, *odd]),
                           slo_percentile=99.0 if sane else rng.choice([99.0, 0.0, 100.0, 150.0, math.nan]),
                           processing_time_ms=50.0 if sane else rng.choice([50.0, *odd]),
                           weight=1.0 if sane else rng.choice([1.0, -1.0, 0.0, math.nan]),
                           min_replicas=1 if sane else rng.choice([1, 0, -5, 2**31 - 1]),
                           max_replicas=rng.choice([10, 100, 0]) if sane else rng.choice([10, -1, 2**31 - 1]),
                           current_replicas=1)
        job.rate_rps.extend(rng.uniform(0.0, 50.0) if sane else rng.choice([5.0, *odd])
                            for _ in range(horizon))
        job.resources["cpu"] = 0.5 if sane else rng.choice([0.5, *odd])
    for q in range(rng.choice([0, 1, 2])):
        quota = req.quotas.add(name=f"q{q}", namespace=rng.choice(["", "team-a"]))
        quota.hard["cpu"] = rng.choice([10.0, 1000.0]) if sane else rng.choice([10.0, *odd])
    return "Solve", req.SerializeToString()


async def fuzz_plan(target: PlanTarget, *, requests: int, seed: int, concurrency: int = 8,
                    progress: Callable[[int], None] | None = None) -> SurfaceResult:
    """The plan API: every answer OK or a documented refusal; plans keep coming while it is fuzzed."""
    import grpc

    result = SurfaceResult("plan-grpc")
    statuses: Counter[str] = Counter()
    counter = iter(range(requests))
    sample_every = max(1, requests // 100)
    generation_before = plan_generation(target) or 0
    started = time.perf_counter()
    async with target.client_tls.aio_channel(f"127.0.0.1:{target.port}") as channel:
        unary = {m: channel.unary_unary(f"/faro.v1.PlanService/{m}") for m in ("GetPlan", "Solve")}
        stream = channel.unary_stream("/faro.v1.PlanService/WatchPlans")

        async def worker(wid: int) -> None:
            for i in counter:
                rng = random.Random(seed * 1_000_003 + i)
                method, payload = plan_case(rng)
                detail = ""
                try:
                    if method == "WatchPlans":
                        call = stream(payload, timeout=30)
                        async for _plan in call:
                            break  # one plan, then hang up
                        call.cancel()
                    else:
                        await unary[method](payload, timeout=60)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code, detail = exc.code().name, exc.details() or ""
                result.count_malformed(code, detail)
                if code in ("INTERNAL", "UNKNOWN"):
                    result.server_errors += 1
                    result.note(f"{method} {payload[:60]!r}: {code} {detail}")
                elif code not in PLAN_OK_CODES:
                    result.nonconforming += 1
                    result.note(f"{method} {payload[:60]!r}: {code} {detail}")
                statuses[code] += 1
                result.sample(i, sample_every, target.pid, progress)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.close(statuses, started, target.pid)
    # Alive, answering, and the control loop still publishing: a plan newer than the one before the run (a short
    # run can end before the loop's next tick, so wait up to a few intervals for it).
    generation_after = plan_generation(target)
    deadline = time.monotonic() + PLAN_WAIT_S
    while (generation_after is None or generation_after <= generation_before) and time.monotonic() < deadline:
        time.sleep(0.5)
        generation_after = plan_generation(target)
    result.alive_after = target.alive() and generation_after is not None and generation_after > generation_before
    return result


SURFACES = {"https": fuzz_https, "keda": fuzz_keda, "plan": fuzz_plan}


def run(surfaces: list[str], *, requests: int, seed: int, show_progress: bool = False) -> list[SurfaceResult]:
    """Fuzz each surface in turn: the adapter process for https/keda, the optimizer process for plan (tests call
    this with small ``requests``)."""
    out = []
    adapter_surfaces = [s for s in surfaces if s != "plan"]
    groups = [(AdapterProcess, adapter_surfaces)] if adapter_surfaces else []
    if "plan" in surfaces:
        groups.append((OptimizerProcess, ["plan"]))
    for process, names in groups:
        with process() as target:
            for name in names:
                bar = None
                if show_progress:
                    from tqdm import tqdm

                    bar = tqdm(total=requests, desc=name, unit="req", mininterval=1.0)
                done = [0]

                def tick(i: int, bar: Any = bar, done: list[int] = done) -> None:
                    if bar is not None:
                        bar.update(max(0, i - done[0]))
                        done[0] = max(done[0], i)

                out.append(asyncio.run(SURFACES[name](target, requests=requests, seed=seed, progress=tick)))
                if bar is not None:
                    bar.update(requests - done[0])
                    bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        _serve(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="per surface (default 100000)")
    parser.add_argument("--surfaces", nargs="+", choices=sorted(SURFACES), default=sorted(SURFACES))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results = run(args.surfaces, requests=args.requests, seed=args.seed, show_progress=True)
    heads = ("surface", "requests", "req/s", "5xx", "nonconf", "malformed", "client-err", "RSS start", "RSS end",
             "growth", "2nd half", "alive")
    print(" ".join(f"{h:>10}" for h in heads))
    for r in results:
        print(f"{r.surface:>10} {r.requests:>10} {r.rps:>10.0f} {r.server_errors:>10} {r.nonconforming:>10} "
              f"{r.malformed_refused:>10} {r.client_errors:>10} {r.rss_mib[0]:>10.1f} {r.rss_mib[-1]:>10.1f} "
              f"{r.rss_growth_mib():>10.1f} {r.rss_growth_second_half_mib():>10.1f} {r.alive_after!s:>10}")
    for r in results:
        print(f"{r.surface}: statuses {r.statuses}")
        for example in r.examples:
            print(f"  {example}")
    ok = all(r.server_errors == 0 and r.nonconforming == 0 and r.alive_after for r in results)
    print(f"{'PASS' if ok else 'FAIL'}: 0 server errors, 0 answers outside the documented contract, process alive "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} shared cores)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    command = "python bench/fuzz.py " + " ".join(argv)
    surfaces = [{**asdict(r), "command": command, "seed": args.seed, "rps": r.rps, "rss_growth_mib": r.rss_growth_mib(),
                 "rss_growth_second_half_mib": r.rss_growth_second_half_mib(),
                 "rss_start_mib": r.rss_mib[0], "rss_end_mib": r.rss_mib[-1], "rss_mib": None} for r in results]
    if RESULTS.exists():  # keep the surfaces this run did not fuzz (each row names the run that made it)
        ran = {r.surface for r in results}
        previous = json.loads(RESULTS.read_text()).get("surfaces", [])
        surfaces = [p for p in previous if p["surface"] not in ran] + surfaces
        surfaces.sort(key=lambda r: ["https", "keda", "plan-grpc"].index(r["surface"]))
    RESULTS.write_text(json.dumps({
        "benchmark": "fuzz",
        "command": command,
        "seed": args.seed, "requests_per_surface": args.requests, "deployments": N_DEPLOYMENTS,
        "openapi": str(OPENAPI.relative_to(ROOT)), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0], "passed": ok, "surfaces": surfaces,
    }, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    import docs_tables  # the tables in docs/security.md follow this JSON

    docs_tables.update()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Soak: the adapter under sustained load while plans stream in and the optimizer is restarted twice.

Real processes on loopback: the test Kubernetes API server (``tests/kubeapi``, in this process) holds
``--deployments`` annotated Deployments, their HPAs and a quota; ``faro optimizer`` (``--metrics-source none``,
a new plan every ``--interval-s``) streams plans over gRPC to ``faro adapter`` (HTTPS, delegated auth against
the API server: the load comes as the HPA controller through the aggregator's front-proxy certificate, each
user's SubjectAccessReview cached by the adapter). An open-loop generator sends ``--rps`` requests/s for
``--duration-s`` seconds (at most ``--max-in-flight`` outstanding; a request that cannot start on time is
counted as *not sent*, so the achieved rate is honest). The optimizer is stopped at 1/3 and 2/3 of the run:
the first outage is shorter than the adapter's ``--plan-ttl-s`` (the adapter keeps serving the last plan: no
error may show), the second is longer (the adapter answers the documented 503 once the plan is older than
the TTL, until the restarted optimizer's first plan arrives). Every non-200 outside those windows is an error.
The adapter's RSS is sampled every 5 s; flat means the last fifth of the run holds no more than the first
fifth after warm-up plus a small allowance.

    nice -n 10 python bench/soak.py [--duration-s 600] [--rps 1000]

Prints a table and writes ``bench/results/soak.json``. Loopback only; the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faro.adapter.app import RECONNECT_TTL_FRACTION
from faro.adapter.sources import Backoff

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test API server and PKI
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
NS = "team-a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Proc:
    """A ``faro`` subcommand as a process, output to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "faro.optimizer.cli", *self.args], stdout=out,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Outage:
    stopped_s: float  # seconds since the load started
    restarted_s: float
    longer_than_ttl: bool


@dataclass
class Run:
    sent: int = 0
    not_sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, str, float]] = field(default_factory=list)  # (t since start, status, latency s)
    rss: list[tuple[float, float]] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)


def setup_cluster(server: Any, deployments: int) -> None:
    from kubeapi.objects import deployment, hpa, quota

    create = lambda group, plural, body: server.create(server._rtype(group, plural), NS, body)  # noqa: E731
    create("", "resourcequotas", quota("compute", {"requests.cpu": str(4 * deployments)}))
    ann = {"faro.dev/slo-latency-ms": "300", "faro.dev/processing-time-ms": "100"}
    for i in range(deployments):
        create("apps", "deployments", deployment(f"job-{i}", replicas=1 + i % 3, annotations=dict(ann)))
        create("autoscaling", "horizontalpodautoscalers", hpa(f"job-{i}", max_replicas=20))
    reader = "faro-external-metrics-reader"  # what the chart grants the HPA controller
    server.load([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": reader},
         "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": reader},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
         "subjects": [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]},
    ])


async def load(url: str, ctx: ssl.SSLContext, *, rps: float, duration_s: float, deployments: int,
               max_in_flight: int, run: Run, t0: float) -> None:
    import aiohttp

    headers = {"X-Remote-User": HPA_USER, "X-Remote-Group": "system:serviceaccounts"}
    rng = random.Random(7)
    in_flight = 0
    connector = aiohttp.TCPConnector(ssl=ctx, limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(started: float) -> None:
            nonlocal in_flight
            selector = f"deployment%3Djob-{rng.randrange(deployments)}"
            try:
                async with session.get(f"{url}?labelSelector={selector}") as resp:
                    await resp.read()
                    status = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = f"client:{type(exc).__name__}"
            now = time.monotonic()
            run.statuses[status] += 1
            run.samples.append((started - t0, status, now - started))
            in_flight -= 1

        tasks: set[asyncio.Task[None]] = set()
        tick_s = 0.01
        next_tick = time.monotonic()
        due = 0.0
        while (now := time.monotonic()) - t0 < duration_s:
            due += rps * tick_s
            while due >= 1:
                due -= 1
                if in_flight >= max_in_flight:
                    run.not_sent += 1
                    continue
                in_flight += 1
                run.sent += 1
                task = asyncio.create_task(one(now))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_tick += tick_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        await asyncio.gather(*tasks)


async def drive(args: argparse.Namespace, *, adapter: Proc, optimizer: Proc, url: str, ctx: ssl.SSLContext,
                run: Run) -> None:
    t0 = time.monotonic()
    outages = [(args.duration_s / 3, args.short_outage_s, False), (2 * args.duration_s / 3, args.long_outage_s, True)]

    async def chaos() -> None:
        for at_s, down_s, longer in outages:
            await asyncio.sleep(max(0.0, t0 + at_s - time.monotonic()))
            stopped = time.monotonic() - t0
            await asyncio.to_thread(optimizer.stop)
            await asyncio.sleep(down_s)
            optimizer.start()
            run.outages.append(Outage(stopped, time.monotonic() - t0, longer))

    async def sample_rss() -> None:
        while time.monotonic() - t0 < args.duration_s:
            run.rss.append((time.monotonic() - t0, rss_mib(adapter.pid)))
            await asyncio.sleep(5.0)

    await asyncio.gather(load(url, ctx, rps=args.rps, duration_s=args.duration_s, deployments=args.deployments,
                              max_in_flight=args.max_in_flight, run=run, t0=t0), chaos(), sample_rss())


def classify(run: Run, *, ttl_s: float, interval_s: float, recovery_s: float) -> dict[str, Any]:
    """Split non-200 answers into documented 503s (inside a long outage once the last plan is older than the TTL,
    until the restarted optimizer's plan is back) and errors (anything else)."""
    windows = [(o.stopped_s + ttl_s - interval_s - 1.0, o.restarted_s + recovery_s) for o in run.outages
               if o.longer_than_ttl]
    documented = errors = 0
    first_errors: list[str] = []
    for t, status, _lat in run.samples:
        if status == "200":
            continue
        if status == "503" and any(lo <= t <= hi for lo, hi in windows):
            documented += 1
            continue
        errors += 1
        if len(first_errors) < 10:
            first_errors.append(f"t={t:.1f}s {status}")
    return {"documented_503": documented, "errors": errors, "first_errors": first_errors,
            "documented_503_windows_s": windows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--rps", type=float, default=1000.0)
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--interval-s", type=float, default=5.0, help="optimizer solve interval (a plan each)")
    parser.add_argument("--plan-ttl-s", type=float, default=60.0, help="the adapter's --plan-ttl-s")
    parser.add_argument("--short-outage-s", type=float, default=8.0)
    parser.add_argument("--long-outage-s", type=float, default=75.0)
    args = parser.parse_args(argv)
    reconnect_cap_s = Backoff().capped(args.plan_ttl_s * RECONNECT_TTL_FRACTION).max_s  # as the adapter's start()
    assert args.short_outage_s + reconnect_cap_s + args.interval_s < args.plan_ttl_s < args.long_outage_s, (
        "the short outage + the adapter's reconnect cap must fit in the TTL, the long one must not")

    from kubeapi import KubeApiServer
    from pki import CertificateAuthority, plan_api_certs

    with tempfile.TemporaryDirectory() as tmp, KubeApiServer(bookmark_interval_s=5.0) as server:
        d = Path(tmp)
        setup_cluster(server, args.deployments)
        serving, front = CertificateAuthority("serving-ca"), CertificateAuthority("front-proxy-ca")
        cert, key = serving.issue("faro-adapter", server=True).write(d, "server")
        front_proxy = front.issue("front-proxy-client").write(d, "front-proxy")
        server.load([{"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                      "data": {"requestheader-client-ca-file": front.cert_pem.decode(),
                               "requestheader-allowed-names": '["front-proxy-client"]'}}])
        kubeconfig = server.kubeconfig(d / "kubeconfig")
        grpc_port, https_port = free_port(), free_port()
        plan_api = plan_api_certs(d)  # the plan API's mTLS, as the chart sets it up
        optimizer = Proc(["optimizer", f"--kubeconfig={kubeconfig}", "--metrics-source=none", "--no-leader-elect",
                          f"--interval-s={args.interval_s}", "--reactive-interval-s=1", f"--namespace={NS}",
                          f"--grpc-address=127.0.0.1:{grpc_port}", f"--metrics-address=127.0.0.1:{free_port()}",
                          *plan_api.server_flags(), "--log-format=json"], d / "optimizer.log")
        adapter = Proc(["adapter", f"--kubeconfig={kubeconfig}", f"--optimizer-address=127.0.0.1:{grpc_port}",
                        *plan_api.client_flags(),
                        f"--plan-ttl-s={args.plan_ttl_s}", f"--secure-address=127.0.0.1:{https_port}",
                        f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
                        f"--metrics-address=127.0.0.1:{free_port()}", "--log-format=json"], d / "adapter.log")
        ctx = ssl.create_default_context(cadata=serving.cert_pem.decode())
        ctx.load_cert_chain(str(front_proxy[0]), str(front_proxy[1]))
        url = f"https://127.0.0.1:{https_port}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/faro_desired_replicas"
        run = Run()
        optimizer.start()
        adapter.start()
        try:
            _wait_ready(url, ctx, timeout_s=180)
            print(f"soak: {args.rps:.0f} req/s for {args.duration_s:.0f} s, optimizer restarts at 1/3 "
                  f"(down {args.short_outage_s:.0f} s) and 2/3 (down {args.long_outage_s:.0f} s), TTL "
                  f"{args.plan_ttl_s:.0f} s", flush=True)
            asyncio.run(drive(args, adapter=adapter, optimizer=optimizer, url=url, ctx=ctx, run=run))
            adapter_alive = adapter.alive()
        finally:
            optimizer.stop()
            adapter.stop()
        log_tail = (d / "adapter.log").read_text(errors="replace")[-2000:]

    # After an outage the adapter reconnects within its back-off cap (min(30 s, TTL/4), adapter/app.py) and the
    # restarted optimizer needs start-up + one interval for its first plan (up to ~30 s on a loaded 2-core box).
    verdict = classify(run, ttl_s=args.plan_ttl_s, interval_s=args.interval_s, recovery_s=reconnect_cap_s + 30.0)
    latencies = sorted(lat for _, s, lat in run.samples if s == "200")
    pct = lambda p: 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0  # noqa: E731
    rss = [m for _, m in run.rss]
    warm = rss[2] if len(rss) > 2 else (rss[-1] if rss else float("nan"))  # after 10 s: imports, TLS, caches
    rss_growth = rss[-1] - warm if rss else float("nan")
    half = rss[len(rss) // 2:]
    rss_growth_last_half = (half[-1] - half[0]) if half else float("nan")
    achieved = len(run.samples) / args.duration_s
    # Flat: no growth over the second half of the run (a leak grows steadily with requests) and a bounded total
    # (one-off steps such as a new thread's malloc arena are allowed, a few tens of MiB).
    flat = rss_growth_last_half < 4.0 and rss_growth < 64.0
    ok = verdict["errors"] == 0 and adapter_alive and flat
    print(f"{'requests':>9} {'achieved':>9} {'not sent':>9} {'200':>9} {'doc 503':>8} {'errors':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'RSS MiB':>15} {'growth':>7} {'2nd half':>8}")
    print(f"{len(run.samples):>9} {achieved:>9.0f} {run.not_sent:>9} {run.statuses['200']:>9} "
          f"{verdict['documented_503']:>8} {verdict['errors']:>7} {pct(0.5):>7.1f} {pct(0.99):>7.1f} "
          f"{warm:>7.1f}->{(rss[-1] if rss else 0):<7.1f} {rss_growth:>7.1f} {rss_growth_last_half:>8.1f}")
    print(f"statuses {dict(run.statuses)}; outages {[(round(o.stopped_s), round(o.restarted_s)) for o in run.outages]}")
    for e in verdict["first_errors"]:
        print("  error:", e)
    print(f"{'PASS' if ok else 'FAIL'}: 0 errors besides the documented 503s, adapter alive, RSS flat "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} shared cores)")
    if not ok:
        print(log_tail)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "soak",
        "command": "python bench/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": vars(args), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0], "passed": ok,
        "requests": len(run.samples), "achieved_rps": achieved, "not_sent": run.not_sent,
        "statuses": dict(run.statuses), **verdict, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        "outages": [vars(o) for o in run.outages], "adapter_alive": adapter_alive,
        "rss_mib": [[round(t, 1), round(m, 1)] for t, m in run.rss], "rss_growth_mib": rss_growth,
        "rss_growth_last_half_mib": rss_growth_last_half,
        "per_minute": _per_minute(run),
    }, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    import docs_tables  # the tables in docs/security.md follow this JSON

    docs_tables.update()
    return 0 if ok else 1


def _per_minute(run: Run) -> list[dict[str, Any]]:
    rows: dict[int, Counter[str]] = {}
    for t, status, _ in run.samples:
        rows.setdefault(int(t // 60), Counter())[status] += 1
    return [{"minute": m, **dict(c)} for m, c in sorted(rows.items())]


def _wait_ready(url: str, ctx: ssl.SSLContext, *, timeout_s: float) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url + "?labelSelector=deployment%3Djob-0",
                                 headers={"X-Remote-User": HPA_USER, "X-Remote-Group": "system:serviceaccounts"})
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"the adapter did not serve a plan within {timeout_s:.0f} s: {last}")


if __name__ == "__main__":
    sys.exit(main())

"""``faro status``: the live optimizer's current plan, like ``kubectl get hpa``, and why one Deployment got
its replica count.

Registered in ``faro.optimizer.cli``. Reads the plan over the optimizer's gRPC API (``GetPlan``, or the
``WatchPlans`` stream with ``--watch``); the connection flags and credentials come from the one plan API
client (``faro.optimizer.service.plan_client``: TLS, a client certificate or a token). Forms: a table
(``-o wide`` adds columns), ``-o json`` (the plan with its targets, field names as in ``faro.v1.Plan``),
and ``faro status NAMESPACE/DEPLOYMENT`` explaining one decision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from faro.optimizer.service import plan_client

OUTPUTS = ("table", "wide", "json")
DEFAULT_ADDRESS = "localhost:50051"  # e.g. kubectl -n faro-system port-forward svc/faro-optimizer 50051


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("deployment", nargs="?", metavar="NAMESPACE/DEPLOYMENT",
                        help="explain this Deployment's decision instead of listing all")
    parser.add_argument("--optimizer-address", default=os.environ.get("FARO_OPTIMIZER_ADDRESS", DEFAULT_ADDRESS),
                        metavar="HOST:PORT", help="the optimizer's plan gRPC API (env FARO_OPTIMIZER_ADDRESS; "
                        f"default: {DEFAULT_ADDRESS}, e.g. through kubectl port-forward)")
    parser.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table (default), wide or json")
    parser.add_argument("-w", "--watch", action="store_true", help="print again on every new plan (WatchPlans)")
    parser.add_argument("--watch-count", type=int, metavar="N",
                        help="with --watch: stop after N plans (default: until interrupted)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="how long to wait for the optimizer")
    plan_client.add_arguments(parser)  # TLS, client certificate or token: the one plan API client


# ----------------------------------------------------------------------------------------------- formatting
def _age(seconds: float) -> str:
    """kubectl's way: 45s, 3m10s, 2h5m, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m"
    return f"{s // 86400}d"


def _ms(value: float) -> str:
    return f"{value:.0f}ms" if value > 0 and math.isfinite(value) else "-"


def _latency_vs_slo(t: Any) -> str:
    if t.slo_latency_ms <= 0:
        return "-"
    pct = f"p{t.slo_percentile:g}" if t.slo_percentile else "p?"
    expected = f"{t.expected_latency_ms:.0f}" if t.expected_latency_ms > 0 else "-"
    return f"{pct} {expected}/{t.slo_latency_ms:g}ms"


def _rate(t: Any) -> str:
    return f"{t.forecast_rps:.1f}/s" if t.forecast_rps > 0 else "-"


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def plan_table(plan: Any, *, now_s: float, wide: bool = False, namespace: str | None = None) -> str:
    """The ``kubectl get hpa``-like table of a ``faro.v1.Plan``."""
    age = _age(now_s - plan.created.ToNanoseconds() / 1e9)
    head = ["NAMESPACE", "DEPLOYMENT", "DESIRED", "CURRENT", "READY", "FORECAST", "LATENCY/SLO", "UTILITY", "HELD",
            "AGE"]
    if wide:
        head += ["OBSERVED", "QUANTILE", "ADMIT", "STALE", "LIMITED-BY"]
    rows = [head]
    for t in plan.targets:
        if namespace and t.namespace != namespace:
            continue
        held = t.held_reason or "-"
        row = [t.namespace, t.deployment, str(t.desired_replicas), str(t.current_replicas), str(t.ready_replicas),
               _rate(t), _latency_vs_slo(t), f"{t.expected_utility:.2f}" if not t.held_reason else "-",
               held if wide or len(held) <= 40 else held[:39] + "…", age]
        if wide:
            row += [_ms(t.observed_latency_ms), f"{t.forecast_quantile:g}" if t.forecast_quantile else "-",
                    f"{t.admission:.0%}" if t.admission < 1 else "-",
                    _age(t.observations_age_s) if t.stale else "-", t.binding_quota or "-"]
        rows.append(row)
    kind = {"solve": "long-horizon solve", "reactive": "reactive step", "hold": "hold"}.get(plan.kind, plan.kind)
    title = (f"plan {plan.generation} ({kind}, {age} ago, policy {plan.policy or '?'}, leader {plan.leader or '?'}"
             + (f", solver {plan.solver_status}" if plan.solver_status else "") + ")")
    if len(rows) == 1:
        return title + "\nno Deployments" + (f" in namespace {namespace}" if namespace else "") + "\n"
    return title + "\n" + _columns(rows) + "\n"


def plan_json(plan: Any, *, now_s: float, namespace: str | None = None) -> dict[str, Any]:
    """The plan as JSON: every ``faro.v1.Plan``/``Target`` field under its proto name (defaults included),
    times as RFC 3339, plus ``age_s``."""
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(plan, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    doc["targets"] = [d for d, t in zip(doc.get("targets", []), plan.targets, strict=True)
                      if not namespace or t.namespace == namespace]
    doc["age_s"] = round(now_s - plan.created.ToNanoseconds() / 1e9, 3)
    return doc


def explain(plan: Any, namespace: str, name: str, *, now_s: float) -> str:
    """Why ``namespace/name`` got its replica count in ``plan``, in a few labelled lines."""
    from faro.optimizer.errors import InvalidInputError

    t = next((x for x in plan.targets if (x.namespace, x.deployment) == (namespace, name)), None)
    if t is None:
        known = ", ".join(f"{x.namespace}/{x.deployment}" for x in plan.targets[:10]) or "none"
        raise InvalidInputError(f"{namespace}/{name}", f"not in the current plan (Deployments planned: {known})")
    pct = f"p{t.slo_percentile:g}" if t.slo_percentile else "latency"
    lines = [f"{namespace}/{name}: {t.desired_replicas} replicas "
             f"(plan {plan.generation}, {plan.kind or '?'} step, {_age(now_s - plan.created.ToNanoseconds() / 1e9)}"
             f" ago, policy {plan.policy or '?'})"]

    def line(label: str, text: str) -> None:
        lines.append(f"  {label:<16}{text}")

    line("replicas", f"desired {t.desired_replicas}, current {t.current_replicas} (spec.replicas), "
         f"ready {t.ready_replicas}")
    if t.held_reason:
        line("held", f"{t.held_reason} (kept at its current replicas)")
    if t.slo_latency_ms > 0:
        line("SLO", f"{pct} <= {t.slo_latency_ms:g} ms")
    if t.forecast_rps > 0:
        q = f"the {t.forecast_quantile:g} quantile of " if t.forecast_quantile else ""
        line("forecast", f"{t.forecast_rps:.2f} requests/s: {q}the load forecast, peak over the horizon")
    if t.steady_latency_ms > 0:
        parts = []
        if t.desired_replicas > 1:
            fewer = _ms(t.latency_one_fewer_ms) if t.latency_one_fewer_ms else "overloaded"
            parts.append(f"{t.desired_replicas - 1} replicas {fewer}")
        parts.append(f"{t.desired_replicas} (chosen) {_ms(t.steady_latency_ms)}")
        parts.append(f"{t.desired_replicas + 1} {_ms(t.latency_one_more_ms)}")
        line(f"expected {pct}", ", ".join(parts) + " (model, at the forecast, once replicas are ready)")
    if t.expected_latency_ms > 0:
        line("plan latency", f"{_ms(t.expected_latency_ms)} worst step of the horizon, including new replicas' "
             "cold start")
    if not t.held_reason:
        line("utility", f"{t.expected_utility:.3f} (1 = SLO met over the horizon)")
        if t.admission < 1:
            line("admission", f"{t.admission:.1%} of requests admitted")
        line("limited by", t.binding_quota or "nothing: one more replica fits every quota; the model gained "
             "too little from it")
    if t.observed_latency_ms > 0:
        stale = f" (stale: observations {_age(t.observations_age_s)} old)" if t.stale else ""
        line(f"observed {pct}", f"{_ms(t.observed_latency_ms)} over the last window{stale}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- running
def run(args: argparse.Namespace) -> int:
    import grpc
    from faro.optimizer.errors import InvalidInputError
    from faro.v1 import plan_pb2, plan_pb2_grpc

    target: tuple[str, str] | None = None
    if args.deployment:
        namespace, sep, name = args.deployment.partition("/")
        if not sep or not namespace or not name:
            raise InvalidInputError("NAMESPACE/DEPLOYMENT", f"expected e.g. team-a/resnet, got {args.deployment!r}")
        target = (namespace, name)
    if args.watch_count is not None and args.watch_count < 1:
        raise InvalidInputError("--watch-count", f"must be >= 1, got {args.watch_count}")

    def show(plan: Any) -> None:
        now_s = time.time()
        if target is not None:
            sys.stdout.write(explain(plan, *target, now_s=now_s))
        elif args.output == "json":
            json.dump(plan_json(plan, now_s=now_s, namespace=args.namespace), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(plan_table(plan, now_s=now_s, wide=args.output == "wide", namespace=args.namespace))
        sys.stdout.flush()

    channel = plan_client.from_args(args).channel(args.optimizer_address)
    try:
        stub = plan_pb2_grpc.PlanServiceStub(channel)
        if not args.watch:
            show(stub.GetPlan(plan_pb2.GetPlanRequest(), timeout=args.timeout_s))
            return 0
        _watch(stub.WatchPlans(plan_pb2.WatchPlansRequest()), show, count=args.watch_count)
        return 0
    except grpc.RpcError as exc:
        return _rpc_error(exc, args.optimizer_address)
    finally:
        channel.close()


def _watch(plans: Iterable[Any], show: Callable[[Any], None], *, count: int | None) -> None:
    for shown, plan in enumerate(plans, start=1):
        if shown > 1:
            sys.stdout.write("\n")
        show(plan)
        if count is not None and shown >= count:
            break


def _rpc_error(exc: Any, address: str) -> int:
    import grpc

    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.NOT_FOUND:
        print(f"faro status: the optimizer at {address} has published no plan yet", file=sys.stderr)
    elif code == grpc.StatusCode.UNAVAILABLE:
        print(f"faro status: cannot reach a leading optimizer at {address}: {exc.details()}", file=sys.stderr)
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        print(f"faro status: no answer from {address} in time", file=sys.stderr)
    else:
        print(f"faro status: {address}: {code.name if code else 'error'}: "
              f"{exc.details() if hasattr(exc, 'details') else exc}", file=sys.stderr)
    return 1

"""``faro optimizer``: run the live optimizer (control loop + plan gRPC API) against a cluster.

Registered in ``faro.optimizer.cli``. Every flag also reads ``FARO_<FLAG_IN_UPPER_SNAKE>`` (the
Helm chart templates these; keep them stable). Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading

from faro.optimizer.errors import InvalidInputError
from faro.optimizer.policy.names import DEFAULT_POLICY, FARO_POLICY_NAMES
from faro.optimizer.service.whatif import DEFAULT_SOLVERS

POLICIES = FARO_POLICY_NAMES


def _env(flag: str, default: object) -> object:
    return os.environ.get("FARO_" + flag.upper().replace("-", "_"), default)


def _bool_env(flag: str, default: bool) -> bool:
    value = os.environ.get("FARO_" + flag.upper().replace("-", "_"))
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def add(flag: str, default: object, help_text: str, **kw: object) -> None:
        # the default is appended by faro's help formatter (optimizer/cli.py) unless help_text states it
        parser.add_argument(f"--{flag}", default=_env(flag, default), help=f"{help_text} (env FARO_"
                            f"{flag.upper().replace('-', '_')})", **kw)  # type: ignore[arg-type]

    add("kubeconfig", None, "kubeconfig file (default: in-cluster config, else ~/.kube/config)")
    add("namespace", None, "watch only this namespace (default: all namespaces)")
    add("prometheus-url", None, "Prometheus base URL (required unless --metrics-source none)")
    add("metrics-source", "prometheus", "where observations come from", choices=("prometheus", "none"))
    add("metrics-preset", "generic", "PromQL preset (annotation faro.dev/metrics-preset overrides)",
        choices=("generic", "ray-serve", "vllm"))  # presets.PRESETS
    add("calibration-span-s", 900.0, "LLM engine-profile calibration (vllm preset): how far back its windows reach, "
        "s; 0 turns calibration off (docs/vllm.md)", type=float)
    add("calibration-window-s", 30.0, "LLM engine-profile calibration: length of one window (one row of the fit), s; "
        "at most 1000 windows per span", type=float)
    add("policy", DEFAULT_POLICY, "scaling policy", choices=POLICIES)
    # planning defaults are the policy's own, the same as faro simulate's (registry.planning_options)
    add("interval-s", None, "long-horizon solve interval (default: the policy's, 300)", type=float)
    add("reactive-interval-s", 10.0, "control-loop tick: the fast reactive step cadence", type=float)
    add("horizon", None, "forecast steps in minutes (default: the policy's, 7; raised to reach past a new "
        "replica's start-up)", type=int)
    add("quantile", None, "highest forecast quantile the policy raises its plan to while resources are left "
        "(default: the policy's, 0.9; its base quantile is lowered to this if higher)", type=float)
    add("hpa-tolerance", None, "HPA dead-band the plan accounts for (default 0.1 with --actuator hpa, else 0)",
        type=float)
    add("cluster-cap", "", "optional cluster-wide cap, e.g. cpu=320,memory=1Ti,nvidia.com/gpu=8 (default: no cap)")
    add("plan-ttl-s", 900.0, "plan valid_until = created + ttl", type=float)
    add("history-minutes", 60, "per-minute rate history asked from Prometheus each tick", type=int)
    add("history-backfill-minutes", 1440, "per-minute history asked once for a Deployment with none yet (start, "
        "leadership gain, newly annotated), so forecasts fit on past load, not only on the minutes since start; "
        "retried on later cycles if it fails; equal to --history-minutes turns it off", type=int)
    add("max-history-minutes", None, "per-Deployment history kept in memory for the forecaster (trimmed by up to an "
        "hour when longer), >= --history-backfill-minutes and > --history-minutes (default: max(1440, "
        "--history-backfill-minutes, --history-minutes + 60))", type=int)
    add("grpc-address", "0.0.0.0:50051", "plan gRPC API (faro.v1.PlanService + grpc.health.v1)")
    api = parser.add_argument_group("plan API security and bounds (see docs/security.md)")

    def sec(flag: str, default: object, help_text: str, **kw: object) -> None:
        # the default is appended by faro's help formatter (optimizer/cli.py), never "None"
        api.add_argument(f"--{flag}", default=_env(flag, default), help=f"{help_text} (env FARO_"
                         f"{flag.upper().replace('-', '_')})", **kw)  # type: ignore[arg-type]

    sec("grpc-tls-cert-file", None, "serving certificate of the plan API (PEM; re-read when it changes)")
    sec("grpc-tls-private-key-file", None, "its key")
    sec("grpc-client-auth", "mtls", "mtls: a client certificate from --grpc-client-ca-file is required; token: "
        "a bearer token reviewed by TokenReview + SubjectAccessReview (get/watch plans.faro.dev, create "
        "solves.faro.dev)", choices=("mtls", "token"))
    sec("grpc-client-ca-file", None, "CA of the client certificates (mtls)")
    sec("grpc-allowed-client-names", "", "comma-separated client certificate CNs allowed (mtls; empty: any CN "
        "the CA signed)")
    api.add_argument("--grpc-insecure", action="store_true", default=_bool_env("grpc-insecure", False),
                     help="LOCAL DEVELOPMENT ONLY: plaintext plan API, no client authentication "
                     "(env FARO_GRPC_INSECURE)")
    sec("grpc-max-message-bytes", 4 * 1024 * 1024, "largest request message accepted", type=int)
    sec("grpc-max-concurrent-calls", 64, "calls served at once, open WatchPlans streams included (beyond: "
        "RESOURCE_EXHAUSTED)", type=int)
    sec("grpc-max-streams-per-caller", 16, "open WatchPlans streams per caller identity", type=int)
    sec("solve-max-jobs", 500, "jobs in one what-if Solve", type=int)
    sec("solve-max-horizon", 60, "rate_rps steps per job in one Solve", type=int)
    sec("solve-max-quotas", 100, "quotas in one Solve", type=int)
    sec("solve-max-cells", 4_000_000, "jobs x steps x replica counts of the widest job in one Solve (the size "
        "of its utility tables)", type=int)
    sec("solve-max-time-s", 10.0, "time limit of one Solve; the caller's time_limit_s or deadline can only lower "
        "it (then DEADLINE_EXCEEDED)", type=float)
    sec("solve-solvers", ",".join(DEFAULT_SOLVERS), "solvers a Solve may name (cobyla is slow: off by default)")
    sec("solve-max-concurrent", 2, "what-if solves running at once on this replica (each in its own process)",
        type=int)
    sec("solve-max-per-caller", 1, "what-if solves running at once per caller identity", type=int)
    add("metrics-address", "0.0.0.0:8080", "plain HTTP: /metrics, /healthz, /readyz")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction,
                        default=_bool_env("leader-elect", True),
                        help="elect one active replica on a coordination.k8s.io Lease (env FARO_LEADER_ELECT; "
                        "default: on)")
    add("lease-name", "faro-optimizer", "Lease name")
    add("lease-namespace", os.environ.get("POD_NAMESPACE", "faro-system"),
        "Lease namespace (default: $POD_NAMESPACE, else faro-system)")
    add("lease-duration-s", 15, "Lease duration", type=int)
    add("renew-deadline-s", 10, "leader gives up after failing to renew for this long", type=int)
    add("retry-period-s", 2, "Lease retry/renew period", type=int)
    add("identity", os.environ.get("POD_NAME") or socket.gethostname(),
        "this replica's identity in the Lease (default: $POD_NAME, else the host name)")
    add("actuator", "hpa", "hpa = publish plans only; ray-serve also scales Ray Serve directly",
        choices=("hpa", "ray-serve"))
    add("ray-dashboard-url", None, "Ray dashboard URL (required with --actuator ray-serve)")
    add("ray-token-file", None, "bearer token file for the Ray dashboard (default: no token)")
    add("log-format", "text", "log format", choices=("text", "json"))


def _api_client(kubeconfig: str | None):
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config()
    except (config.ConfigException, OSError) as exc:
        raise InvalidInputError("--kubeconfig", f"cannot load a Kubernetes configuration: {exc}") from exc


def build_policy(args: argparse.Namespace, *, policy_options=None):
    """The policy the flags describe: ``faro simulate``'s for the same name (``registry.planning_options``;
    the planning flags configure Faro's policies only, the baselines take their own options), plus the HPA
    dead-band when plans go through standard HPAs, plus ``policy_options`` no flag sets."""
    from faro.optimizer.policy.registry import FARO_POLICY_NAMES, make_policy, planning_options

    def given(value, cast):
        return None if value is None else cast(value)

    options = dict(policy_options or {})
    if args.policy in FARO_POLICY_NAMES:
        options = {**planning_options(args.policy, actuation="direct", interval_s=given(args.interval_s, float),
                                      horizon=given(args.horizon, int), quantile=given(args.quantile, float)),
                   **options}
        tolerance = args.hpa_tolerance if args.hpa_tolerance is not None else (0.1 if args.actuator == "hpa" else 0.0)
        options.setdefault("hpa_tolerance", float(tolerance))
    return make_policy(args.policy, **options)


def build_service(args: argparse.Namespace, *, api_client=None, metrics_source=None, registry=None, clock=None,
                  solve=None, policy_options=None):
    """The ``OptimizerService`` the flags describe (tests inject the client, metrics source, clock and the
    what-if solve function, and may add policy options no flag sets, e.g. the hpa-cpu baseline's
    ``quota_order``)."""
    from faro.optimizer.policy.registry import make_policy
    from faro.optimizer.service.app import LeaderSettings, OptimizerService
    from faro.optimizer.service.config import ServiceConfig, parse_cluster_cap

    policy = build_policy(args, policy_options=policy_options)
    defaults = make_policy(DEFAULT_POLICY)  # the service config's planning fields when a baseline runs
    config = ServiceConfig(
        policy=args.policy, interval_s=float(getattr(policy, "interval_s", defaults.interval_s)),
        reactive_interval_s=float(args.reactive_interval_s), horizon=int(getattr(policy, "horizon", defaults.horizon)),
        quantile=float(getattr(policy, "max_quantile", defaults.max_quantile)),
        cluster_cap=parse_cluster_cap(args.cluster_cap),
        plan_ttl_s=float(args.plan_ttl_s), history_minutes=int(args.history_minutes),
        history_backfill_minutes=int(args.history_backfill_minutes),
        max_history_minutes=None if args.max_history_minutes is None else int(args.max_history_minutes),
        metrics_preset=args.metrics_preset, namespace=args.namespace or None, identity=args.identity,
    )
    if metrics_source is None:
        metrics_source = _metrics_source(args)
    actuators = []
    if args.actuator == "ray-serve":
        actuators.append(_ray_actuator(args))
    leader = LeaderSettings(enabled=bool(args.leader_elect), name=args.lease_name, namespace=args.lease_namespace,
                            lease_duration_s=int(args.lease_duration_s), renew_deadline_s=int(args.renew_deadline_s),
                            retry_period_s=int(args.retry_period_s))
    api_client = api_client or _api_client(args.kubeconfig)
    return OptimizerService(config, api_client=api_client, policy=policy, plan_api=plan_api_settings(args, api_client),
                            metrics_source=metrics_source, registry=registry, grpc_address=args.grpc_address,
                            metrics_address=args.metrics_address or None, leader=leader, actuators=actuators,
                            **({"clock": clock} if clock is not None else {}),
                            **({"solve": solve} if solve is not None else {}))


def plan_api_settings(args: argparse.Namespace, api_client: object):
    """TLS, client authentication and bounds of the plan API from the flags (InvalidInputError names the flag)."""
    import logging
    import time
    from pathlib import Path

    from faro.optimizer.kube.auth import AccessAuthorizer, KubeReviewer, TokenAuthenticator
    from faro.optimizer.service.app import PlanAPISettings
    from faro.optimizer.service.grpc_security import CallGuard, ServerTLS
    from faro.optimizer.service.whatif import SolveLimits

    limits = SolveLimits(
        max_jobs=int(args.solve_max_jobs), max_horizon=int(args.solve_max_horizon),
        max_quotas=int(args.solve_max_quotas), max_cells=int(args.solve_max_cells),
        max_time_s=float(args.solve_max_time_s),
        solvers=tuple(s.strip() for s in str(args.solve_solvers).split(",") if s.strip()),
        max_concurrent=int(args.solve_max_concurrent), max_per_caller=int(args.solve_max_per_caller),
    )
    for flag in ("grpc_max_message_bytes", "grpc_max_concurrent_calls", "grpc_max_streams_per_caller"):
        if int(getattr(args, flag)) < 1:
            raise InvalidInputError("--" + flag.replace("_", "-"), f"must be >= 1, got {getattr(args, flag)}")
    names = tuple(n.strip() for n in str(args.grpc_allowed_client_names or "").split(",") if n.strip())
    tls_flags = [f for f in ("grpc_tls_cert_file", "grpc_tls_private_key_file", "grpc_client_ca_file") if
                 getattr(args, f)] + (["grpc_allowed_client_names"] if names else [])
    if args.grpc_insecure:
        if tls_flags:
            raise InvalidInputError("--grpc-insecure", "plaintext takes no " +
                                    ", ".join("--" + f.replace("_", "-") for f in tls_flags))
        banner = "!" * 100
        logging.getLogger("faro.optimizer").warning(
            "%s\n--grpc-insecure: the plan API (plans and what-if solves) answers ANYONE who can reach %s, in "
            "plaintext and without authentication. For local development only; never in a cluster.\n%s",
            banner, args.grpc_address, banner)
        tls, guard = None, CallGuard(mode="insecure")
    else:
        if not (args.grpc_tls_cert_file and args.grpc_tls_private_key_file):
            raise InvalidInputError("--grpc-tls-cert-file/--grpc-tls-private-key-file",
                                    "are required: the plan API serves TLS only (--grpc-insecure for local "
                                    "development)")
        tls = ServerTLS(cert_file=Path(args.grpc_tls_cert_file), key_file=Path(args.grpc_tls_private_key_file),
                        client_auth=args.grpc_client_auth,
                        client_ca_file=Path(args.grpc_client_ca_file) if args.grpc_client_ca_file else None,
                        allowed_client_names=names)
        tokens = access = None
        if tls.client_auth == "token":
            reviewer = KubeReviewer(api_client)
            tokens = TokenAuthenticator(reviewer, clock=time.monotonic)
            access = AccessAuthorizer(reviewer, clock=time.monotonic)
        guard = CallGuard(mode=tls.client_auth, allowed_client_names=names, tokens=tokens, access=access)
    return PlanAPISettings(tls=tls, guard=guard, solve_limits=limits,
                           max_receive_bytes=int(args.grpc_max_message_bytes),
                           max_workers=int(args.grpc_max_concurrent_calls),
                           max_streams_per_caller=int(args.grpc_max_streams_per_caller))


class _NoMetrics:
    """``--metrics-source none``: every Deployment is held ("no metrics"); useful to dry-run wiring."""

    def observe(self, deployments, *, now_s, history_minutes):
        return {ref.key: "metrics source disabled (--metrics-source none)" for ref in deployments}


def _metrics_source(args: argparse.Namespace):
    if args.metrics_source == "none":
        return _NoMetrics()
    if not args.prometheus_url:
        raise InvalidInputError("--prometheus-url", "is required unless --metrics-source none")
    from faro.optimizer.metrics.prometheus import PrometheusClient, PrometheusSource

    span_s, window_s = args.calibration_span_s, args.calibration_window_s
    if not window_s > 0:
        raise InvalidInputError("--calibration-window-s", f"must be > 0, got {window_s!r}")
    if not 0 <= span_s <= 1000 * window_s:
        raise InvalidInputError("--calibration-span-s", f"must be in [0, 1000 x --calibration-window-s = "
                                f"{1000 * window_s:g}], got {span_s!r}")
    return PrometheusSource(PrometheusClient(args.prometheus_url), calibration_span_s=span_s,
                            calibration_step_s=window_s)


def _ray_actuator(args: argparse.Namespace):
    if not args.ray_dashboard_url:
        raise InvalidInputError("--ray-dashboard-url", "is required with --actuator ray-serve")
    try:
        from faro.optimizer.actuate.ray_serve import RayNames, RayServeActuator
    except ImportError as exc:
        raise InvalidInputError("--actuator", f"ray-serve actuator unavailable: {exc}") from exc
    # The token file is re-read on every apply so a rotated token is picked up.
    return RayServeActuator(args.ray_dashboard_url, token_file=args.ray_token_file or None, resolve=RayNames())


def run(args: argparse.Namespace) -> int:
    from faro.optimizer.service.logs import configure

    configure(args.log_format)
    service = build_service(args).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    service.stop()
    return 0

"""``faro adapter``: serve the optimizer's plans as ``external.metrics.k8s.io`` and/or a KEDA external scaler.

Registered in ``optimizer/cli.py``. Every flag also reads ``FARO_<FLAG_IN_UPPER_SNAKE>`` (e.g.
``FARO_OPTIMIZER_ADDRESS``). Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from faro.optimizer.service import plan_client

_TRUE = {"1", "true", "yes", "on"}


def _env(flag: str, default: Any = None) -> Any:
    return os.environ.get("FARO_" + flag.lstrip("-").replace("-", "_").upper(), default)


def _env_bool(flag: str) -> bool:
    return str(_env(flag, "")).strip().lower() in _TRUE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def opt(flag: str, default: Any = None, **kw: Any) -> None:
        parser.add_argument(flag, default=_env(flag, default), **kw)

    src = parser.add_argument_group("plan source (exactly one)")
    src.add_argument("--optimizer-address", default=_env("--optimizer-address"), metavar="HOST:PORT",
                     help="subscribe to faro.v1.PlanService/WatchPlans at this address")
    src.add_argument("--plan-file", default=_env("--plan-file"), type=Path, metavar="FILE",
                     help="serve a static plan (protobuf JSON of faro.v1.Plan), re-read when it changes")
    plan_client.add_arguments(parser)
    parser.add_argument("--ignore-plan-expiry", action="store_true", default=_env_bool("--ignore-plan-expiry"),
                        help="(--plan-file only) serve the plan even past its validUntil / the TTL")
    opt("--plan-ttl-s", 600.0, type=float, help="never serve a plan older than this (default 600)")
    opt("--mode", "apiService", choices=["apiService", "keda", "both"],
        help="apiService: external.metrics.k8s.io over HTTPS; keda: KEDA external scaler gRPC; both")
    opt("--secure-address", "0.0.0.0:6443", metavar="HOST:PORT", help="HTTPS External Metrics API (+ health)")
    opt("--tls-cert-file", type=Path, metavar="PATH", help="serving certificate (PEM)")
    opt("--tls-private-key-file", type=Path, metavar="PATH", help="serving key (PEM)")
    opt("--keda-address", "0.0.0.0:9443", metavar="HOST:PORT", help="KEDA external scaler gRPC (modes keda/both)")
    opt("--keda-tls-cert-file", type=Path, metavar="PATH", help="TLS certificate of the KEDA server (required in "
        "modes keda/both; re-read when it changes)")
    opt("--keda-tls-private-key-file", type=Path, metavar="PATH", help="its key")
    opt("--keda-client-ca-file", type=Path, metavar="PATH",
        help="require KEDA to present a client certificate from this CA (trigger authParams tlsClientCert/Key)")
    opt("--keda-allowed-client-names", "", metavar="CN,...",
        help="client certificate CNs admitted (with --keda-client-ca-file; empty: any that CA signed)")
    parser.add_argument("--keda-allow-cross-namespace", action="store_true",
                        default=_env_bool("--keda-allow-cross-namespace"),
                        help="let a ScaledObject read a Deployment in another namespace (trigger metadata "
                        "`namespace`); default: its own namespace only (env FARO_KEDA_ALLOW_CROSS_NAMESPACE)")
    parser.add_argument("--keda-insecure", action="store_true", default=_env_bool("--keda-insecure"),
                        help="LOCAL DEVELOPMENT ONLY: plaintext KEDA gRPC (env FARO_KEDA_INSECURE)")
    opt("--metrics-address", "0.0.0.0:8081", metavar="HOST:PORT", help="plain HTTP /metrics")
    opt("--kubeconfig", type=Path, metavar="PATH",
        help="for TokenReview/SubjectAccessReview and the auth ConfigMap (default: in-cluster, else ~/.kube/config)")
    opt("--requestheader-client-ca-file", type=Path, metavar="PATH",
        help="front-proxy CA (default: from ConfigMap kube-system/extension-apiserver-authentication)")
    opt("--auth-config-poll-s", 10.0, type=float, metavar="SECONDS",
        help="re-read kube-system/extension-apiserver-authentication this often: rotated CAs apply without a "
        "restart (default 10)")
    parser.add_argument("--disable-auth", action="store_true", default=_env_bool("--disable-auth"),
                        help="LOCAL DEVELOPMENT ONLY: serve anyone without authentication or authorisation")
    opt("--log-format", "text", choices=["text", "json"], help="log line format")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import time

    from faro.adapter.app import Adapter, AdapterConfig
    from faro.adapter.logs import configure_logging

    configure_logging(args.log_format)
    log = logging.getLogger("faro.adapter")
    config = AdapterConfig(
        optimizer_address=args.optimizer_address or None,
        optimizer_tls=plan_client.from_args(args) if args.optimizer_address else plan_client.PlanClientTLS(),
        plan_file=args.plan_file,
        ignore_plan_expiry=args.ignore_plan_expiry,
        plan_ttl_s=float(args.plan_ttl_s),
        mode=args.mode,
        secure_address=args.secure_address,
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        keda_address=args.keda_address,
        keda_tls_cert_file=args.keda_tls_cert_file,
        keda_tls_private_key_file=args.keda_tls_private_key_file,
        keda_client_ca_file=args.keda_client_ca_file,
        keda_allowed_client_names=tuple(n.strip() for n in str(args.keda_allowed_client_names or "").split(",")
                                        if n.strip()),
        keda_allow_cross_namespace=bool(args.keda_allow_cross_namespace),
        keda_insecure=bool(args.keda_insecure),
        metrics_address=args.metrics_address or None,
    )
    if config.keda_insecure and config.mode != "apiService":
        banner = "!" * 100
        log.warning("%s\n--keda-insecure: the KEDA scaler answers ANYONE who can reach %s, in plaintext. For local "
                    "development only; never in a cluster.\n%s", banner, config.keda_address, banner)
    authenticator = authorizer = auth_source = None
    client_ca_pem = None
    if config.mode != "keda":
        if args.disable_auth:
            banner = "!" * 100
            log.warning(
                "%s\n--disable-auth: the External Metrics API answers ANYONE who can reach it, without "
                "authentication or authorisation. For local development only; never in a cluster.\n%s",
                banner, banner,
            )
        else:
            authenticator, authorizer, client_ca_pem, auth_source = _delegated_auth(args)

    async def main() -> int:
        adapter = Adapter(
            config, authenticator=authenticator, authorizer=authorizer, clock=time.time, client_ca_pem=client_ca_pem,
            auth_source=auth_source, auth_poll_s=float(args.auth_config_poll_s),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await adapter.start()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await adapter.stop()
        return 0

    return asyncio.run(main())


def _delegated_auth(args: argparse.Namespace) -> tuple[Any, Any, str, Any]:
    import logging
    import time

    from faro.adapter.auth import AuthConfigSource, Authenticator, Authorizer, load_auth_configmap
    from faro.optimizer.errors import InvalidInputError
    from faro.optimizer.kube.auth import KubeReviewer
    from kubernetes import client, config

    log = logging.getLogger("faro.adapter")
    cfg = client.Configuration()
    try:
        if args.kubeconfig:
            config.load_kube_config(config_file=str(args.kubeconfig), client_configuration=cfg)
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(client_configuration=cfg)
    except (config.ConfigException, OSError) as exc:
        raise InvalidInputError("--kubeconfig", f"no usable Kubernetes configuration: {exc}") from exc
    api_client = client.ApiClient(cfg)
    override = None
    if args.requestheader_client_ca_file:
        try:
            override = Path(args.requestheader_client_ca_file).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--requestheader-client-ca-file {args.requestheader_client_ca_file}",
                                    f"cannot read: {exc.strerror or exc}") from exc
    source = AuthConfigSource(lambda: load_auth_configmap(api_client), requestheader_ca_pem=override)
    auth_config = source.load()  # InvalidInputError (one line, exit 2) when unreadable or without any CA
    if auth_config.requestheader is None:
        log.warning("no requestheader-client-ca-file: requests proxied by kube-apiserver cannot be authenticated")
    reviewer = KubeReviewer(api_client)
    authn = Authenticator(auth_config, token_reviewer=reviewer, clock=time.monotonic)
    authz = Authorizer(reviewer, clock=time.monotonic)
    return authn, authz, auth_config.trusted_ca_pem, source

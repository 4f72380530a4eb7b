"""KEDA external scaler (``externalscaler.ExternalScaler``): translate KEDA's gRPC calls to ``PlanProvider`` calls.

Served by ``adapter/app.py`` in modes ``keda`` and ``both``, over TLS (with the chart, KEDA also presents a
client certificate from the chart's CA, given to it by the ClusterTriggerAuthentication the chart makes).
A ScaledObject trigger::

    triggers:
      - type: external
        metadata:
          scalerAddress: faro-keda-scaler.faro-system.svc:9443
          deployment: resnet          # default: the ScaledObject's name
        authenticationRef: {name: faro-keda, kind: ClusterTriggerAuthentication}

A ScaledObject reads only Deployments of its own namespace (``ScaledObjectRef.namespace``, which KEDA fills
from the ScaledObject): a ``namespace`` in the trigger metadata that names another one is PERMISSION_DENIED
unless the adapter runs with ``--keda-allow-cross-namespace``.

``GetMetricSpec`` answers one metric ``faro_desired_replicas`` with target 1 (``targetSize`` and
``targetSizeFloat``), which KEDA turns into an AverageValue target, so the HPA's desired replicas =
ceil(value). ``GetMetrics`` answers the plan's desired replicas (``metricValue`` and ``metricValueFloat``);
``IsActive`` is true when that is > 0. Domain errors become gRPC status codes here and only here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc
from faro.adapter.errors import ForbiddenError, MetricNotFoundError, NoFreshPlanError, NotFoundError
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import DEPLOYMENT_LABEL, METRIC_NAME, PlanStore
from faro.adapter.selector import Selector
from faro.externalscaler import externalscaler_pb2 as pb
from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc
from faro.optimizer.errors import InvalidInputError, TransientError

log = logging.getLogger("faro.adapter.keda")

TARGET_SIZE = 1
SERVICE = pb.DESCRIPTOR.services_by_name["ExternalScaler"]  # served through grpc_decode (app.py)


def _code(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ForbiddenError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, NoFreshPlanError | TransientError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def target_of(ref: pb.ScaledObjectRef, *, allow_cross_namespace: bool = False) -> tuple[str, str]:
    """(namespace, deployment) a ScaledObjectRef names through its ``scalerMetadata``; ForbiddenError when it
    names another namespace than the ScaledObject's own and that is not allowed."""
    md = ref.scalerMetadata
    namespace = md.get("namespace") or ref.namespace
    deployment = md.get(DEPLOYMENT_LABEL) or ref.name
    if not namespace or not deployment:
        raise InvalidInputError(
            f"ScaledObject {ref.namespace}/{ref.name} trigger metadata",
            "needs `deployment` (or a ScaledObject name) and a namespace",
        )
    if namespace != ref.namespace and not allow_cross_namespace:
        raise ForbiddenError(
            f"ScaledObject {ref.namespace or '<no namespace>'}/{ref.name} may read only Deployments in its own "
            f"namespace, not {namespace}/{deployment} (the adapter's --keda-allow-cross-namespace allows it)"
        )
    return namespace, deployment


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """grpc.aio servicer over a ``PlanStore`` (a ``PlanProvider`` that also says when plans change)."""

    def __init__(
        self,
        provider: PlanStore,
        *,
        metrics: AdapterMetrics,
        allow_cross_namespace: bool = False,
        allowed_client_names: tuple[str, ...] | None = None,
        stream_poll_s: float = 5.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._provider = provider
        self._metrics = metrics
        self._cross_namespace = allow_cross_namespace
        # None: no client certificates (TLS only); () any the handshake verified; else these CNs only.
        self._client_names = allowed_client_names
        self._stream_poll_s = stream_poll_s
        self._perf = clock

    def _check_client(self, context: grpc.aio.ServicerContext) -> None:
        """The client certificate's CN, when certificates are required and names are restricted."""
        if not self._client_names:
            return
        names = [v.decode(errors="replace") for v in context.auth_context().get("x509_common_name", [])]
        if not names or names[0] not in self._client_names:
            raise ForbiddenError(f"client certificate CN {names[0] if names else '(none)'!r} is not in "
                                 "--keda-allowed-client-names")

    def _target(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        self._check_client(context)
        return target_of(ref, allow_cross_namespace=self._cross_namespace)

    def _desired(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> int:
        namespace, deployment = self._target(ref, context)
        selector = Selector.equals(**{DEPLOYMENT_LABEL: deployment})
        return self._provider.get_external_metric(namespace, METRIC_NAME, selector).value

    async def _fail(self, context: grpc.aio.ServicerContext, handler: str, exc: Exception) -> None:
        code = _code(exc)
        if isinstance(exc, NoFreshPlanError):
            self._metrics.stale_responses.labels("keda").inc()
        if code == grpc.StatusCode.INTERNAL:
            log.exception("KEDA %s failed", handler, exc_info=exc)
        self._metrics.requests.labels("keda", handler, code.name).inc()
        await context.abort(code, str(exc))

    async def malformed(self, method: str, context: grpc.aio.ServicerContext, message: str) -> None:
        """A request that is not valid protobuf (``grpc_decode``): the client is checked as for any call, then
        INVALID_ARGUMENT."""
        try:
            self._check_client(context)
            raise InvalidInputError(f"KEDA {method} request", message)
        except Exception as exc:
            await self._fail(context, method, exc)

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        try:
            desired = self._desired(request, context)
        except Exception as exc:
            await self._fail(context, "IsActive", exc)
            raise  # unreachable: abort raises
        self._metrics.requests.labels("keda", "IsActive", "OK").inc()
        return pb.IsActiveResponse(result=desired > 0)

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """Push the active state at once and whenever it changes (plans pushed, or checked every poll)."""
        last: bool | None = None
        while True:
            version = self._provider.version
            try:
                active: bool | None = self._desired(request, context) > 0
            except (NoFreshPlanError, NotFoundError):
                active = None  # nothing to say: KEDA keeps its last state
            except Exception as exc:
                await self._fail(context, "StreamIsActive", exc)
                return
            if active is not None and active != last:
                last = active
                yield pb.IsActiveResponse(result=active)
            await self._provider.wait_changed(version, self._stream_poll_s)

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        try:
            self._target(request, context)
        except Exception as exc:
            await self._fail(context, "GetMetricSpec", exc)
            raise
        self._metrics.requests.labels("keda", "GetMetricSpec", "OK").inc()
        spec = pb.MetricSpec(metricName=METRIC_NAME, targetSize=TARGET_SIZE, targetSizeFloat=float(TARGET_SIZE))
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        start = self._perf()
        try:
            if request.metricName and request.metricName != METRIC_NAME:
                raise MetricNotFoundError(request.metricName)
            desired = self._desired(request.scaledObjectRef, context)
        except Exception as exc:
            await self._fail(context, "GetMetrics", exc)
            raise
        self._metrics.requests.labels("keda", "GetMetrics", "OK").inc()
        self._metrics.request_seconds.labels("keda").observe(self._perf() - start)
        value = pb.MetricValue(metricName=METRIC_NAME, metricValue=desired, metricValueFloat=float(desired))
        return pb.GetMetricsResponse(metricValues=[value])

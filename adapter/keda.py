"""KEDA external scaler (``externalscaler.ExternalScaler``): translate KEDA's gRPC calls to ``PlanProvider`` calls.

Served by ``adapter/app.py`` in modes ``keda`` and ``both``. A ScaledObject trigger::

    triggers:
      - type: external
        metadata:
          scalerAddress: faro-adapter.faro-system.svc:9443
          deployment: resnet          # default: the ScaledObject's name
          namespace: team-a           # default: the ScaledObject's namespace

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
from faro.adapter.errors import MetricNotFoundError, NoFreshPlanError, NotFoundError
from faro.adapter.metrics import AdapterMetrics
from faro.adapter.provider import DEPLOYMENT_LABEL, METRIC_NAME, PlanStore
from faro.adapter.selector import Selector
from faro.externalscaler import externalscaler_pb2 as pb
from faro.externalscaler import externalscaler_pb2_grpc as pb_grpc
from faro.optimizer.errors import InvalidInputError, TransientError

log = logging.getLogger("faro.adapter.keda")

TARGET_SIZE = 1


def _code(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NoFreshPlanError | TransientError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def target_of(ref: pb.ScaledObjectRef) -> tuple[str, str]:
    """(namespace, deployment) a ScaledObjectRef names through its ``scalerMetadata``."""
    md = ref.scalerMetadata
    namespace = md.get("namespace") or ref.namespace
    deployment = md.get(DEPLOYMENT_LABEL) or ref.name
    if not namespace or not deployment:
        raise InvalidInputError(
            f"ScaledObject {ref.namespace}/{ref.name} trigger metadata",
            "needs `deployment` (or a ScaledObject name) and a namespace",
        )
    return namespace, deployment


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """grpc.aio servicer over a ``PlanStore`` (a ``PlanProvider`` that also says when plans change)."""

    def __init__(
        self,
        provider: PlanStore,
        *,
        metrics: AdapterMetrics,
        stream_poll_s: float = 5.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._provider = provider
        self._metrics = metrics
        self._stream_poll_s = stream_poll_s
        self._perf = clock

    def _desired(self, ref: pb.ScaledObjectRef) -> int:
        namespace, deployment = target_of(ref)
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

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        try:
            desired = self._desired(request)
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
                active: bool | None = self._desired(request) > 0
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
            target_of(request)
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
            desired = self._desired(request.scaledObjectRef)
        except Exception as exc:
            await self._fail(context, "GetMetrics", exc)
            raise
        self._metrics.requests.labels("keda", "GetMetrics", "OK").inc()
        self._metrics.request_seconds.labels("keda").observe(self._perf() - start)
        value = pb.MetricValue(metricName=METRIC_NAME, metricValue=desired, metricValueFloat=float(desired))
        return pb.GetMetricsResponse(metricValues=[value])

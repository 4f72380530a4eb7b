"""Register a gRPC servicer whose request messages are parsed by our code, not by grpcio.

Used by ``grpc_api.PlanServer`` (the plan API, a sync ``grpc.server``) and the adapter's KEDA scaler
(``grpc.aio``) instead of the generated ``add_*Servicer_to_server``.

Why: with the generated handlers grpcio parses each request before the servicer runs, and a message that is not
valid protobuf is answered ``INTERNAL`` ("Exception deserializing request!", sync server) or ``UNKNOWN``
(grpc.aio). Worse, grpcio's sync server (1.85) then never finishes the call: its state and the core call stay
referenced for the life of the process (about 2 KiB each; 10⁵ fuzzed plan API calls grew the optimizer by
200 MiB). Registering the methods with no request deserializer hands over the raw bytes, which these wrappers
parse: a malformed message goes to ``on_malformed`` (the servicer checks the caller first, as it would for any
call, then refuses ``INVALID_ARGUMENT`` naming the message type), and grpcio finishes the call normally.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

# (method name, context, what is wrong): must abort the call (sync) / be awaited and abort (grpc.aio).
OnMalformed = Callable[[str, Any, str], Any]


def malformed_message(method: MethodDescriptor, exc: Exception) -> str:
    return (f"the request is not a valid {method.input_type.full_name} message ({exc}); "
            f"{method.containing_service.full_name}/{method.name} takes a serialized {method.input_type.full_name}")


def default_on_malformed(method: str, context: Any, message: str) -> Any:
    return context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


def _decode(method: MethodDescriptor, raw: bytes) -> tuple[Message | None, str]:
    try:
        return GetMessageClass(method.input_type).FromString(raw), ""
    except DecodeError as exc:
        return None, malformed_message(method, exc)


def _sync_handler(method: MethodDescriptor, behavior: Callable[..., Any], on_malformed: OnMalformed,
                  serializer: Callable[[Any], bytes]) -> grpc.RpcMethodHandler:
    if method.server_streaming:
        def stream(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
            request, problem = _decode(method, raw)
            if request is None:
                on_malformed(method.name, context, problem)  # aborts
                return
            yield from behavior(request, context)

        return grpc.unary_stream_rpc_method_handler(stream, response_serializer=serializer)

    def unary(raw: bytes, context: grpc.ServicerContext) -> Any:
        request, problem = _decode(method, raw)
        if request is None:
            return on_malformed(method.name, context, problem)  # aborts
        return behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serializer)


def _aio_handler(method: MethodDescriptor, behavior: Callable[..., Any],
                 on_malformed: Callable[[str, Any, str], Awaitable[Any]],
                 serializer: Callable[[Any], bytes]) -> grpc.RpcMethodHandler:
    if method.server_streaming:
        async def stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request, problem = _decode(method, raw)
            if request is None:
                await on_malformed(method.name, context, problem)  # aborts
                return
            async for response in behavior(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(stream, response_serializer=serializer)

    async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        request, problem = _decode(method, raw)
        if request is None:
            return await on_malformed(method.name, context, problem)  # aborts
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serializer)


def add_servicer(server: grpc.Server | grpc.aio.Server, servicer: object, service: ServiceDescriptor, *,
                 on_malformed: OnMalformed | None = None) -> None:
    """Serve every method of ``service`` (unary or server-streaming) from the same-named method of ``servicer``.

    ``on_malformed(method_name, context, message)`` is called for a request that does not parse; it must abort
    the call (for a grpc.aio server it is a coroutine function). Default: ``INVALID_ARGUMENT`` with the message."""
    aio = isinstance(server, grpc.aio.Server)
    if on_malformed is None:
        on_malformed = _aio_default if aio else default_on_malformed
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        if method.client_streaming:
            raise NotImplementedError(f"{service.full_name}/{method.name}: client streaming is not supported")
        serializer = GetMessageClass(method.output_type).SerializeToString
        behavior = getattr(servicer, method.name)
        make = _aio_handler if aio else _sync_handler
        handlers[method.name] = make(method, behavior, on_malformed, serializer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


async def _aio_default(method: str, context: grpc.aio.ServicerContext, message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

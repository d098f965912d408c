"""The gRPC edge: handler registration, error mapping, health, reflection and graceful stop."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError

from services.common import errors
from services.common.logging import get_logger

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
ZH_LOCALE = "zh-CN"  # the locale of a refusal's Chinese text (google.rpc.LocalizedMessage)
CALLS = Counter("onestop_grpc_calls_total", "gRPC calls handled", ["method", "code"])
LATENCY = Histogram("onestop_grpc_seconds", "gRPC handling time", ["method"])

_CODES: dict[type[errors.DomainError], tuple[grpc.StatusCode, int]] = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    errors.FailedPrecondition: (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    errors.PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    errors.AlreadyExists: (grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    errors.DataLoss: (grpc.StatusCode.DATA_LOSS, code_pb2.DATA_LOSS),
}


class _Malformed:
    """Stands in for a request that did not parse, so the edge answers INVALID_ARGUMENT."""

    def __init__(self, error: str) -> None:
        self.error = error


def _deserializer(cls: type[Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError) as exc:
            return _Malformed(str(exc))

    return parse


def status_for(exc: errors.DomainError, *, domain: str) -> grpc.Status:
    """The rich status (ErrorInfo reason, the Chinese text, field violation) of a domain error."""
    code, code_value = next(
        (v for k, v in _CODES.items() if isinstance(exc, k)),
        (grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    )
    del code
    detail = status_pb2.Status(code=code_value, message=exc.message)
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=domain)
    detail.details.add().Pack(info)
    if exc.zh:
        detail.details.add().Pack(error_details_pb2.LocalizedMessage(locale=ZH_LOCALE, message=exc.zh))
    if exc.field:
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=exc.field, description=exc.message)
        detail.details.add().Pack(bad)
    return rpc_status.to_status(detail)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, *, domain: str, method: str) -> None:
    if isinstance(exc, errors.DomainError):
        status = status_for(exc, domain=domain)
        CALLS.labels(method, status.code.name).inc()
        await context.abort_with_status(status)
    if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or isinstance(exc, ConnectionError):
        # The database restarted or is unreachable: a retry will get a fresh connection.
        log.warning("database connection lost during a call", method=method, error=str(exc)[:200])
        CALLS.labels(method, "UNAVAILABLE").inc()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry")
    ref = uuid.uuid4().hex[:12]
    log.error("unhandled error in gRPC method", method=method, reference=ref, exc_info=exc)
    CALLS.labels(method, "INTERNAL").inc()
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {ref})")


MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31, as protobuf defines


def validate_message(msg: Message, path: str = "") -> None:
    """Refuse what no store can keep: NUL characters in text, impossible timestamps (at any depth)."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        seconds, nanos = msg.seconds, msg.nanos  # type: ignore[attr-defined]
        if not (MIN_SECONDS <= seconds <= MAX_SECONDS and 0 <= nanos <= 999_999_999):
            raise errors.InvalidArgument(
                f"{path or 'timestamp'} is not a valid instant", field=path, zh="日期时间不在有效范围内"
            )
        return
    for field, value in msg.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        values = value if field.is_repeated else [value]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values = [f"{k}{v}" if isinstance(v, str) else k for k, v in value.items()]
        for item in values:
            if isinstance(item, str) and "\x00" in item:
                raise errors.InvalidArgument(
                    f"{where} contains a NUL character", field=where, zh="填写的内容含有无法保存的控制字符"
                )
            if isinstance(item, Message):
                validate_message(item, where)


def _wrap(method: MethodDescriptor, fn: Callable[..., Any], domain: str) -> Callable[..., Any]:
    name = method.full_name
    # The method's metric children, looked up once rather than on every call.
    calls_ok = CALLS.labels(name, "OK")
    latency = LATENCY.labels(name)

    def check(request: Any) -> None:
        if isinstance(request, _Malformed):
            raise errors.InvalidArgument(
                f"malformed {method.input_type.full_name}: {request.error}", zh="请求格式不正确，无法读取"
            )
        validate_message(request)

    if method.server_streaming:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                check(request)
                async for item in fn(request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status
                await _abort(context, exc, domain=domain, method=name)

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with latency.time():
            try:
                if not method.client_streaming:
                    check(request)
                result = await fn(request, context)
                calls_ok.inc()
                return result
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status
                await _abort(context, exc, domain=domain, method=name)

    return unary


def add_servicer(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> str:
    """Register every method of `service` implemented by `servicer`, behind the error edge."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    domain = service.full_name
    for method in service.methods:
        fn = getattr(servicer, method.name, None)
        if fn is None or not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            continue
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        kwargs: dict[str, Any] = {
            "request_deserializer": _deserializer(request_cls),
            "response_serializer": response_cls.SerializeToString,
        }
        wrapped = _wrap(method, fn, domain)
        if method.client_streaming and method.server_streaming:
            handler = grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)
        elif method.client_streaming:
            handler = grpc.stream_unary_rpc_method_handler(wrapped, **kwargs)
        elif method.server_streaming:
            handler = grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
        else:
            handler = grpc.unary_unary_rpc_method_handler(wrapped, **kwargs)
        handlers[method.name] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    return service.full_name


def new_server() -> grpc.aio.Server:
    """A grpc.aio server with size limits on messages."""
    return grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )


class Health:
    """The standard health service; SERVING only while every check passes."""

    def __init__(self, server: grpc.aio.Server, services: list[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._services = ["", *services]
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def set(self, serving: bool) -> None:
        """Report every service as SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._services:
            await self.servicer.set(name, status)


def enable_reflection(server: grpc.aio.Server, services: list[str]) -> None:
    """Serve gRPC reflection for our services and health."""
    names = [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)

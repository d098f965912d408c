"""Wires intake: settings → runtime → handlers, gRPC servicers and event consumers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import grpc

from onestop.intake.v1 import intake_pb2
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.logging import get_logger
from services.common.rpc import insecure_channel
from services.common.runtime import Runtime, ServiceParts
from services.common.settings import Settings, seconds
from services.intake import consumers, handlers, model, orm
from services.intake.convenience_api import servicers as convenience_servicers
from services.intake.documents import DocumentStore, LocalDocumentStore, StoreUnusable
from services.intake.grpc_api import IntakeApi
from services.intake.interconnect import build_interconnect

# Facts from other services that change what the applicant sees.
CONSUMED = (
    "case_routed",
    "case_forwarded",
    "task_opened",
    "task_decided",
    "supplement_round_opened",
    "extension_decided",
    "special_procedure_started",
    "special_procedure_ended",
    "case_concluded",
    "task_urged",
    "task_deemed_approved",
    "case_delivered",
    "evaluation_submitted",
)
log = get_logger(__name__)
MATTER_TTL_ENV = "ONESTOP_MATTER_CACHE_S"  # how long a new catalogue version may take to reach intake
DEFAULT_MATTER_TTL_S = 30.0


class RoutingMatters:
    """Looks matters up in routing's catalogue over gRPC, with a short cache."""

    def __init__(self, address: str, ttl: float = DEFAULT_MATTER_TTL_S) -> None:
        self._stub = routing_pb2_grpc.RoutingServiceStub(insecure_channel(address))
        self._ttl = ttl
        self._cache: dict[str, tuple[float, handlers.MatterView]] = {}

    async def get(self, code: str) -> handlers.MatterView:
        """The current version of matter `code`."""
        hit = self._cache.get(code)
        if hit and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        try:
            matter: routing_pb2.Matter = await self._stub.GetMatter(
                routing_pb2.GetMatterRequest(code=code), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"unknown matter code {code!r}",
                    field="matter_code",
                    zh=f"事项目录中没有编码为 {code} 的事项，请核对事项编码",
                ) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(
                    exc.details() or "bad matter code", field="matter_code", zh="事项编码缺失或格式不正确"
                ) from None
            raise Unavailable(
                f"the catalogue is not reachable: {exc.details()}", zh="暂时无法连接事项目录，请稍后重试"
            ) from None
        view = handlers.MatterView(
            code=matter.code,
            version=matter.version,
            on_the_spot=matter.on_the_spot,
            materials=tuple(
                model.MaterialRule(m.code, m.name_zh, m.mandatory, tuple(m.accepted_types), m.max_bytes)
                for m in matter.materials
            ),
        )
        self._cache[code] = (time.monotonic(), view)
        return view


STORE_WAIT_ENV = "ONESTOP_DOCUMENT_STORE_WAIT_S"  # how long to wait at start for an unreachable store
DEFAULT_STORE_WAIT_S = 60.0


async def open_document_store(
    settings: Settings, *, wait_s: float | None = None
) -> tuple[DocumentStore, list[Callable[[], Awaitable[None]]]]:
    """The configured document store, checked, and what must run beside it; refuses to start otherwise.

    A misconfigured store (no bucket, no credentials, access denied) fails at once; an unreachable one is
    waited for up to ONESTOP_DOCUMENT_STORE_WAIT_S. Either way the process stops before it serves, so it
    never reports SERVING with a store it cannot write to.
    """
    if settings.document_store == "local":
        return LocalDocumentStore(settings.data_dir / "documents"), []
    from services.intake.documents_s3 import S3DocumentStore  # aiobotocore only where S3 is chosen

    store = await S3DocumentStore(
        url=settings.document_store,
        scratch=settings.data_dir / "documents-spool",
        addressing_style=settings.s3_addressing_style,
    ).open()
    wait = seconds(STORE_WAIT_ENV, DEFAULT_STORE_WAIT_S) if wait_s is None else wait_s
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            await store.check()
            break
        except StoreUnusable as exc:
            if not exc.transient or time.monotonic() + delay > deadline:
                log.error("document store unusable; not starting", store=store.url, problem=str(exc))
                await store.close()
                raise
            log.warning("document store not reachable yet", store=store.url, problem=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    log.info("document store ready", store=store.url, endpoint=store.endpoint)
    return store, [store.hold]


async def build(runtime: Runtime, *, matters: Any = None) -> ServiceParts:
    """Intake's servicers and handlers."""
    settings = runtime.settings
    ctx = handlers.IntakeContext(
        center=settings.center,
        matters=matters
        or RoutingMatters(settings.peer("routing"), seconds(MATTER_TTL_ENV, DEFAULT_MATTER_TTL_S)),
        clock=runtime.clock,
    )
    store, keep = await open_document_store(settings)
    api = IntakeApi(runtime=runtime, ctx=ctx, store=store)
    link = build_interconnect(runtime, ctx, store)  # docs/INTERCONNECT.md
    return ServiceParts(
        servicers=[
            (api, intake_pb2.DESCRIPTOR.services_by_name["IntakeService"]),
            *link.servicers,
            *convenience_servicers(runtime, ctx),
        ],
        handlers={name: partial(consumers.on_event, ctx=ctx) for name in CONSUMED},
        prefetch=consumers.prefetch,
        background=[*keep, *link.background],
        extra_servers=link.extra_servers,
    )


TABLES = (orm.outbox, orm.inbox)

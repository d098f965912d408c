"""The parent's Interconnect service (mutual TLS): child nodes upload cases and watch their results.

The caller's center is read from its verified client certificate, never from the request; it must
be a direct child of this center, and it only ever sees or changes the cases it uploaded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import grpc
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common import ratings
from services.common.audit import append
from services.common.db import insert_ignore
from services.common.errors import DomainError, FailedPrecondition, NotFound, PermissionDenied, Unavailable
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.rpc import insecure_channel
from services.common.runtime import Runtime
from services.common.tls import peer_center
from services.intake import feed, handlers, orm
from services.intake.interconnect_uploads import (
    ForeignCase,
    Uploads,
    call_record,
    check_child_case_id,
    not_uploaded_by_zh,
)
from services.intake.received_documents import ReceivedDocuments

log = get_logger(__name__)
CHILDREN_TTL_S = 60.0
T = TypeVar("T")
# A case is rated once it is decided (a withdrawn case is concluded too, with the outcome WITHDRAWN).
CLOSED = (common_pb2.CASE_STATUS_CONCLUDED, common_pb2.CASE_STATUS_DELIVERED)
FEED_BATCH = 256
IDLE_WAIT_S = 1.0


def _error(exc: DomainError) -> str:
    """How a refused call's error reads in its audit record."""
    return f"{exc.reason}: {exc.message}"[:2000]


def number_zh(row: dict[str, Any]) -> str:
    """A case as a Chinese refusal names it: by its number, or as "该报件" before it has one."""
    return f"报件 {row['case_number']} " if row["case_number"] else "该报件"


class ChildCenters:
    """The centers directly under this one, from routing's organisation (cached)."""

    def __init__(self, *, center: str, routing_address: str) -> None:
        self._center = center
        self._stub = routing_pb2_grpc.RoutingServiceStub(insecure_channel(routing_address))
        self._cached: tuple[float, frozenset[str]] | None = None

    async def get(self) -> frozenset[str]:
        """The child center codes."""
        if self._cached and time.monotonic() - self._cached[0] < CHILDREN_TTL_S:
            return self._cached[1]
        try:
            reply = await self._stub.ListCenters(
                routing_pb2.ListCentersRequest(parent=self._center), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            if self._cached:
                return self._cached[1]
            raise Unavailable(
                f"the organisation is not reachable: {exc.details()}",
                zh="暂时无法连接组织机构信息，请稍后重试",
            ) from None
        self._cached = (time.monotonic(), frozenset(c.code for c in reply.centers))
        return self._cached[1]


class InterconnectApi:
    """Implements onestop.interconnect.v1.Interconnect for the parent node."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        ctx: handlers.IntakeContext,
        received: ReceivedDocuments,
        children: ChildCenters,
    ) -> None:
        self.rt = runtime
        self.ctx = ctx
        self.received = received
        self.children = children
        self.uploads = Uploads(runtime=runtime, ctx=ctx)

    async def _audit(self, center: str, method: str, child_case_id: str, detail: str) -> None:
        async with self.rt.engine.begin() as conn:
            record = call_record(center, method, child_case_id, allowed=False, reason=detail[:2000])
            await append(conn, orm.audit, **record)
            await conn.execute(
                orm.interconnect_audit.insert().values(
                    at=datetime.now(UTC),
                    center=center[:64],
                    method=method,
                    child_case_id=child_case_id[:64],
                    allowed=False,
                    detail=detail[:2000],
                )
            )
        log.warning("interconnect call refused", caller=center, method=method, detail=detail)

    async def _record(self, center: str, method: str, child_case_id: str = "", **detail: Any) -> None:
        """Chain the record of a call that wrote nothing else (its own short transaction)."""
        async with self.rt.engine.begin() as conn:
            await append(conn, orm.audit, **call_record(center, method, child_case_id, **detail))

    async def _audited(
        self, center: str, method: str, child_case_id: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Run a call that writes no audit record of its own and chain one for it, answered or refused."""
        try:
            result = await call()
        except DomainError as exc:
            await self._record(center, method, child_case_id, error=_error(exc))
            raise
        await self._record(center, method, child_case_id)
        return result

    async def _caller(self, context: Any, method: str) -> str:
        center = peer_center(context)
        if not center:
            await self._audit("?", method, "", "client certificate names no center")
            raise PermissionDenied(
                "the client certificate names no center",
                zh="客户端证书未载明中心编码，无法确认是哪个下级中心",
            )
        if center not in await self.children.get():
            await self._audit(center, method, "", f"{center} is not a child of {self.ctx.center}")
            raise PermissionDenied(
                f"center {center} is not a child of {self.ctx.center}",
                zh=f"中心 {center} 不是本中心（{self.ctx.center}）的下级中心",
            )
        return center

    async def _own_case(self, center: str, child_case_id: str, method: str) -> dict[str, Any]:
        try:
            check_child_case_id(child_case_id)
        except DomainError as exc:
            await self._record(center, method, child_case_id, error=_error(exc))
            raise
        async with self.rt.engine.connect() as conn:
            rows = (
                (await conn.execute(select(orm.cases).where(orm.cases.c.origin_case_id == child_case_id)))
                .mappings()
                .all()
            )
        mine = [dict(r) for r in rows if r["origin_center"] == center]
        if mine:
            return mine[0]
        if rows:
            await self._audit(center, method, child_case_id, f"case uploaded by {rows[0]['origin_center']}")
            raise PermissionDenied(
                f"case {child_case_id} was not uploaded by {center}", zh=not_uploaded_by_zh(center)
            )
        await self._record(center, method, child_case_id, error=f"NOT_FOUND: {center} uploaded no such case")
        raise NotFound(f"{center} uploaded no case {child_case_id}", zh=f"中心 {center} 没有上报过该报件")

    @staticmethod
    def _reply(row: dict[str, Any], *, duplicate: bool) -> interconnect_pb2.UploadCaseResponse:
        reply = interconnect_pb2.UploadCaseResponse(
            parent_case_id=row["case_id"],
            parent_case_number=row["case_number"] or "",
            status=row["status"],
            duplicate=duplicate,
        )
        for item in row["open_supplement"] or []:
            reply.supplement.add(
                material_code=item.get("material_code", ""),
                reason=item.get("reason", ""),
                department=item.get("department", ""),
            )
        return reply

    async def UploadCase(
        self, req: interconnect_pb2.UploadCaseRequest, context: Any
    ) -> interconnect_pb2.UploadCaseResponse:
        center = await self._caller(context, "UploadCase")
        try:
            row, duplicate = await self.uploads.upload(center, req)
        except ForeignCase as exc:
            await self._audit(center, "UploadCase", req.child_case_id, f"case uploaded by {exc.owner}")
            raise
        except IntegrityError:  # a concurrent retry of the same upload (on another replica) won the race
            row = await self._own_case(center, req.child_case_id, "UploadCase")
            await self._record(center, "UploadCase", req.child_case_id, duplicate=True)
            return self._reply(row, duplicate=True)
        except DomainError as exc:
            await self._record(center, "UploadCase", req.child_case_id, error=_error(exc))
            raise
        if not duplicate:
            log.info(
                "case uploaded",
                child=center,
                case_number=row["case_number"] or "",
                child_case_id=req.child_case_id,
            )
        return self._reply(row, duplicate=duplicate)

    async def UploadDocument(
        self, requests: AsyncIterator[interconnect_pb2.DocumentChunk], context: Any
    ) -> interconnect_pb2.DocumentStatus:
        center = await self._caller(context, "UploadDocument")
        return await self._audited(center, "UploadDocument", "", lambda: self.received.receive(requests))

    async def GetDocumentStatus(
        self, req: interconnect_pb2.GetDocumentStatusRequest, context: Any
    ) -> interconnect_pb2.DocumentStatus:
        center = await self._caller(context, "GetDocumentStatus")
        return await self._audited(center, "GetDocumentStatus", "", lambda: self.received.status(req.digest))

    @staticmethod
    async def _first_time(conn: Any, center: str, operation_id: str) -> bool:
        """Claim an operation id in the caller's transaction; False when it was applied before."""
        if not operation_id:
            return True
        return await insert_ignore(
            conn,
            orm.interconnect_ops,
            {"center": center, "operation_id": operation_id[:128], "at": datetime.now(UTC)},
        )

    @staticmethod
    def _actor(center: str) -> common_pb2.Actor:
        return common_pb2.Actor(username=f"center:{center}", role="child_center", center=center)

    async def _once(
        self,
        context: Any,
        method: str,
        child_case_id: str,
        operation_id: str,
        apply: Callable[[UnitOfWork, dict[str, Any], common_pb2.Actor], Awaitable[dict[str, Any]]],
    ) -> interconnect_pb2.UploadCaseResponse:
        """Apply a child's operation on its own case once per operation id (a retry answers `duplicate`)."""
        center = await self._caller(context, method)
        row = await self._own_case(center, child_case_id, method)

        async def once() -> tuple[dict[str, Any], bool]:
            async with self.rt.uow() as uow:
                first = await self._first_time(uow.conn, center, operation_id)
                done = await apply(uow, row, self._actor(center)) if first else row
                record = call_record(
                    center, method, child_case_id, operation_id=operation_id[:128], duplicate=not first
                )
                uow.audit(orm.audit, **record)
                await uow.commit()
            return done, not first

        try:
            done, duplicate = await once()
        except DomainError as exc:
            await self._record(center, method, child_case_id, error=_error(exc))
            raise
        return self._reply(done, duplicate=duplicate)

    async def SupplementCase(
        self, req: interconnect_pb2.SupplementCaseRequest, context: Any
    ) -> interconnect_pb2.UploadCaseResponse:
        async def supplement(uow: UnitOfWork, row: dict[str, Any], by: common_pb2.Actor) -> dict[str, Any]:
            done, _ = await handlers.supplement_case(
                uow,
                self.ctx,
                intake_pb2.SupplementCaseRequest(case_id=row["case_id"], documents=req.documents, by=by),
            )
            return done

        return await self._once(context, "SupplementCase", req.child_case_id, req.operation_id, supplement)

    async def WithdrawCase(
        self, req: interconnect_pb2.WithdrawCaseRequest, context: Any
    ) -> interconnect_pb2.UploadCaseResponse:
        async def withdraw(uow: UnitOfWork, row: dict[str, Any], by: common_pb2.Actor) -> dict[str, Any]:
            request = intake_pb2.WithdrawCaseRequest(case_id=row["case_id"], reason=req.reason, by=by)
            return await handlers.withdraw_case(uow, self.ctx, request)

        return await self._once(context, "WithdrawCase", req.child_case_id, req.operation_id, withdraw)

    async def EvaluateCase(
        self, req: interconnect_pb2.EvaluateCaseRequest, context: Any
    ) -> interconnect_pb2.UploadCaseResponse:
        async def evaluate(uow: UnitOfWork, row: dict[str, Any], by: common_pb2.Actor) -> dict[str, Any]:
            tags, text = ratings.clean(list(req.tags), req.text)
            ratings.validate(rating=req.rating, tags=tags, text=text)
            if row["status"] not in CLOSED:
                raise FailedPrecondition(
                    f"case {row['case_number'] or row['case_id']} is not concluded here yet; "
                    "it can be evaluated once its result went back",
                    zh=f"{number_zh(row)}在上级中心尚未办结，办理结果回传后才能评价",
                )
            body = events_pb2.EvaluationForwarded(
                child_center=by.center, rating=req.rating, tags=tags, text=text, follow_up=req.follow_up
            )
            uow.emit(self.ctx.event(body, row))
            return row

        return await self._once(context, "EvaluateCase", req.child_case_id, req.operation_id, evaluate)

    async def WatchResults(
        self, req: interconnect_pb2.WatchResultsRequest, context: Any
    ) -> AsyncIterator[interconnect_pb2.ResultUpdate]:
        center = await self._caller(context, "WatchResults")
        await self._record(center, "WatchResults", "", after_cursor=req.after_cursor)
        await context.send_initial_metadata(())
        cursor = max(0, req.after_cursor)
        bell = self.ctx.bells.feed(center)
        while True:
            updates = await feed.read(self.rt.engine, child_center=center, after=cursor, limit=FEED_BATCH)
            for update in updates:
                if update.cursor != cursor + 1:
                    # Cursors have no gaps: the missing ones were acknowledged and pruned (feed_pruning.py).
                    raise FailedPrecondition(
                        f"updates {cursor + 1} to {update.cursor - 1} for {center} were acknowledged and "
                        "pruned; resume from the cursor you acknowledged",
                        field="after_cursor",
                        zh=f"第 {cursor + 1} 至 {update.cursor - 1} 条结果更新已确认并清理，"
                        "请从您已确认的位置 (cursor) 继续接收",
                    )
                yield update
                cursor = update.cursor
            if len(updates) < FEED_BATCH:
                await bell.wait(IDLE_WAIT_S)

    async def AckResults(
        self, req: interconnect_pb2.AckResultsRequest, context: Any
    ) -> interconnect_pb2.AckResultsResponse:
        center = await self._caller(context, "AckResults")
        acknowledged = await self._audited(
            center, "AckResults", "", lambda: feed.ack(self.rt.engine, child_center=center, cursor=req.cursor)
        )
        return interconnect_pb2.AckResultsResponse(acknowledged=acknowledged)

    async def GetUploadedCase(
        self, req: interconnect_pb2.GetUploadedCaseRequest, context: Any
    ) -> interconnect_pb2.UploadedCase:
        center = await self._caller(context, "GetUploadedCase")
        row = await self._own_case(center, req.child_case_id, "GetUploadedCase")
        await self._record(center, "GetUploadedCase", req.child_case_id)
        out = interconnect_pb2.UploadedCase(
            child_case_id=req.child_case_id,
            parent_case_id=row["case_id"],
            parent_case_number=row["case_number"] or "",
            status=row["status"],
            outcome=cast(Any, row["outcome"] or 0),
        )
        for item in row["open_supplement"] or []:
            out.open_supplement.add(
                material_code=item.get("material_code", ""),
                reason=item.get("reason", ""),
                department=item.get("department", ""),
            )
        return out

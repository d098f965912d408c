"""The child's side of WatchResults: apply each update from the parent exactly once, then acknowledge it.

The applied cursor is stored in the same transaction as the update's effect, so a restart resumes
from it without loss or duplicates; acknowledgements only let the parent know what it may prune.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import grpc
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common.db import insert_ignore
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime
from services.intake import federation, orm, outbound, repository
from services.intake.convert import to_json
from services.intake.timeline_text import describe
from services.intake.uploader import ParentLink

log = get_logger(__name__)
CS = common_pb2
ACK_INTERVAL_S = 0.5
APPLY_BATCH = 256  # results applied in one transaction at most
MAX_BACKOFF_S = 3.0
RELAYED = {"supplement_requested", "concluded", *federation.NOTICE_KINDS}


async def applied_cursor(conn: AsyncConnection, parent_center: str) -> int:
    """The last update applied from `parent_center`."""
    value = (
        await conn.execute(
            select(orm.parent_link.c.applied_cursor).where(orm.parent_link.c.parent_center == parent_center)
        )
    ).scalar()
    return int(value or 0)


_LINK_LOCK = (
    select(orm.parent_link.c.applied_cursor)
    .where(orm.parent_link.c.parent_center == bindparam("parent"))
    .with_for_update()
)
_LINK_SET = (
    update(orm.parent_link)
    .where(orm.parent_link.c.parent_center == bindparam("parent"))
    .values(applied_cursor=bindparam("cursor"), updated_at=bindparam("now"))
)


async def apply_updates(
    uow: UnitOfWork, ctx: Any, parent_center: str, updates: list[interconnect_pb2.ResultUpdate]
) -> int:
    """Apply updates (in cursor order) to the local cases, each once: those at or below the applied
    cursor are skipped. The link row is locked, the cases and their uploads read, in one statement
    each; the new cursor is stored in the same transaction. How many were applied."""
    conn = uow.conn
    now = datetime.now(UTC)
    applied = (await conn.execute(_LINK_LOCK, {"parent": parent_center})).scalar()
    if applied is None:  # the first update from this parent (or a racing watcher's first one)
        await insert_ignore(
            conn, orm.parent_link, {"parent_center": parent_center, "applied_cursor": 0, "updated_at": now}
        )
        applied = (await conn.execute(_LINK_LOCK, {"parent": parent_center})).scalar_one()
    fresh: list[interconnect_pb2.ResultUpdate] = []
    for upd in updates:
        if upd.cursor > applied:
            fresh.append(upd)
            applied = upd.cursor
    if not fresh:
        return 0
    ids = list(dict.fromkeys(u.child_case_id for u in fresh))
    cases = await outbound.cases_of(conn, ids)
    uploads = await outbound.uploads_of(conn, ids)
    for upd in fresh:
        row = cases.get(upd.child_case_id)
        if row is None:
            log.warning("result for an unknown case", parent=parent_center, child_case_id=upd.child_case_id)
            continue
        await _apply(uow, ctx, parent_center, upd, row, uploads.get(row["case_id"]))
    await conn.execute(_LINK_SET, {"parent": parent_center, "cursor": applied, "now": now})
    return len(fresh)


async def apply_update(
    uow: UnitOfWork, ctx: Any, parent_center: str, upd: interconnect_pb2.ResultUpdate
) -> bool:
    """Apply one update to the local case (once: False when its cursor was applied before)."""
    return await apply_updates(uow, ctx, parent_center, [upd]) == 1


def _set_case(uow: UnitOfWork, row: dict[str, Any], **values: Any) -> None:
    # Written at commit with the batch's other cases (one statement per set of columns); `row` changes now,
    # so a later update of the batch about the same case sees this one.
    repository.update_case_later(uow, row, **values)


async def _apply(
    uow: UnitOfWork,
    ctx: Any,
    parent_center: str,
    upd: interconnect_pb2.ResultUpdate,
    row: dict[str, Any],
    op: dict[str, Any] | None,
) -> None:
    now = ctx.clock.now()
    raised_at = upd.raised_at_center or parent_center  # a center above the parent, for a relayed update
    if upd.kind == "accepted" and op is not None and upd.parent_case_number:
        await outbound.set_state(
            uow.conn, op["seq"], parent_case_id=upd.parent_case_id, parent_case_number=upd.parent_case_number
        )
    if upd.kind == "supplement_requested" and row["status"] in federation.OPEN:
        items = [to_json(i) for i in upd.supplement]
        rnd = row["supplement_round"] + 1
        _set_case(
            uow,
            row,
            status=CS.CASE_STATUS_SUPPLEMENT_REQUESTED,
            open_supplement=items,
            supplement_round=rnd,
            updated_at=now,
        )
        env = ctx.event(
            events_pb2.SupplementRequested(
                items=upd.supplement, round=rnd, during_review=True, parent_center=raised_at
            ),
            row,
        )
        uow.emit(env)
        zh, en, _, _ = describe(env)
        await federation.note(
            uow,
            ctx,
            case_id=row["case_id"],
            key=env.event_id,
            what="supplement_requested",
            zh=f"上级中心 {raised_at} {zh}",
            en=f"{raised_at}: {en}",
        )
    elif upd.kind == "concluded" and row["status"] in federation.OPEN:
        sealed = upd.sealed.SerializeToString().hex() if upd.HasField("sealed") else None
        _set_case(
            uow,
            row,
            status=CS.CASE_STATUS_CONCLUDED,
            outcome=upd.outcome,
            reasons=list(upd.reasons),
            concluded_at=now,
            updated_at=now,
            sealed=sealed,
            open_supplement=[],
        )
        env = ctx.event(
            events_pb2.ParentResultReceived(
                parent_center=parent_center, outcome=upd.outcome, sealed=upd.sealed
            ),
            row,
        )
        uow.emit(env)
        if op is not None:
            outbound.result_received_later(uow, op["seq"])
        await federation.note(
            uow,
            ctx,
            case_id=row["case_id"],
            key=env.event_id,
            what="parent_result_received",
            zh=f"上级中心 {parent_center} 审批结果已返回:{upd.summary_zh}",
            en=f"result from {parent_center}: {upd.summary_en}",
        )
    else:
        if upd.kind in federation.NOTICE_KINDS:  # the applicant is ours to tell, in writing
            uow.emit(ctx.event(_notice_received(parent_center, raised_at, upd), row))
        await federation.note(
            uow,
            ctx,
            case_id=row["case_id"],
            key=federation.entry_id(parent_center, upd.cursor),
            what=f"parent_{upd.kind}",
            zh=f"上级中心 {parent_center}:{upd.summary_zh}",
            en=f"{parent_center}: {upd.summary_en}",
            department=upd.department,
        )
    if upd.kind in RELAYED and row["origin_center"]:  # a case uploaded to us from below: pass it down
        await federation.feed_update(
            uow,
            ctx,
            row,
            what=upd.kind,
            zh=upd.summary_zh,
            en=upd.summary_en,
            outcome=upd.outcome,
            reasons=upd.reasons,
            sealed=upd.sealed if upd.HasField("sealed") else None,
            items=upd.supplement,
            supplement_round=upd.supplement_round,
            department=upd.department,
            raised_at=raised_at,
            details=federation.notice_details(upd),
        )


def _notice_received(
    parent_center: str, raised_at: str, upd: interconnect_pb2.ResultUpdate
) -> events_pb2.ParentNoticeReceived:
    body = events_pb2.ParentNoticeReceived(
        parent_center=parent_center, raised_at_center=raised_at, kind=upd.kind, department=upd.department
    )
    federation.copy_notice(upd, body)
    return body


class ResultWatcher:
    """Keeps a WatchResults stream open to the parent, reconnecting with backoff."""

    def __init__(self, *, runtime: Runtime, ctx: Any, link: ParentLink) -> None:
        self.rt = runtime
        self.ctx = ctx
        self.link = link
        self.applied = 0
        self._acked = 0

    async def run(self) -> None:
        """Watch forever."""
        parent = await self.link.ready()
        delay = 0.2
        while True:
            try:
                await self._watch(parent)
            except grpc.aio.AioRpcError as exc:
                self.link.last_error = f"{exc.code().name}: {exc.details()}"
                if self.link.connected:
                    log.warning("result stream lost", parent=parent, error=self.link.last_error)
                    delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; the cursor keeps us exact
                self.link.last_error = repr(exc)
                log.warning("result stream failed", parent=parent, exc_info=exc)
            self.link.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _watch(self, parent: str) -> None:
        async with self.rt.engine.connect() as conn:
            self.applied = await applied_cursor(conn, parent)
        stub = self.link.stub()
        call = stub.WatchResults(interconnect_pb2.WatchResultsRequest(after_cursor=self.applied))
        await call.wait_for_connection()
        self.link.connected = True
        self.link.last_error = ""
        log.info("result stream open", parent=parent, after_cursor=self.applied)
        # The link is back: whatever waits to go up is due now, not after its backoff.
        if await outbound.retry_now(self.rt.engine):
            self.ctx.bells.uploads.ring_now()
        acker = asyncio.create_task(self._ack_loop(stub))
        # What the stream brought: updates, then None when it ended or the error that ended it.
        received: asyncio.Queue[interconnect_pb2.ResultUpdate | BaseException | None] = asyncio.Queue()

        async def receive() -> None:
            try:
                async for upd in call:
                    received.put_nowait(upd)
                received.put_nowait(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the applier, which raises it
                received.put_nowait(exc)

        receiver = asyncio.create_task(receive())
        try:
            while True:
                # Apply everything that has arrived in one transaction (one commit for a burst of results).
                batch = [await received.get()]
                while not received.empty() and len(batch) < APPLY_BATCH:
                    batch.append(received.get_nowait())
                updates = [u for u in batch if isinstance(u, interconnect_pb2.ResultUpdate)]
                if updates:
                    async with self.rt.uow() as uow:
                        await apply_updates(uow, self.ctx, parent, updates)
                        await uow.commit()
                    self.applied = updates[-1].cursor
                if len(updates) < len(batch):  # the stream is over
                    end = batch[-1]
                    if isinstance(end, BaseException):
                        raise end
                    return
        finally:
            for task in (acker, receiver):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            call.cancel()

    async def _ack_loop(self, stub: Any) -> None:
        while True:
            await asyncio.sleep(ACK_INTERVAL_S)
            if self.applied > self._acked:
                cursor = self.applied
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.AckResults(interconnect_pb2.AckResultsRequest(cursor=cursor), timeout=5)
                    self._acked = cursor

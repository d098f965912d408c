"""InterconnectStatus on intake's internal port: forwarded cases with their upload state and age, and the link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from onestop.interconnect.v1 import interconnect_pb2
from services.common.clock import aware
from services.common.errors import InvalidArgument
from services.common.events import timestamp
from services.common.runtime import Runtime
from services.intake import orm, outbound
from services.intake.uploader import ParentLink
from services.intake.watcher import applied_cursor

STATES = ("preliminary_review", "waiting_to_upload", "uploaded", "result_received", "failed", "cancelled")
OPEN_STATES = ("preliminary_review", "waiting_to_upload", "uploaded", "failed")
STATE_ZH = {
    "preliminary_review": "本中心初审中",
    "waiting_to_upload": "等待上报",
    "uploaded": "已上报",
    "result_received": "已收到办理结果",
    "failed": "上报失败",
    "cancelled": "已取消",
}


def upload_state(row: Any) -> str:
    """How an upload operation reads to people."""
    state = row["state"]
    if state == outbound.HELD:
        return "preliminary_review"
    if state == outbound.PENDING:
        return "waiting_to_upload"
    if state == outbound.DONE:
        return "result_received" if row["result_at"] is not None else "uploaded"
    return str(state)


def _where_state(state: str) -> ColumnElement[bool]:
    """The SQL condition of a displayed state ("" = every open one), so LIMIT applies after the filter."""
    f = orm.forwarding.c
    done = f.state == outbound.DONE
    conditions = {
        "preliminary_review": f.state == outbound.HELD,
        "waiting_to_upload": f.state == outbound.PENDING,
        "uploaded": and_(done, f.result_at.is_(None)),
        "result_received": and_(done, f.result_at.is_not(None)),
        "failed": f.state == outbound.FAILED,
        "cancelled": f.state == outbound.CANCELLED,
    }
    if state:
        return conditions[state]
    return or_(*(conditions[s] for s in OPEN_STATES))


class LinkStatusApi:
    """Implements onestop.interconnect.v1.InterconnectStatus."""

    def __init__(self, *, runtime: Runtime, link: ParentLink | None) -> None:
        self.rt = runtime
        self.link = link

    async def ListForwarded(
        self, req: interconnect_pb2.ListForwardedRequest, _: Any
    ) -> interconnect_pb2.ListForwardedResponse:
        if req.state and req.state not in STATES:
            raise InvalidArgument(
                f"state must be one of {', '.join(STATES)}",
                field="state",
                zh=f"上报状态应为以下之一：{'、'.join(STATE_ZH[s] for s in STATES)}",
            )
        f, c = orm.forwarding.c, orm.cases.c
        pending = (
            select(orm.forwarding.c.case_id, func.count().label("n"))
            .where(f.state.in_((outbound.PENDING, outbound.FAILED)))
            .group_by(f.case_id)
            .subquery()
        )
        stmt = (
            select(orm.forwarding, c.case_number, pending.c.n)
            .join(orm.cases, c.case_id == f.case_id)
            .outerjoin(pending, pending.c.case_id == f.case_id)
            .where(f.op == outbound.UPLOAD, _where_state(req.state))
            .order_by(f.waiting_since)
            .limit(min(req.limit or 500, 5000))
        )
        async with self.rt.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        now = outbound.wall()
        out = interconnect_pb2.ListForwardedResponse()
        for row in rows:
            state = upload_state(row)
            since = aware(row["waiting_since"]) or now
            item = out.cases.add(
                case_id=row["case_id"],
                case_number=row["case_number"] or "",
                parent_center=row["parent_center"],
                state=state,
                attempts=row["attempts"],
                last_error=row["last_error"] or "",
                parent_case_number=row["parent_case_number"],
                age_seconds=max(0.0, (now - since).total_seconds()),
                pending_operations=int(row["n"] or 0),
            )
            item.waiting_since.CopyFrom(timestamp(since))
            nxt: datetime | None = aware(row["next_attempt_at"])
            if state == "waiting_to_upload" and nxt is not None:
                item.next_attempt_at.CopyFrom(timestamp(nxt))
        return out

    async def GetLink(self, _: interconnect_pb2.GetLinkRequest, __: Any) -> interconnect_pb2.Link:
        link = self.link
        out = interconnect_pb2.Link(
            parent_address=link.address if link else "",
            parent_center=link.parent_center if link else "",
            connected=bool(link and link.connected),
            last_error=link.last_error if link else "",
        )
        f = orm.forwarding.c
        async with self.rt.engine.connect() as conn:
            if link and link.parent_center:
                out.applied_cursor = await applied_cursor(conn, link.parent_center)
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(f.waiting_since)).where(
                        f.op == outbound.UPLOAD, f.state == outbound.PENDING
                    )
                )
            ).one()
        out.waiting_to_upload = int(count or 0)
        since = aware(oldest)
        if since is not None:
            out.oldest_waiting_seconds = max(0.0, (outbound.wall() - since).total_seconds())
        return out

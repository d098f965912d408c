"""Notification's data access (SQLAlchemy Core on the caller's connection; never commits)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.clock import aware
from services.common.db import insert_ignore, unnest_insert, unnest_params
from services.common.outbox import UnitOfWork
from services.notification import orm
from services.notification.model import DEAD, DUE_STATES, PENDING, Recipient, TaskInfo

LIST_LIMIT = 500


# Built once: SQLAlchemy then neither builds nor compiles a statement per call.
_RECIPIENT_BY_CASE_ID = select(orm.recipients).where(orm.recipients.c.case_id == bindparam("case_id"))


@functools.cache
def _add_deliveries_stmt(dialect_name: str) -> Any:
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(orm.deliveries).on_conflict_do_nothing().returning(orm.deliveries.c.delivery_id)


@functools.cache
def _add_deliveries_unnest(columns: tuple[str, ...]) -> Any | None:
    stmt = unnest_insert(orm.deliveries, columns, "ignore")
    return None if stmt is None else stmt.returning(orm.deliveries.c.delivery_id)


async def preload(uow: UnitOfWork, *, case_numbers: Iterable[str], task_ids: Iterable[str]) -> None:
    """Read the applicants and tasks a batch of events refers to, one statement per table."""
    await uow.preload(orm.recipients, [n for n in case_numbers if n])
    await uow.preload(orm.tasks, [t for t in task_ids if t])


def save_recipient_later(uow: UnitOfWork, recipient: Recipient, *, now: datetime) -> None:
    """Keep (or replace) the applicant of a case, written just before commit (read it with `recipient`)."""
    uow.upsert_later(
        orm.recipients,
        {
            "case_number": recipient.case_number,
            "case_id": recipient.case_id,
            "name": recipient.name,
            "phone": recipient.phone,
            "email": recipient.email,
            "language": recipient.language,
            "agent": recipient.agent,
            "title": recipient.title,
            "matter_code": recipient.matter_code,
            "direct": recipient.direct,
            "origin_center": recipient.origin_center,
            "updated_at": now,
        },
    )
    uow.memo[("case id", recipient.case_id)] = recipient.case_number


async def recipient(uow: UnitOfWork, *, case_number: str, case_id: str) -> Recipient | None:
    """The applicant of a case, by number (or by id when the event carries no number), as this
    transaction sees it (preloaded, read once, or saved by an earlier event of the batch)."""
    if not case_number and case_id:
        # An applicant saved in this transaction is not in the table yet: look in memory first.
        case_number = uow.memo.get(("case id", case_id), "")
        if not case_number:
            found = (await uow.conn.execute(_RECIPIENT_BY_CASE_ID, {"case_id": case_id})).mappings().first()
            if found is None:
                return None
            case_number = found["case_number"]
            uow.remember(orm.recipients, case_number, dict(found))
    if not case_number:
        return None
    known, row = uow.cached(orm.recipients, case_number)
    if not known:
        await uow.preload(orm.recipients, [case_number])
        _, row = uow.cached(orm.recipients, case_number)
    if row is None:
        return None
    return Recipient(
        case_number=row["case_number"],
        case_id=row["case_id"],
        name=row["name"],
        phone=row["phone"],
        email=row["email"],
        language=row["language"],
        agent=row["agent"],
        title=row["title"],
        matter_code=row["matter_code"],
        direct=row["direct"],
        origin_center=row["origin_center"],
    )


async def save_task_later(uow: UnitOfWork, task: TaskInfo) -> None:
    """Remember a task's department and window (first sighting wins), written just before commit."""
    row = {
        "task_id": task.task_id,
        "case_number": task.case_number,
        "department": task.department,
        "window": task.window,
    }
    known, stored = uow.cached(orm.tasks, task.task_id)
    if not known:
        await uow.preload(orm.tasks, [task.task_id])
        _, stored = uow.cached(orm.tasks, task.task_id)
    if stored is None:  # the first sighting: later events of this transaction see it at once
        uow.remember(orm.tasks, task.task_id, row)
        uow.insert_later(orm.tasks, row)


async def task(uow: UnitOfWork, task_id: str) -> TaskInfo | None:
    """A task seen in task_opened (stored, or first seen in this transaction), or None."""
    if not task_id:
        return None
    known, row = uow.cached(orm.tasks, task_id)
    if not known:
        await uow.preload(orm.tasks, [task_id])
        _, row = uow.cached(orm.tasks, task_id)
    return TaskInfo(row["task_id"], row["case_number"], row["department"], row["window"]) if row else None


async def add_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
    """Record planned deliveries in one statement; the ids of those whose (event, kind, channel,
    recipient) did not exist yet."""
    if not rows:
        return set()
    columns = tuple(rows[0])
    if conn.dialect.name == "postgresql" and all(tuple(r) == columns for r in rows):
        # One array per column: one statement text whatever the batch size (an executemany with RETURNING
        # becomes a multi-row VALUES, a new text, prepared and planned again, for every size).
        stmt = _add_deliveries_unnest(columns)
        if stmt is not None:
            params = unnest_params(orm.deliveries, columns, rows)
            return {r[0] for r in await conn.execute(stmt, params)}
    return {r[0] for r in await conn.execute(_add_deliveries_stmt(conn.dialect.name), rows)}


async def claim_due(
    conn: AsyncConnection, *, now: datetime, lease: timedelta, limit: int
) -> list[dict[str, Any]]:
    """Due deliveries, leased to this worker by pushing their next attempt past the lease.

    SKIP LOCKED lets several replicas claim side by side; the lease (not a held transaction)
    covers the network call, so a crash mid-send means a retry after the lease, never a loss.
    """
    d = orm.deliveries.c
    stmt = (
        select(orm.deliveries)
        .where(d.state.in_(DUE_STATES), d.next_attempt_at <= now)
        .order_by(d.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    if rows:
        await conn.execute(
            update(orm.deliveries)
            .where(d.delivery_id.in_([r["delivery_id"] for r in rows]))
            .values(next_attempt_at=now + lease)
        )
    return rows


async def finish_attempt(
    conn: AsyncConnection,
    *,
    delivery_id: str,
    attempt: int,
    outcome: str,
    detail: str,
    elapsed_ms: int,
    state: str,
    next_attempt_at: datetime,
    now: datetime,
    address_masked: str,
) -> None:
    """Record one attempt and the delivery's new state."""
    await conn.execute(
        orm.attempts.insert().values(
            delivery_id=delivery_id,
            attempt=attempt,
            at=now,
            outcome=outcome,
            detail=detail,
            elapsed_ms=elapsed_ms,
        )
    )
    values: dict[str, Any] = {
        "state": state,
        "attempts": attempt,
        "last_error": detail if outcome != "sent" else "",
        "next_attempt_at": next_attempt_at,
        "updated_at": now,
    }
    if outcome == "sent":
        # Data minimisation: once delivered, only the masked address stays.
        values |= {"sent_at": now, "address": address_masked}
    await conn.execute(
        update(orm.deliveries).where(orm.deliveries.c.delivery_id == delivery_id).values(**values)
    )


async def add_inbox_message(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Put a message in a web inbox (once per delivery)."""
    await insert_ignore(conn, orm.inbox_messages, row)


async def add_notice(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Keep a rendered written notice (once per delivery)."""
    await insert_ignore(conn, orm.notices, row)


async def inbox(conn: AsyncConnection, *, recipient: str, case_number: str) -> list[dict[str, Any]]:
    """A recipient's messages, newest first."""
    m = orm.inbox_messages.c
    stmt = select(orm.inbox_messages)
    if recipient:
        stmt = stmt.where(m.recipient == recipient)
    if case_number:
        stmt = stmt.where(m.case_number == case_number)
    stmt = stmt.order_by(m.created_at.desc(), m.message_id).limit(LIST_LIMIT)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def deliveries(
    conn: AsyncConnection, *, case_number: str = "", states: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Deliveries of a case (or all recent ones), oldest first."""
    d = orm.deliveries.c
    stmt = select(orm.deliveries)
    if case_number:
        stmt = stmt.where(d.case_number == case_number)
    if states:
        stmt = stmt.where(d.state.in_(list(states)))
    stmt = stmt.order_by(d.created_at.desc(), d.delivery_id).limit(LIST_LIMIT)
    return list(reversed([dict(r) for r in (await conn.execute(stmt)).mappings()]))


async def get_delivery(conn: AsyncConnection, delivery_id: str) -> dict[str, Any] | None:
    """One delivery."""
    stmt = select(orm.deliveries).where(orm.deliveries.c.delivery_id == delivery_id)
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def requeue(conn: AsyncConnection, delivery_id: str, *, now: datetime) -> bool:
    """Put a dead delivery back in the queue with a fresh attempt budget; False when it is not dead."""
    d = orm.deliveries.c
    result = await conn.execute(
        update(orm.deliveries)
        .where(d.delivery_id == delivery_id, d.state == DEAD)
        .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    )
    return bool(result.rowcount)


async def notice(
    conn: AsyncConnection, *, notice_id: str, case_number: str, kind: str
) -> dict[str, Any] | None:
    """A written notice by id, or the newest of a kind for a case."""
    n = orm.notices.c
    stmt = select(orm.notices)
    if notice_id:
        stmt = stmt.where(n.notice_id == notice_id)
    else:
        stmt = stmt.where(n.case_number == case_number)
        if kind:
            stmt = stmt.where(n.kind == kind)
    row = (await conn.execute(stmt.order_by(n.created_at.desc()).limit(1))).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["created_at"] = aware(out["created_at"])
    return out

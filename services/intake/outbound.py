"""The child's forwarding outbox: operations for the parent, delivered in order per case, with backoff.

Scheduling uses wall-clock time (like the event outbox), not the domain clock a test may move.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.clock import aware
from services.common.db import insert_many, one_of, update_many
from services.intake import orm

UPLOAD, SUPPLEMENT, WITHDRAW, EVALUATE = "upload", "supplement", "withdraw", "evaluate"
HELD, PENDING, DONE, FAILED, CANCELLED = "held", "pending", "done", "failed", "cancelled"
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
F = orm.forwarding.c


@dataclass(frozen=True)
class Operation:
    """One row of the forwarding outbox."""

    seq: int
    case_id: str
    op: str
    state: str
    parent_center: str
    payload: dict[str, Any]
    attempts: int
    waiting_since: datetime

    @classmethod
    def of(cls, row: Any) -> Operation:
        """From a database row."""
        return cls(
            seq=int(row["seq"]),
            case_id=row["case_id"],
            op=row["op"],
            state=row["state"],
            parent_center=row["parent_center"],
            payload=dict(row["payload"] or {}),
            attempts=int(row["attempts"]),
            waiting_since=aware(row["waiting_since"]) or datetime.min,
        )

    @property
    def operation_id(self) -> str:
        """Unique per operation, so the parent applies a retried call once."""
        return f"{self.case_id}/{self.op}/{self.seq}"


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: exponential with jitter, capped."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(attempts, 16)) * random.uniform(0.5, 1.0)  # noqa: S311


def wall() -> datetime:
    """Now, by the wall clock."""
    return datetime.now(UTC)


_ENQUEUE = orm.forwarding.insert()
_ENQUEUED = "outbound.enqueued"  # uow.memo: operations to insert before the transaction reads or commits


def _operation_row(
    *, case_id: str, op: str, parent_center: str, payload: dict[str, Any] | None, state: str
) -> dict[str, Any]:
    now = wall()
    return {
        "case_id": case_id,
        "op": op,
        "state": state,
        "parent_center": parent_center,
        "payload": payload or {},
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "waiting_since": now,
        "done_at": None,
        "parent_case_id": "",
        "parent_case_number": "",
        "result_at": None,
    }


async def enqueue(
    conn: AsyncConnection,
    *,
    case_id: str,
    op: str,
    parent_center: str,
    payload: dict[str, Any] | None = None,
    state: str = PENDING,
) -> None:
    """Queue an operation in the caller's transaction now."""
    row = _operation_row(case_id=case_id, op=op, parent_center=parent_center, payload=payload, state=state)
    await conn.execute(_ENQUEUE, row)  # one statement for every call (`.values(...)` built one each time)


def enqueue_later(
    uow: Any,
    *,
    case_id: str,
    op: str,
    parent_center: str,
    payload: dict[str, Any] | None = None,
    state: str = PENDING,
) -> None:
    """Queue an operation in the unit of work: inserted with the transaction's other operations in one
    statement (in the order they were queued, so per case in order), just before it commits or before
    `flush_enqueued` (which whoever reads the forwarding outbox in the transaction calls first)."""
    rows = uow.memo.get(_ENQUEUED)
    if rows is None:
        rows = uow.memo[_ENQUEUED] = []
        uow.before_commit(lambda _: flush_enqueued(uow))
    rows.append(
        _operation_row(case_id=case_id, op=op, parent_center=parent_center, payload=payload, state=state)
    )


async def flush_enqueued(uow: Any) -> None:
    """Insert the operations this unit of work queued so far (a read of the outbox must see them)."""
    rows = uow.memo.pop(_ENQUEUED, None)
    if rows:  # one execution on PostgreSQL, rows (and so their seq) in the order they were queued
        await insert_many(uow.conn, orm.forwarding, tuple(rows[0]), rows)


async def upload_of(conn: AsyncConnection, case_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The upload operation of a case, if the case was forwarded."""
    stmt = select(orm.forwarding).where(F.case_id == case_id, F.op == UPLOAD).order_by(F.seq.desc()).limit(1)
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def set_state(conn: AsyncConnection, seq: int, **values: Any) -> None:
    """Update one operation."""
    await conn.execute(update(orm.forwarding).where(F.seq == seq).values(**values))


async def release(conn: AsyncConnection, seq: int, *, payload: dict[str, Any]) -> None:
    """A held upload may go now (the preliminary review approved it)."""
    now = wall()
    await set_state(conn, seq, state=PENDING, payload=payload, waiting_since=now, next_attempt_at=now)


async def finish(conn: AsyncConnection, seq: int, *, state: str, error: str = "", **values: Any) -> None:
    """Close an operation: done, failed or cancelled."""
    await set_state(conn, seq, state=state, done_at=wall(), last_error=error[:2000], **values)


_CASE_COLUMNS = [c.label(f"case__{c.name}") for c in orm.cases.c]


@functools.cache
def _due_statement(dialect_name: str) -> Any:
    # Built once: the uploader asks after every delivery, and building the aliased join each time cost
    # more CPU than running it. An upload comes with its case's row (one statement, not two).
    earlier = orm.forwarding.alias("earlier")
    blocked = exists().where(
        and_(
            earlier.c.case_id == F.case_id,
            earlier.c.seq < F.seq,
            earlier.c.state.in_((HELD, PENDING, FAILED)),
        )
    )
    return (
        select(orm.forwarding, *_CASE_COLUMNS)
        .outerjoin(orm.cases, and_(orm.cases.c.case_id == F.case_id, F.op == UPLOAD))
        .where(
            F.state == PENDING,
            F.next_attempt_at <= bindparam("now", type_=F.next_attempt_at.type),
            ~blocked,
            one_of(F.seq, "busy", postgresql=dialect_name == "postgresql", negate=True),
        )
        .order_by(F.next_attempt_at, F.seq)
        .limit(bindparam("limit"))
    )


@functools.cache
def _cases_in(dialect_name: str) -> Any:
    return select(orm.cases).where(
        one_of(orm.cases.c.case_id, "ids", postgresql=dialect_name == "postgresql")
    )


@functools.cache
def _uploads_in(dialect_name: str) -> Any:
    return (
        select(orm.forwarding)
        .where(one_of(F.case_id, "ids", postgresql=dialect_name == "postgresql"), F.op == UPLOAD)
        .order_by(F.seq)
    )


async def cases_of(conn: AsyncConnection, case_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The case rows of these ids (one statement), by id; an unknown id is left out."""
    if not case_ids:
        return {}
    return {
        r["case_id"]: dict(r)
        for r in (await conn.execute(_cases_in(conn.dialect.name), {"ids": case_ids})).mappings()
    }


async def uploads_of(conn: AsyncConnection, case_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The (latest) upload operation of each of these cases that was forwarded, by case id."""
    if not case_ids:
        return {}
    return {
        r["case_id"]: dict(r)
        for r in (await conn.execute(_uploads_in(conn.dialect.name), {"ids": case_ids})).mappings()
    }


async def due(
    engine: AsyncEngine, *, limit: int, exclude: set[int]
) -> tuple[list[Operation], dict[str, dict[str, Any]]]:
    """Pending operations whose time has come, each the first undelivered one of its case, except those
    in `exclude` (being delivered); with the case rows of the uploads among them, read in one go."""
    async with engine.connect() as conn:
        result = await conn.execute(
            _due_statement(conn.dialect.name), {"now": wall(), "busy": sorted(exclude), "limit": limit}
        )
        rows = result.mappings().all()
        await conn.rollback()
    ops, cases = [], {}
    for row in rows:
        ops.append(Operation.of(row))
        if row["case__case_id"] is not None:
            cases[row["case__case_id"]] = {c.name: row[f"case__{c.name}"] for c in orm.cases.c}
    return ops, cases


def finish_upload_later(uow: Any, seq: int, *, parent_case_id: str, parent_case_number: str) -> None:
    """Close a delivered upload with the parent's case id and number, written with the other uploads
    finished in the same transaction (one statement)."""
    rows = uow.memo.setdefault("outbound.finished_uploads", [])
    if not rows:
        uow.before_commit(lambda conn: update_many(conn, orm.forwarding, "seq", _FINISHED_UPLOAD, rows))
    rows.append(
        {
            "seq": seq,
            "state": DONE,
            "done_at": wall(),
            "last_error": "",
            "parent_case_id": parent_case_id,
            "parent_case_number": parent_case_number,
        }
    )


_FINISHED_UPLOAD = ("state", "done_at", "last_error", "parent_case_id", "parent_case_number")


def result_received_later(uow: Any, seq: int) -> None:
    """Note when the parent's result for an upload came, with the others of the transaction (one
    statement, just before commit)."""
    rows = uow.memo.setdefault("outbound.results", [])
    if not rows:
        uow.before_commit(lambda conn: update_many(conn, orm.forwarding, "seq", ("result_at",), rows))
    rows.append({"seq": seq, "result_at": wall()})


async def retry_later(engine: AsyncEngine, op: Operation, *, error: str, permanent: bool) -> None:
    """Record a failed attempt: back off (or stop, for errors a retry cannot fix)."""
    attempts = op.attempts + 1
    now = wall()
    async with engine.begin() as conn:
        await conn.execute(
            update(orm.forwarding)
            .where(F.seq == op.seq, F.state == PENDING)
            .values(
                attempts=attempts,
                last_error=error[:2000],
                state=FAILED if permanent else PENDING,
                next_attempt_at=now + timedelta(seconds=backoff(attempts)),
            )
        )


async def retry_now(engine: AsyncEngine) -> int:
    """The link is back: make every waiting operation due at once; how many."""
    now = wall()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(orm.forwarding)
            .where(F.state == PENDING, F.next_attempt_at > now)
            .values(next_attempt_at=now)
        )
    return int(result.rowcount or 0)

"""Supervision's data access: SQLAlchemy Core statements on the caller's connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.events.v1 import events_pb2
from services.common.db import insert_ignore
from services.common.events import kind, subject_for
from services.common.outbox import UnitOfWork
from services.supervision import bulk, model, orm

# Columns a tick may change; everything else only changes on events.
_TICK_COLUMNS = ("warned_level", "urged_at", "deem_state", "next_action_at")
# Columns a tick reads: the rules' view plus what its warnings and urges name.
_TICK_READ = (
    "clock_id",
    "case_id",
    "case_number",
    "task_id",
    "center",
    "matter_code",
    "department",
    "window",
    "accepted_at",
    "started_at",
    "limit_days",
    "statutory_days",
    "key_deadline",
    "extension_days",
    "threshold_days",
    "deemed_allowed",
    "pauses",
    "due_at",
    "warned_level",
    "urged_at",
    "deem_state",
    "stopped_at",
)


def case_clock_id(case_id: str) -> str:
    """The id of a case's own clock."""
    return f"case/{case_id}"


def task_clock_id(task_id: str) -> str:
    """The id of a department task's clock."""
    return f"task/{task_id}"


def _row(raw: Any) -> dict[str, Any]:
    """A result row as a dict (orm.Instant columns come back timezone-aware on every database)."""
    return dict(raw)


def to_model(row: dict[str, Any]) -> model.Clock:
    """The rules' view of a clock row."""
    return model.Clock(
        clock_id=row["clock_id"],
        task_id=row["task_id"],
        accepted_at=row["accepted_at"],
        started_at=row["started_at"],
        limit_days=row["limit_days"],
        statutory_days=row["statutory_days"],
        key_deadline=row["key_deadline"],
        extension_days=row["extension_days"],
        threshold_days=row["threshold_days"],
        deemed_allowed=row["deemed_allowed"],
        pauses=tuple(model.Pause.from_json(p) for p in row["pauses"] or ()),
        due_at=row["due_at"],
        warned_level=row["warned_level"],
        urged_at=row["urged_at"],
        deem_state=row["deem_state"],
        stopped_at=row["stopped_at"],
    )


def model_values(clock: model.Clock) -> dict[str, Any]:
    """The columns a rules' clock determines."""
    return {
        "limit_days": clock.limit_days,
        "statutory_days": clock.statutory_days,
        "key_deadline": clock.key_deadline,
        "extension_days": clock.extension_days,
        "threshold_days": clock.threshold_days,
        "deemed_allowed": clock.deemed_allowed,
        "pauses": [p.to_json() for p in clock.pauses],
        "paused": clock.paused,
        "due_at": clock.due_at,
        "warned_level": clock.warned_level,
        "urged_at": clock.urged_at,
        "deem_state": clock.deem_state,
        "stopped_at": clock.stopped_at,
    }


# -- cases ---------------------------------------------------------------------------------------


async def get_case(
    conn: AsyncConnection, *, case_id: str = "", case_number: str = "", lock: bool = False
) -> dict[str, Any] | None:
    """A known case by id or number, or None."""
    cond = orm.cases.c.case_id == case_id if case_id else orm.cases.c.case_number == case_number
    stmt = select(orm.cases).where(cond)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return _row(row) if row else None


_CASE_ORDER = ("submitted", "accepted", "routed", "forwarded")


async def upsert_case(
    conn: AsyncConnection, *, case_id: str, now: datetime, advance_to: str = "", **values: Any
) -> dict[str, Any]:
    """Create the case row on first sight, then set ``values`` and move it forward to ``advance_to`` (events
    may arrive out of order; a case never goes back): one statement; the row as it now is."""
    c = orm.cases.c
    changes: dict[str, Any] = {"updated_at": now, **values}
    if advance_to:
        earlier = _CASE_ORDER[: _CASE_ORDER.index(advance_to)]
        changes["status"] = case((c.status.in_(earlier), advance_to), else_=c.status)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(orm.cases)
        .values({"case_id": case_id, "status": advance_to or "submitted", "updated_at": now, **values})
        .on_conflict_do_update(index_elements=[c.case_id], set_=changes)
        .returning(*orm.cases.c)
    )
    return _row((await conn.execute(stmt)).mappings().one())


async def key_project_cases(conn: AsyncConnection, *, tracker: str) -> list[dict[str, Any]]:
    """Key projects, optionally of one tracker."""
    stmt = select(orm.cases).where(orm.cases.c.key_project.is_(True))
    if tracker:
        stmt = stmt.where(orm.cases.c.tracker == tracker)
    return [_row(r) for r in (await conn.execute(stmt.order_by(orm.cases.c.key_deadline))).mappings()]


# -- clocks --------------------------------------------------------------------------------------


_GET_CLOCK = select(orm.clocks).where(orm.clocks.c.clock_id == bindparam("clock_id"))
_LOCK_CLOCK = _GET_CLOCK.with_for_update()


async def get_clock(conn: AsyncConnection, clock_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One clock row, or None."""
    stmt = _LOCK_CLOCK if lock and conn.dialect.name == "postgresql" else _GET_CLOCK
    row = (await conn.execute(stmt, {"clock_id": clock_id})).mappings().first()
    return _row(row) if row else None


async def case_clocks(
    conn: AsyncConnection, *, case_id: str, open_only: bool = False, lock: bool = False
) -> list[dict[str, Any]]:
    """A case's clocks, the case's own first."""
    stmt = select(orm.clocks).where(orm.clocks.c.case_id == case_id)
    if open_only:
        stmt = stmt.where(orm.clocks.c.stopped_at.is_(None))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = [_row(r) for r in (await conn.execute(stmt)).mappings()]
    return sorted(rows, key=lambda r: (r["task_id"] != "", r["department"], r["task_id"]))


async def claim_due(conn: AsyncConnection, *, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Lock the clocks whose next action is due, earliest first; rows another replica holds are skipped."""
    stmt = (
        select(*(orm.clocks.c[n] for n in _TICK_READ))
        .where(orm.clocks.c.next_action_at <= now)
        .order_by(orm.clocks.c.next_action_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [dict(zip(_TICK_READ, r, strict=True)) for r in (await conn.execute(stmt)).all()]


async def update_ticked(conn: AsyncConnection, rows: Sequence[dict[str, Any]], *, now: datetime) -> None:
    """Write back what a tick changed, in one statement."""
    await bulk.update_by_key(
        conn, orm.clocks, "clock_id", rows, columns=_TICK_COLUMNS, same={"updated_at": now}
    )


async def open_clocks_after(conn: AsyncConnection, *, after: str, limit: int) -> list[dict[str, Any]]:
    """Open clocks by id after ``after`` (keyset pages for a recompute), locked on PostgreSQL."""
    stmt = (
        select(orm.clocks)
        .where(orm.clocks.c.stopped_at.is_(None), orm.clocks.c.clock_id > after)
        .order_by(orm.clocks.c.clock_id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return [_row(r) for r in (await conn.execute(stmt)).mappings()]


def add_change(
    uow: UnitOfWork,
    *,
    clock_id: str,
    case_number: str,
    at: datetime,
    cause: str,
    old_due: datetime | None,
    new_due: datetime | None,
    detail: str = "",
    event_id: str = "",
) -> None:
    """Record one change to a clock with its cause (written with the unit of work's other changes in one
    round trip just before it commits)."""
    uow.insert_later(
        orm.clock_changes,
        {
            "clock_id": clock_id,
            "case_number": case_number,
            "at": at,
            "cause": cause,
            "old_due": old_due,
            "new_due": new_due,
            "detail": detail,
            "event_id": event_id,
        },
        ignore=False,
    )


async def changes(conn: AsyncConnection, clock_id: str) -> list[dict[str, Any]]:
    """A clock's recorded changes in order."""
    stmt = (
        select(orm.clock_changes)
        .where(orm.clock_changes.c.clock_id == clock_id)
        .order_by(orm.clock_changes.c.id)
    )
    return [_row(r) for r in (await conn.execute(stmt)).mappings()]


# -- warnings, urges, deemed approvals -------------------------------------------------------------


async def get_deemed(conn: AsyncConnection, task_id: str) -> dict[str, Any] | None:
    """The deemed-approval record of a task."""
    row = (await conn.execute(select(orm.deemed).where(orm.deemed.c.task_id == task_id))).mappings().first()
    return _row(row) if row else None


async def settle_deemed(conn: AsyncConnection, task_id: str, **values: Any) -> bool:
    """Settle a pending deemed approval; False when another path settled it first."""
    result = await conn.execute(
        update(orm.deemed)
        .where(orm.deemed.c.task_id == task_id, orm.deemed.c.state == "pending")
        .values(**values)
    )
    return bool(result.rowcount)


async def note_deem_attempt(conn: AsyncConnection, task_id: str, *, note: str) -> None:
    """Count a failed call to approval (the record stays pending and is retried)."""
    await conn.execute(
        update(orm.deemed)
        .where(orm.deemed.c.task_id == task_id, orm.deemed.c.state == "pending")
        .values(attempts=orm.deemed.c.attempts + 1, note=note[:500])
    )


async def add_accountability(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """Record who answers for a deemed approval (once per task)."""
    return await insert_ignore(conn, orm.accountability, row)


async def accountability(conn: AsyncConnection, *, department: str) -> list[dict[str, Any]]:
    """Accountability records, newest first."""
    stmt = select(orm.accountability)
    if department:
        stmt = stmt.where(orm.accountability.c.department == department)
    rows = (await conn.execute(stmt.order_by(orm.accountability.c.deemed_at.desc()))).mappings()
    return [_row(r) for r in rows]


async def current_warnings(
    conn: AsyncConnection, *, department: str, min_level: int, limit: int = 1000
) -> list[tuple[dict[str, Any], int, datetime]]:
    """Open clocks' current warning (their highest level), most urgent first."""
    w, c = orm.warnings, orm.clocks
    stmt = (
        select(c, w.c.level.label("w_level"), w.c.raised_at.label("w_raised_at"))
        .join(w, (w.c.clock_id == c.c.clock_id) & (w.c.level == c.c.warned_level))
        .where(c.c.stopped_at.is_(None), w.c.level >= max(min_level, model.YELLOW))
        .order_by(w.c.level.desc(), c.c.due_at)
        .limit(limit)
    )
    if department:
        stmt = stmt.where(c.c.department == department)
    out = []
    for r in (await conn.execute(stmt)).mappings():
        row = _row({k: v for k, v in r.items() if not k.startswith("w_")})
        out.append((row, int(r["w_level"]), r["w_raised_at"]))
    return out


async def add_events(conn: AsyncConnection, events: Sequence[events_pb2.Envelope], *, now: datetime) -> None:
    """Write a tick's events to the outbox: the rows Outbox.add writes, in one statement."""
    rows = [
        {"event_id": e.event_id, "subject": subject_for(kind(e)), "payload": e.SerializeToString()}
        for e in events
    ]
    await bulk.insert_ignore(conn, orm.outbox, rows, same={"created_at": now}, returning=False)

"""Intake's data access: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import insert_ignore
from services.common.outbox import UnitOfWork
from services.intake import orm


async def get_case(
    conn: AsyncConnection, *, case_id: str = "", case_number: str = ""
) -> dict[str, Any] | None:
    """A case row by id or number, or None."""
    cond = orm.cases.c.case_id == case_id if case_id else orm.cases.c.case_number == case_number
    row = (await conn.execute(select(orm.cases).where(cond))).mappings().first()
    return dict(row) if row else None


async def get_by_request_id(conn: AsyncConnection, request_id: str) -> dict[str, Any] | None:
    """The case created by an earlier submission with this client request id."""
    row = (
        (await conn.execute(select(orm.cases).where(orm.cases.c.client_request_id == request_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def insert_case(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert a new case."""
    await conn.execute(orm.cases.insert().values(**row))


async def update_case(conn: AsyncConnection, case_id: str, **values: Any) -> None:
    """Update columns of one case."""
    await conn.execute(update(orm.cases).where(orm.cases.c.case_id == case_id).values(**values))


async def next_sequence(conn: AsyncConnection, *, center: str, day: str) -> int:
    """The next number of the day for `center` (unique; the row lock serializes writers)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(orm.case_sequences).values(center=center, day=day, seq=1)
    stmt = insert.on_conflict_do_update(
        index_elements=[orm.case_sequences.c.center, orm.case_sequences.c.day],
        set_={"seq": orm.case_sequences.c.seq + 1},
    ).returning(orm.case_sequences.c.seq)
    return int((await conn.execute(stmt)).scalar_one())


async def known_documents(conn: AsyncConnection, digests: list[str]) -> dict[str, dict[str, Any]]:
    """Stored documents among `digests`."""
    if not digests:
        return {}
    rows = (await conn.execute(select(orm.documents).where(orm.documents.c.digest.in_(digests)))).mappings()
    return {row["digest"]: dict(row) for row in rows}


async def add_document(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Record a stored document (content-addressed: a second upload is the same row)."""
    await insert_ignore(conn, orm.documents, row)


def add_timeline_later(
    uow: UnitOfWork,
    *,
    case_id: str,
    event_id: str,
    at: datetime,
    kind: str,
    summary_zh: str,
    summary_en: str,
    actor: str = "",
    department: str = "",
) -> None:
    """Append one entry to a case's timeline (once per event), written with the unit of work's other
    entries in one round trip just before it commits."""
    uow.insert_later(
        orm.timeline,
        {
            "case_id": case_id,
            "event_id": event_id,
            "at": at,
            "kind": kind,
            "summary_zh": summary_zh,
            "summary_en": summary_en,
            "actor": actor,
            "department": department,
        },
    )


async def timeline(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    """A case's timeline in order."""
    rows = await conn.execute(
        select(orm.timeline)
        .where(orm.timeline.c.case_id == case_id)
        .order_by(orm.timeline.c.at, orm.timeline.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def list_cases(
    conn: AsyncConnection, *, status: int = 0, matter_code: str = "", limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Cases, newest first, optionally filtered."""
    stmt = select(orm.cases)
    if status:
        stmt = stmt.where(orm.cases.c.status == status)
    if matter_code:
        stmt = stmt.where(orm.cases.c.matter_code == matter_code)
    stmt = stmt.order_by(orm.cases.c.submitted_at.desc(), orm.cases.c.case_id).limit(limit).offset(offset)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def count_cases(conn: AsyncConnection) -> int:
    """How many cases this center holds."""
    return int((await conn.execute(select(func.count()).select_from(orm.cases))).scalar_one())

"""Data access of the convenience service: agency, assignments, deliveries, fee entries, reconciliations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.common.v1 import common_pb2
from services.common.db import insert_ignore
from services.intake import orm
from services.intake import orm_convenience as t


def _one(row: Any) -> dict[str, Any] | None:
    return dict(row) if row else None


async def insert(conn: AsyncConnection, table: Any, row: dict[str, Any]) -> None:
    """Insert one row."""
    await conn.execute(table.insert().values(**row))


async def get_agency(conn: AsyncConnection, agency_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """An agency record, optionally locked for the rest of the transaction."""
    stmt = select(t.agency).where(t.agency.c.agency_id == agency_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return _one((await conn.execute(stmt)).mappings().first())


async def agency_of_case(conn: AsyncConnection, case_id: str) -> dict[str, Any] | None:
    """The agency record that produced a case, if any."""
    return _one(
        (await conn.execute(select(t.agency).where(t.agency.c.case_id == case_id))).mappings().first()
    )


async def update_agency(conn: AsyncConnection, agency_id: str, **values: Any) -> None:
    """Update columns of one agency record."""
    await conn.execute(update(t.agency).where(t.agency.c.agency_id == agency_id).values(**values))


async def get_assignment(conn: AsyncConnection, case_id: str) -> dict[str, Any] | None:
    """The full-process agent assigned to a case, if any."""
    stmt = select(t.assignments).where(t.assignments.c.case_id == case_id)
    return _one((await conn.execute(stmt)).mappings().first())


async def put_assignment(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Assign (or reassign) the case's full-process agent."""
    if not await insert_ignore(conn, t.assignments, row):
        await conn.execute(
            update(t.assignments).where(t.assignments.c.case_id == row["case_id"]).values(**row)
        )


async def agent_case_ids(conn: AsyncConnection, username: str) -> list[str]:
    """Cases an agent carries: assigned to them, or taken by them and assigned to nobody else."""
    assigned = select(t.assignments.c.case_id).where(t.assignments.c.agent_username == username)
    ids = [r[0] for r in await conn.execute(assigned)]
    taken = (
        select(t.agency.c.case_id)
        .select_from(t.agency.outerjoin(t.assignments, t.assignments.c.case_id == t.agency.c.case_id))
        .where(
            t.agency.c.agent_username == username,
            t.agency.c.case_id.is_not(None),
            t.assignments.c.case_id.is_(None),
        )
    )
    ids += [r[0] for r in await conn.execute(taken) if r[0] not in ids]
    return ids


async def taken_not_handed_over(conn: AsyncConnection, username: str) -> list[dict[str, Any]]:
    """Matters an agent took and has not handed over yet."""
    stmt = select(t.agency).where(t.agency.c.agent_username == username, t.agency.c.state == "taken")
    return [dict(r) for r in (await conn.execute(stmt.order_by(t.agency.c.taken_at))).mappings()]


async def get_delivery(conn: AsyncConnection, case_id: str) -> dict[str, Any] | None:
    """A case's recorded delivery, if any."""
    stmt = select(t.deliveries).where(t.deliveries.c.case_id == case_id)
    return _one((await conn.execute(stmt)).mappings().first())


async def undelivered(conn: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    """Concluded (not withdrawn) cases without a delivery, oldest conclusion first, with their agent."""
    c = orm.cases.c
    stmt = (
        select(
            c.case_id,
            c.case_number,
            c.matter_code,
            c.applicant,
            c.concluded_at,
            t.assignments.c.agent_username,
        )
        .select_from(
            orm.cases.outerjoin(t.deliveries, t.deliveries.c.case_id == c.case_id).outerjoin(
                t.assignments, t.assignments.c.case_id == c.case_id
            )
        )
        .where(
            c.status == common_pb2.CASE_STATUS_CONCLUDED,
            c.outcome != common_pb2.OUTCOME_WITHDRAWN,
            t.deliveries.c.case_id.is_(None),
        )
        .order_by(c.concluded_at, c.case_id)
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def next_receipt(conn: AsyncConnection, *, center: str, year: int) -> int:
    """The next receipt sequence of a center's year; the counter row's lock serializes collectors."""
    await insert_ignore(conn, t.receipt_sequences, {"center": center, "year": year, "seq": 0})
    s = t.receipt_sequences
    stmt = (
        update(s)
        .where(and_(s.c.center == center, s.c.year == year))
        .values(seq=s.c.seq + 1)
        .returning(s.c.seq)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def fee_by_receipt(
    conn: AsyncConnection, receipt_number: str, *, lock: bool = False
) -> dict[str, Any] | None:
    """A fee entry by its receipt number (locked: refunds of one charge are serialized)."""
    stmt = select(t.fee_entries).where(t.fee_entries.c.receipt_number == receipt_number)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return _one((await conn.execute(stmt)).mappings().first())


async def later_entries(conn: AsyncConnection, entry_id: str) -> list[dict[str, Any]]:
    """Refunds and voids of one charge."""
    stmt = (
        select(t.fee_entries)
        .where(t.fee_entries.c.original_entry_id == entry_id)
        .order_by(t.fee_entries.c.seq)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def fees(
    conn: AsyncConnection, *, center: str, day: str = "", collector: str = "", case_number: str = ""
) -> list[dict[str, Any]]:
    """Fee entries of a center, filtered, in receipt order."""
    f = t.fee_entries.c
    stmt = select(t.fee_entries).where(f.center == center)
    if day:
        stmt = stmt.where(f.day == day)
    if collector:
        stmt = stmt.where(f.collector_username == collector)
    if case_number:
        stmt = stmt.where(f.case_number == case_number)
    return [dict(r) for r in (await conn.execute(stmt.order_by(f.year, f.seq))).mappings()]


async def add_reconciliation(conn: AsyncConnection, row: dict[str, Any]) -> int:
    """Record a reconciliation; its id."""
    result = await conn.execute(t.reconciliations.insert().values(**row).returning(t.reconciliations.c.id))
    return int(result.scalar_one())


async def reconciliations(
    conn: AsyncConnection,
    *,
    center: str,
    day: str,
    collector: str = "",
    reconciliation_id: int = 0,
    with_reports: bool = False,
) -> list[dict[str, Any]]:
    """A center's recorded reconciliations of a day, oldest first (the reports only when asked for)."""
    r = t.reconciliations.c
    columns = [c for c in t.reconciliations.c if with_reports or c.name != "report_html"]
    stmt = select(*columns).where(r.center == center, r.day == day)
    if collector:
        stmt = stmt.where(r.collector == collector)
    if reconciliation_id:
        stmt = stmt.where(r.id == reconciliation_id)
    return [dict(row) for row in (await conn.execute(stmt.order_by(r.id))).mappings()]

"""Intake's data access: SQLAlchemy Core statements on the unit of work's connection."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import insert_ignore, one_of, update_many
from services.common.outbox import UnitOfWork
from services.intake import orm, outbound


async def get_case(
    conn: AsyncConnection, *, case_id: str = "", case_number: str = ""
) -> dict[str, Any] | None:
    """A case row by id or number, or None."""
    cond = orm.cases.c.case_id == case_id if case_id else orm.cases.c.case_number == case_number
    row = (await conn.execute(select(orm.cases).where(cond))).mappings().first()
    return dict(row) if row else None


async def insert_case(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert a new case now."""
    await conn.execute(orm.cases.insert().values(**row))


async def update_case(conn: AsyncConnection, case_id: str, **values: Any) -> None:
    """Update columns of one case."""
    await conn.execute(update(orm.cases).where(orm.cases.c.case_id == case_id).values(**values))


# -- batch reads and writes within one unit of work (a consumer batch, a group of submissions) ----------


def _in(column: Any, dialect_name: str) -> Any:
    return one_of(column, "ids", postgresql=dialect_name == "postgresql")


@functools.cache
def _by_request_ids(dialect_name: str) -> Any:
    return select(orm.cases).where(_in(orm.cases.c.client_request_id, dialect_name))


@functools.cache
def _cases_and_uploads(dialect_name: str) -> Any:
    f = orm.forwarding.c
    has_upload = (
        exists().where(f.case_id == orm.cases.c.case_id, f.op == outbound.UPLOAD).label("_has_upload")
    )
    return select(orm.cases, has_upload).where(_in(orm.cases.c.case_id, dialect_name))


async def preload_cases(uow: UnitOfWork, case_ids: Iterable[str]) -> dict[str, bool]:
    """Read these cases in one statement for `load_case` (a missing one is remembered as missing), and
    answer which of them have an upload operation to a parent center (federation asks for some)."""
    wanted = [c for c in dict.fromkeys(case_ids) if c and not uow.cached(orm.cases, c)[0]]
    if not wanted:
        return {}
    for c in wanted:
        uow.remember(orm.cases, c, None)
    uploads = dict.fromkeys(wanted, False)
    result = await uow.conn.execute(_cases_and_uploads(uow.conn.dialect.name), {"ids": wanted})
    for row in result.mappings():
        case = dict(row)
        uploads[case["case_id"]] = bool(case.pop("_has_upload"))
        uow.remember(orm.cases, case["case_id"], case)
    return uploads


_NEW_CASES = "intake.new_cases"  # uow.memo: ids of the cases this transaction inserts
_CASE_UPDATES = "intake.case_updates"  # uow.memo: case id -> columns to set at commit


async def load_case(uow: UnitOfWork, case_id: str) -> dict[str, Any] | None:
    """A case as this transaction knows it (preloaded, or read now and kept); None when there is none.

    The same dict is answered for the rest of the transaction: write it with `update_case_later`."""
    known, row = uow.cached(orm.cases, case_id)
    if not known:
        row = await get_case(uow.conn, case_id=case_id)
        uow.remember(orm.cases, case_id, row)
    return row


async def preload_request_ids(uow: UnitOfWork, request_ids: Iterable[str]) -> None:
    """Read the cases of these client request ids in one statement, for `case_by_request_id`."""
    wanted = [r for r in dict.fromkeys(request_ids) if r and ("request", r) not in uow.memo]
    if not wanted:
        return
    for r in wanted:
        uow.memo["request", r] = None
    for row in (await uow.conn.execute(_by_request_ids(uow.conn.dialect.name), {"ids": wanted})).mappings():
        uow.memo["request", row["client_request_id"]] = dict(row)


@functools.cache
def _by_origins_or_request_ids(dialect_name: str) -> Any:
    c = orm.cases.c
    pg = dialect_name == "postgresql"
    origins = one_of(c.origin_case_id, "origins", postgresql=pg)
    return select(orm.cases).where(origins | one_of(c.client_request_id, "rids", postgresql=pg))


async def preload_uploads(uow: UnitOfWork, uploads: dict[str, str]) -> None:
    """Read, in one statement, the cases child centers uploaded under these child case ids and the cases
    of these client request ids (`uploads`: child case id -> request id), for `uploaded_cases` and
    `case_by_request_id`."""
    origins = [o for o in uploads if o and ("origin", o) not in uow.memo]
    rids = [r for r in dict.fromkeys(uploads[o] for o in origins) if r and ("request", r) not in uow.memo]
    if not origins and not rids:
        return
    for o in origins:
        uow.memo["origin", o] = []
    for r in rids:
        uow.memo["request", r] = None
    params = {"origins": origins, "rids": rids}
    for found in (
        await uow.conn.execute(_by_origins_or_request_ids(uow.conn.dialect.name), params)
    ).mappings():
        row = dict(found)
        if row["origin_case_id"] in origins:
            uow.memo["origin", row["origin_case_id"]].append(row)
        if row["client_request_id"] in rids:
            uow.memo["request", row["client_request_id"]] = row


async def uploaded_cases(uow: UnitOfWork, child_case_id: str, request_id: str) -> list[dict[str, Any]]:
    """The cases uploaded under `child_case_id` by any child center (in this transaction too)."""
    await preload_uploads(uow, {child_case_id: request_id})
    rows: list[dict[str, Any]] = uow.memo["origin", child_case_id]
    return rows


async def case_by_request_id(uow: UnitOfWork, request_id: str) -> dict[str, Any] | None:
    """The case created by an earlier submission with this client request id (in this transaction too)."""
    await preload_request_ids(uow, [request_id])
    row: dict[str, Any] | None = uow.memo["request", request_id]
    return row


def insert_case_later(uow: UnitOfWork, row: dict[str, Any]) -> None:
    """Insert a new case at commit, with the transaction's other new cases in one statement; `row` is
    inserted as it is then (so `update_case_later` on it only changes the dict)."""
    uow.memo.setdefault(_NEW_CASES, set()).add(row["case_id"])
    if row["client_request_id"]:
        uow.memo["request", row["client_request_id"]] = row  # a retry in the same batch gets this case
    if row["origin_case_id"] and ("origin", row["origin_case_id"]) in uow.memo:
        uow.memo["origin", row["origin_case_id"]].append(row)  # so does a repeated upload
    uow.remember(orm.cases, row["case_id"], row)
    uow.insert_later(orm.cases, row, ignore=False)


def update_case_later(uow: UnitOfWork, row: dict[str, Any], **values: Any) -> None:
    """Set columns of a case, in `row` now and in the database at commit: the transaction's case updates
    go out in one statement per set of columns, each case's changes merged."""
    row.update(values)
    if row["case_id"] in uow.memo.get(_NEW_CASES, ()):
        return  # inserted at commit, as the dict is by then
    pending = uow.memo.get(_CASE_UPDATES)
    if pending is None:
        # Registered afresh after each flush: a before-commit step that runs after an earlier flush (the
        # numbering of accepted cases) adds its own, which commit runs after it.
        pending = uow.memo[_CASE_UPDATES] = {}
        uow.before_commit(functools.partial(_flush_case_updates, uow))
    pending.setdefault(row["case_id"], {}).update(values)


async def _flush_case_updates(uow: UnitOfWork, conn: AsyncConnection) -> None:
    pending: dict[str, dict[str, Any]] = uow.memo.pop(_CASE_UPDATES, {})
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for case_id, values in pending.items():
        by_columns.setdefault(tuple(sorted(values)), []).append({**values, "case_id": case_id})
    for columns, rows in by_columns.items():
        await update_many(conn, orm.cases, "case_id", columns, rows)


@functools.cache
def _draw_numbers(dialect_name: str) -> Any:
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    seq = orm.case_sequences.c
    insert = dialect.insert(orm.case_sequences).values(
        center=bindparam("center"), day=bindparam("day"), seq=bindparam("count")
    )
    return insert.on_conflict_do_update(
        index_elements=[seq.center, seq.day], set_={"seq": seq.seq + insert.excluded.seq}
    ).returning(seq.seq)


async def next_sequences(conn: AsyncConnection, *, center: str, day: str, count: int) -> list[int]:
    """The next `count` numbers of the day for `center`, in one statement (unique; the row lock
    serializes writers until commit)."""
    top = int(
        (
            await conn.execute(
                _draw_numbers(conn.dialect.name), {"center": center, "day": day, "count": count}
            )
        ).scalar_one()
    )
    return list(range(top - count + 1, top + 1))


async def next_sequence(conn: AsyncConnection, *, center: str, day: str) -> int:
    """The next number of the day for `center`."""
    return (await next_sequences(conn, center=center, day=day, count=1))[0]


async def known_documents(conn: AsyncConnection, digests: list[str]) -> dict[str, dict[str, Any]]:
    """Stored documents among `digests`."""
    if not digests:
        return {}
    rows = (await conn.execute(select(orm.documents).where(orm.documents.c.digest.in_(digests)))).mappings()
    return {row["digest"]: dict(row) for row in rows}


async def stored_documents(uow: UnitOfWork, digests: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Stored documents among `digests`, read through the unit of work (one statement for a whole batch
    when it preloaded them)."""
    await uow.preload(orm.documents, digests)  # reads only what the transaction does not know yet
    found = {}
    for d in digests:
        row = uow.cached(orm.documents, d)[1]
        if row is not None:
            found[d] = row
    return found


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

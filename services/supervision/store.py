"""The cases and clocks an event's transaction reads and writes, held in the unit of work.

A consumer batch reads its cases and all their clocks up front (`prefetch`: two or three statements,
rows locked in key order on PostgreSQL); the handlers read and change those rows in memory, and the
unit of work writes each changed row once at commit (one INSERT .. ON CONFLICT per table). Rows are
always written whole, so the row a handler saves is the row the database ends up with.

The case row's lock guards its clocks: every clock is created by an event of its case, whose
transaction holds that lock, so two replicas never create or change the same clock at once (the tick
and recomputes lock the clocks they change). A case that is not known yet gets a placeholder row
before the lock is taken when an event of the batch will write it, so that two replicas creating one
case serialize on it instead of the later overwriting the earlier. The events of a task carry its
case's id, so a task's clock absent among its case's clocks does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from onestop.events.v1 import events_pb2
from services.common.db import insert_many
from services.common.events import kind
from services.common.outbox import UnitOfWork
from services.supervision import orm

# Events whose handler writes the case row (creating it on first sight).
CASE_WRITERS = frozenset(
    {
        "case_accepted",
        "case_routed",
        "supplement_requested",
        "key_project_designated",
        "case_concluded",
        "case_withdrawn",
        "case_forwarded",
        "parent_result_received",
    }
)
_CASE_ORDER = ("submitted", "accepted", "routed", "forwarded")
# A new case row: every column's default (whole rows are written, see above).
_NEW_CASE = {c.name: getattr(c.default, "arg", None) for c in orm.cases.c}
_CASE_COLUMNS = tuple(_NEW_CASE)
_CHUNK = 1000
_CLOCKS_OF = "supervision.clocks_of"  # uow.memo key prefix: the ids of a case's clocks, once read

_SELECT_CASES = (
    select(orm.cases)
    .where(orm.cases.c.case_id.in_(bindparam("keys", expanding=True)))
    .order_by(orm.cases.c.case_id)
)
_LOCK_CASES = _SELECT_CASES.with_for_update()
_SELECT_CLOCKS_OF = (
    select(orm.clocks)
    .where(orm.clocks.c.case_id.in_(bindparam("keys", expanding=True)))
    .order_by(orm.clocks.c.clock_id)
)
_LOCK_CLOCKS_OF = _SELECT_CLOCKS_OF.with_for_update()
_SELECT_CLOCK = select(orm.clocks).where(orm.clocks.c.clock_id == bindparam("clock_id"))
_LOCK_CLOCK = _SELECT_CLOCK.with_for_update()


def case_id_of(env: events_pb2.Envelope) -> str:
    """The case an event is about."""
    if env.HasField("task_opened"):
        return env.task_opened.task.case_id or env.case_id
    return env.case_id


def new_case(case_id: str, now: datetime) -> dict[str, Any]:
    """A case row as first seen: nothing known but its id."""
    return {**_NEW_CASE, "case_id": case_id, "status": "submitted", "updated_at": now}


async def prefetch(uow: UnitOfWork, envs: Sequence[events_pb2.Envelope], *, now: datetime) -> None:
    """Read (and lock) the cases of a batch and all their clocks, creating the cases it will write."""
    case_ids = {case_id_of(e) for e in envs} - {""}
    writes = {case_id_of(e) for e in envs if kind(e) in CASE_WRITERS} - {""}
    await load_cases(uow, case_ids, create=writes, now=now)
    await load_clocks_of(uow, case_ids)


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    return (keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK))


async def load_cases(
    uow: UnitOfWork, case_ids: Iterable[str], *, create: Iterable[str] = (), now: datetime | None = None
) -> None:
    """Read and lock the cases not known to this transaction yet (in one statement per thousand),
    inserting placeholder rows first for those of ``create`` that do not exist."""
    wanted = sorted(k for k in set(case_ids) if not uow.cached(orm.cases, k)[0])
    if wanted:
        await _read_cases(uow, wanted, create=sorted(set(create) & set(wanted)), now=now)


async def _read_cases(
    uow: UnitOfWork, case_ids: list[str], *, create: list[str], now: datetime | None
) -> None:
    conn = uow.conn
    if create:
        assert now is not None
        await insert_many(conn, orm.cases, _CASE_COLUMNS, [new_case(k, now) for k in create], "ignore")
    for k in case_ids:
        uow.remember(orm.cases, k, None)
    stmt = _LOCK_CASES if conn.dialect.name == "postgresql" else _SELECT_CASES
    for chunk in _chunks(case_ids):
        for row in (await conn.execute(stmt, {"keys": chunk})).mappings():
            uow.remember(orm.cases, row["case_id"], dict(row))


async def load_clocks_of(uow: UnitOfWork, case_ids: Iterable[str]) -> None:
    """Read and lock every clock of the cases whose clocks this transaction has not read yet."""
    wanted = sorted(k for k in set(case_ids) if (_CLOCKS_OF, k) not in uow.memo)
    if not wanted:
        return
    pg = uow.conn.dialect.name == "postgresql"
    for k in wanted:
        uow.memo[(_CLOCKS_OF, k)] = {}
    for chunk in _chunks(wanted):
        result = await uow.conn.execute(_LOCK_CLOCKS_OF if pg else _SELECT_CLOCKS_OF, {"keys": chunk})
        for row in result.mappings():
            if not uow.cached(orm.clocks, row["clock_id"])[0]:  # what this transaction holds is newer
                uow.remember(orm.clocks, row["clock_id"], dict(row))
            uow.memo[(_CLOCKS_OF, row["case_id"])][row["clock_id"]] = None


async def case_row(uow: UnitOfWork, case_id: str) -> dict[str, Any] | None:
    """A known case, or None."""
    known, row = uow.cached(orm.cases, case_id)
    if not known:
        await load_cases(uow, [case_id])
        row = uow.cached(orm.cases, case_id)[1]
    return row


async def update_case(
    uow: UnitOfWork, *, case_id: str, now: datetime, advance_to: str = "", **values: Any
) -> dict[str, Any]:
    """Create the case on first sight, then set ``values`` and move it forward to ``advance_to`` (events
    may arrive out of order; a case never goes back); the row as it now is (written at commit)."""
    current = await case_row(uow, case_id)
    if current is None:
        # Not created ahead (an event missing from CASE_WRITERS): create and lock it now all the same.
        await _read_cases(uow, [case_id], create=[case_id], now=now)
        current = uow.cached(orm.cases, case_id)[1] or new_case(case_id, now)
    row = {**current, **values, "updated_at": now}
    if advance_to and current["status"] in _CASE_ORDER[: _CASE_ORDER.index(advance_to)]:
        row["status"] = advance_to
    return uow.upsert_later(orm.cases, row)


async def clock_row(uow: UnitOfWork, clock_id: str, *, case_id: str = "") -> dict[str, Any] | None:
    """One clock (of the case ``case_id``, when known: then all that case's clocks are read), or None."""
    known, row = uow.cached(orm.clocks, clock_id)
    if known:
        return row
    if case_id:
        await load_clocks_of(uow, [case_id])
        if clock_id not in uow.memo[(_CLOCKS_OF, case_id)]:
            uow.remember(orm.clocks, clock_id, None)
        return uow.cached(orm.clocks, clock_id)[1]
    stmt = _LOCK_CLOCK if uow.conn.dialect.name == "postgresql" else _SELECT_CLOCK
    found = (await uow.conn.execute(stmt, {"clock_id": clock_id})).mappings().first()
    uow.remember(orm.clocks, clock_id, dict(found) if found else None)
    return uow.cached(orm.clocks, clock_id)[1]


async def clocks_of(uow: UnitOfWork, case_id: str, *, open_only: bool = False) -> list[dict[str, Any]]:
    """A case's clocks (``open_only``: not stopped), the case's own first."""
    await load_clocks_of(uow, [case_id])
    rows = [uow.cached(orm.clocks, clock_id)[1] for clock_id in uow.memo[(_CLOCKS_OF, case_id)]]
    found = [r for r in rows if r is not None and not (open_only and r["stopped_at"] is not None)]
    return sorted(found, key=lambda r: (r["task_id"] != "", r["department"], r["task_id"]))


async def add_clock(uow: UnitOfWork, row: dict[str, Any]) -> bool:
    """Create a clock (a whole row) unless it exists; True when created."""
    if await clock_row(uow, row["clock_id"], case_id=row["case_id"]) is not None:
        return False
    uow.upsert_later(orm.clocks, row)
    uow.memo[(_CLOCKS_OF, row["case_id"])][row["clock_id"]] = None
    return True


def save_clock(uow: UnitOfWork, row: dict[str, Any]) -> None:
    """Write a changed clock (a whole row, read through this module) at commit."""
    uow.upsert_later(orm.clocks, row)

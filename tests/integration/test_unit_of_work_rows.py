"""A unit of work's batch reads and writes (`preload`, `cached`, `upsert_later`) on SQLite and PostgreSQL:
what a consumer batch reads ahead and writes back once is exactly what one statement per event would
have left in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.db import Instant, create_engine, update_many
from services.common.events import kind, new_event, subject_for
from services.common.outbox import Outbox, UnitOfWork, inbox_table, outbox_table

metadata = MetaData()
cases = Table(
    "probe_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("tasks_open", Integer, nullable=False, server_default="0"),
)
clocks = Table(
    "probe_clocks",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("task_id", String(36), primary_key=True),
    Column("state", String(16), nullable=False),
)
timeline = Table(
    "probe_timeline",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("detail", JSON, nullable=True),
    Column("blob", LargeBinary, nullable=True),
    Column("urgent", Boolean, nullable=True),
    Column("at", Instant, nullable=True),
    Column("note", String(16), nullable=False, default="-"),
)
outbox = Outbox(outbox_table(metadata, "probe"))
inbox = inbox_table(metadata, "probe")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(cases.insert(), [{"case_id": "A", "state": "open", "tasks_open": 2}])
    yield engine
    await engine.dispose()


async def _rows(engine: AsyncEngine, table: Table) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(select(table).order_by(*table.primary_key))).all()]


async def test_preload_answers_present_and_absent_rows_and_leaves_unknown_ones_to_the_caller(
    engine: AsyncEngine,
) -> None:
    async with UnitOfWork(engine, outbox) as uow:
        await uow.preload(cases, ["A", "B", "A"])
        assert uow.cached(cases, "A") == (True, {"case_id": "A", "state": "open", "tasks_open": 2})
        assert uow.cached(cases, "B") == (True, None)  # known absent: no second query needed
        assert uow.cached(cases, "C") == (False, None)  # never asked: the caller reads it
        uow.remember(cases, "C", None)
        assert uow.cached(cases, "C") == (True, None)


async def test_upserts_merge_in_memory_and_reach_the_database_once_at_commit(engine: AsyncEngine) -> None:
    async with UnitOfWork(engine, outbox) as uow:
        await uow.preload(cases, ["A", "B"])
        uow.upsert_later(cases, {"case_id": "A", "tasks_open": 1})
        merged = uow.upsert_later(cases, {"case_id": "A", "state": "closing"})
        assert merged == {"case_id": "A", "state": "closing", "tasks_open": 1}
        uow.upsert_later(cases, {"case_id": "B", "state": "new", "tasks_open": 0})
        uow.upsert_later(clocks, {"case_id": "A", "task_id": "t1", "state": "running"})
        uow.upsert_later(clocks, {"case_id": "A", "task_id": "t1", "state": "stopped"})
        assert uow.cached(clocks, ("A", "t1")) == (
            True,
            {"case_id": "A", "task_id": "t1", "state": "stopped"},
        )
        await uow.commit()
    assert await _rows(engine, cases) == [("A", "closing", 1), ("B", "new", 0)]
    assert await _rows(engine, clocks) == [("A", "t1", "stopped")]


async def test_a_rolled_back_unit_of_work_writes_none_of_its_upserts(engine: AsyncEngine) -> None:
    async with UnitOfWork(engine, outbox) as uow:
        uow.upsert_later(cases, {"case_id": "A", "state": "lost"})
        uow.upsert_later(cases, {"case_id": "Z", "state": "lost"})
    assert await _rows(engine, cases) == [("A", "open", 2)]


async def test_an_inbox_batch_names_only_the_events_its_consumer_had_not_applied(engine: AsyncEngine) -> None:
    async with UnitOfWork(engine, outbox) as uow:
        assert await uow.mark_many_processed(inbox, consumer="c", event_ids=["e1", "e2", "e1"]) == {
            "e1",
            "e2",
        }
        await uow.commit()
    async with UnitOfWork(engine, outbox) as uow:
        assert await uow.mark_many_processed(inbox, consumer="c", event_ids=["e2", "e3"]) == {"e3"}
        assert await uow.mark_many_processed(inbox, consumer="other", event_ids=["e1"]) == {"e1"}
        assert await uow.mark_many_processed(inbox, consumer="c", event_ids=[]) == set()
    # Rolled back: e3 was not applied, so the next batch still gets it.
    async with UnitOfWork(engine, outbox) as uow:
        assert await uow.mark_many_processed(inbox, consumer="c", event_ids=["e3", "e1"]) == {"e3"}


async def test_outbox_rows_keep_the_order_their_events_were_recorded_in(engine: AsyncEngine) -> None:
    at = datetime(2026, 12, 5, 9, tzinfo=UTC)
    events = [
        new_event(
            center="210200",
            producer="probe",
            at=at,
            case_id=f"c{i}",
            case_number=f"N-{i}",
            body=events_pb2.CaseWithdrawn() if i % 2 else events_pb2.CaseAccepted(),
        )
        for i in range(30)
    ]
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(*events)
        await uow.commit()
    table = outbox.table
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.seq))).mappings().all()
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert [r["subject"] for r in rows] == [subject_for(kind(e)) for e in events]
    assert [events_pb2.Envelope.FromString(r["payload"]) for r in rows] == events
    assert all(r["sent_at"] is None and r["created_at"] is not None for r in rows)
    assert outbox.take_fresh(100) == [
        (e.event_id, subject_for(kind(e)), e.SerializeToString(), e.case_id) for e in events
    ]


async def test_rows_written_later_in_bulk_keep_their_order_values_and_conflict_rule(
    engine: AsyncEngine,
) -> None:
    at = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    async with UnitOfWork(engine, outbox) as uow:
        uow.insert_later(
            timeline,
            {"event_id": "x0", "detail": {"a": [1, "二"]}, "blob": b"\x00\xff", "urgent": True, "at": at},
        )
        uow.insert_later(
            timeline, {"event_id": "x1", "detail": [[1, 2], []], "blob": None, "urgent": None, "at": None}
        )
        uow.insert_later(timeline, {"event_id": "x0", "detail": [], "blob": b"", "urgent": False, "at": at})
        uow.insert_later(timeline, {"event_id": "x2", "note": "own"})  # other columns: a run of its own
        uow.insert_later(timeline, {"event_id": "l0", "detail": [], "note": "list"})  # JSON lists
        uow.insert_later(timeline, {"event_id": "l1", "detail": ["p", ["q"]], "note": "list"})
        uow.insert_later(timeline, {"event_id": "x3", "detail": 3, "blob": b"3", "urgent": False, "at": at})
        await uow.commit()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(timeline).order_by(timeline.c.seq))).mappings().all()
    assert [(r["event_id"], r["detail"], r["blob"], r["urgent"], r["at"], r["note"]) for r in rows] == [
        ("x0", {"a": [1, "二"]}, b"\x00\xff", True, at, "-"),
        ("x1", [[1, 2], []], None, None, None, "-"),  # the duplicate x0 after it was ignored
        ("x2", None, None, None, None, "own"),
        ("l0", [], None, None, None, "list"),
        ("l1", ["p", ["q"]], None, None, None, "list"),
        ("x3", 3, b"3", False, at, "-"),
    ]
    async with UnitOfWork(engine, outbox) as uow:
        uow.insert_later(timeline, {"event_id": "y0"}, ignore=False)
        uow.insert_later(timeline, {"event_id": "x3"}, ignore=False)
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await uow.commit()


async def test_many_rows_updated_by_key_in_one_go_get_exactly_their_own_values(engine: AsyncEngine) -> None:
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            timeline.insert(),
            [
                {"event_id": f"u{i}", "detail": {"n": i}, "urgent": False, "at": at, "note": "old"}
                for i in range(4)
            ],
        )
    later = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)
    columns = ("at", "detail", "note", "urgent")
    async with engine.begin() as conn:
        await update_many(
            conn,
            timeline,
            "event_id",
            columns,
            [
                {
                    "event_id": "u2",
                    "detail": ["列表", {"k": None}],
                    "urgent": True,
                    "at": later,
                    "note": "two",
                },
                {"event_id": "u0", "detail": None, "urgent": None, "at": None, "note": "zero"},
                {"event_id": "absent", "detail": 1, "urgent": True, "at": later, "note": "none"},
            ],
        )
        await update_many(conn, timeline, "event_id", ("note",), [{"event_id": "u1", "note": "one row"}])
        twice = [{"event_id": "u3", "note": "first"}, {"event_id": "u3", "note": "last"}]
        await update_many(conn, timeline, "event_id", ("note",), twice)  # the later values win
    async with engine.connect() as conn:
        rows = (await conn.execute(select(timeline).where(timeline.c.event_id.like("u%")))).mappings().all()
    got = {r["event_id"]: (r["detail"], r["urgent"], r["at"], r["note"]) for r in rows}
    assert got == {
        "u0": (None, None, None, "zero"),
        "u1": ({"n": 1}, False, at, "one row"),  # only the column named changes
        "u2": (["列表", {"k": None}], True, later, "two"),
        "u3": ({"n": 3}, False, at, "last"),
    }

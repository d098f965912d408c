"""A unit of work's batch reads and writes (`preload`, `cached`, `upsert_later`) on SQLite and PostgreSQL:
what a consumer batch reads ahead and writes back once is exactly what one statement per event would
have left in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from services.common.outbox import Outbox, UnitOfWork, outbox_table

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
outbox = Outbox(outbox_table(metadata, "probe"))


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

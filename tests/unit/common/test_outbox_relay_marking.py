"""The relay marks published rows sent together, later than it publishes them, and never publishes a
row twice because its mark was still waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.db import create_engine
from services.common.events import new_event, unpack
from services.common.outbox import Outbox, OutboxRelay, UnitOfWork, outbox_table

metadata = MetaData()
table = outbox_table(metadata, "probe")


class Broker:
    """Acks every message at once and remembers the ids of the events it was given (one a message, or a
    batch's)."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        self.published += [
            env.event_id for env in unpack(payload, headers) if isinstance(env, events_pb2.Envelope)
        ]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def _commit(engine: AsyncEngine, outbox: Outbox, count: int) -> None:
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(
            *[
                new_event(
                    center="210200",
                    producer="probe",
                    at=datetime.now(UTC),
                    case_number=f"C-{i}",
                    body=events_pb2.CaseWithdrawn(reason="probe"),
                )
                for i in range(count)
            ]
        )
        await uow.commit()


async def _unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(table.c.sent_at.is_(None)))).scalar_one())


async def _setup(path: Path) -> tuple[AsyncEngine, Outbox, Broker]:
    engine = create_engine(f"sqlite+aiosqlite:///{path / 'relay.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine, Outbox(table), Broker()


async def _marks_later_and_before_reading_the_table(path: Path) -> None:
    engine, outbox, broker = await _setup(path)
    relay = OutboxRelay(engine=engine, outbox=outbox, js=broker, batch=10, mark_every=60.0)
    assert await relay.run_once() == 0  # the first batch reads the (empty) table
    await _commit(engine, outbox, 3)
    assert await relay.run_once() == 3
    await _commit(engine, outbox, 2)
    assert await relay.run_once() == 2
    assert await _unsent(engine) == 5  # published, acked, marks waiting
    outbox.wake()  # a sweep of the table marks first, so it finds nothing to publish again
    assert await relay.run_once() == 0
    assert await _unsent(engine) == 0
    assert len(broker.published) == len(set(broker.published)) == 5
    await _commit(engine, outbox, 10)  # a full batch is marked at once
    assert await relay.run_once() == 10
    assert await _unsent(engine) == 0
    relay.mark_every = 0.0  # and so is anything older than mark_every
    await _commit(engine, outbox, 1)
    assert await relay.run_once() == 1
    assert await _unsent(engine) == 0
    await engine.dispose()


async def _marks_what_it_published_when_stopped(path: Path) -> None:
    engine, outbox, broker = await _setup(path)
    relay = OutboxRelay(engine=engine, outbox=outbox, js=broker, mark_every=60.0)
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0.1)
    await _commit(engine, outbox, 4)
    for _ in range(100):
        if len(broker.published) == 4:
            break
        await asyncio.sleep(0.02)
    assert await _unsent(engine) == 4
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await _unsent(engine) == 0
    await engine.dispose()


async def _marks_on_time_while_idle(path: Path) -> None:
    engine, outbox, broker = await _setup(path)
    relay = OutboxRelay(engine=engine, outbox=outbox, js=broker, mark_every=0.3)
    task = asyncio.create_task(relay.run(poll_interval=10.0))  # nothing else would wake it
    await asyncio.sleep(0.1)
    await _commit(engine, outbox, 2)
    await asyncio.sleep(0.1)
    assert len(broker.published) == 2
    for _ in range(50):
        if await _unsent(engine) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _unsent(engine) == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()


def test_published_rows_are_marked_together_and_before_the_table_is_read(tmp_path: Path) -> None:
    asyncio.run(_marks_later_and_before_reading_the_table(tmp_path))


def test_a_stopping_relay_marks_what_it_published(tmp_path: Path) -> None:
    asyncio.run(_marks_what_it_published_when_stopped(tmp_path))


def test_an_idle_relay_marks_its_published_rows_within_mark_every(tmp_path: Path) -> None:
    asyncio.run(_marks_on_time_while_idle(tmp_path))

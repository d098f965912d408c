"""The relay gives up on an ack that never comes (the broker died holding the message) and retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select

from onestop.events.v1 import events_pb2
from services.common.db import create_engine
from services.common.events import new_event
from services.common.outbox import Outbox, OutboxRelay, UnitOfWork, outbox_table

metadata = MetaData()
table = outbox_table(metadata, "probe")


class SilentBroker:
    """Takes messages and acks only while `acking` is set; the unacked futures hang forever."""

    def __init__(self) -> None:
        self.acking = False
        self.published: list[str] = []
        self.hanging: list[asyncio.Future[Any]] = []

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        self.published.append(headers["Nats-Msg-Id"])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.acking:
            future.set_result(None)
        else:
            self.hanging.append(future)
        return future


async def _scenario(path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path / 'relay.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    outbox = Outbox(table)
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(
            *[
                new_event(
                    center="210200",
                    producer="probe",
                    at=datetime.now(UTC),
                    case_id=f"C-{i}",
                    case_number=f"C-{i}",
                    body=events_pb2.CaseWithdrawn(reason="probe"),
                )
                for i in range(3)
            ]
        )
        await uow.commit()
    broker = SilentBroker()
    relay = OutboxRelay(engine=engine, outbox=outbox, js=broker, ack_timeout=0.2)
    with pytest.raises(TimeoutError, match=r"did not ack 1 of 1 messages \(3 events\)"):
        await relay.run_once()
    assert all(f.cancelled() for f in broker.hanging)  # the client's pending slots are given back
    async with engine.connect() as conn:
        unsent = (await conn.execute(select(func.count()).where(table.c.sent_at.is_(None)))).scalar_one()
    assert unsent == 3
    broker.acking = True  # the broker is back: the same events go again, in a message of the same id
    assert await relay.run_once() == 3
    assert len(broker.published) == 2 and broker.published[0] == broker.published[1]
    assert await relay.run_once() == 0
    await engine.dispose()


def test_an_ack_that_never_comes_times_out_and_the_batch_is_published_again(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))

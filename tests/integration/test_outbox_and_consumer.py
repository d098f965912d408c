"""The outbox relay and the idempotent consumer against real PostgreSQL and a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.db import create_engine
from services.common.errors import FailedPrecondition
from services.common.events import new_event
from services.common.jetstream import EventConsumer, ensure_streams
from services.common.outbox import Outbox, OutboxRelay, UnitOfWork, inbox_table, outbox_table

pytestmark = pytest.mark.postgres

metadata = MetaData()
effects = Table(
    "probe_effects",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("case_number", String(64)),
)
outbox_t = outbox_table(metadata, "probe")
inbox_t = inbox_table(metadata, "probe")


def _event(number: str) -> events_pb2.Envelope:
    return new_event(
        center="210200",
        producer="probe",
        at=datetime.now(UTC),
        case_id=number,
        case_number=number,
        body=events_pb2.CaseWithdrawn(reason="probe"),
    )


async def _connect(database_url: str, nats_url: str) -> tuple[AsyncEngine, Any, Any]:
    """The probe tables on a fresh database, and a JetStream context with the ONESTOP stream."""
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, name="ONESTOP")
    return engine, nc, js


def _consumer(engine: AsyncEngine, js: Any, outbox: Outbox, apply: Any) -> EventConsumer:
    """The probe's consumer of case_withdrawn events."""
    return EventConsumer(
        name="probe",
        js=js,
        stream="ONESTOP",
        engine=engine,
        outbox=outbox,
        inbox=inbox_t,
        handlers={"case_withdrawn": apply},
    )


async def test_events_committed_with_state_are_published_once_and_applied_once(
    postgres_db, nats_server
) -> None:
    engine, nc, js = await _connect(postgres_db, nats_server)
    outbox = Outbox(outbox_t)

    async with UnitOfWork(engine, outbox) as uow:  # a rolled-back unit of work publishes nothing
        uow.emit(_event("ROLLED-BACK"))
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(*[_event(f"C-{i}") for i in range(50)])
        await uow.commit()

    relay = OutboxRelay(engine=engine, outbox=outbox, js=js, batch=20)
    assert await relay.run_once() == 20
    assert await relay.run_once() == 20
    assert await relay.run_once() == 10
    assert await relay.run_once() == 0
    # Once caught up with the table, events committed in this process go out from memory.
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(*[_event(f"M-{i}") for i in range(5)])
        await uow.commit()
    assert await relay.run_once() == 5
    assert await relay.run_once() == 0
    # Each published batch of one subject went as one message (20, 20, 10, then the 5 from memory).
    assert (await js.stream_info("ONESTOP")).state.messages == 4
    # A crash after publishing but before marking sent replays the batch when the service starts
    # again (a new relay reads the table): grouped the same way, the broker de-duplicates it.
    async with engine.begin() as conn:
        await conn.execute(outbox_t.update().values(sent_at=None))
    restarted = OutboxRelay(engine=engine, outbox=Outbox(outbox_t), js=js, batch=20)
    assert await restarted.run_once() == 20
    info = await js.stream_info("ONESTOP")
    assert info.state.messages == 4
    # Rows written to the table by other means are read from it once the relay is told (`wake`).
    async with engine.begin() as conn:
        await conn.execute(outbox_t.update().values(sent_at=datetime.now(UTC)))
        await conn.execute(
            outbox_t.insert().values(
                event_id=(direct := _event("D-1")).event_id,
                subject="ev.case_withdrawn",
                payload=direct.SerializeToString(),
                created_at=datetime.now(UTC),
            )
        )
    outbox.wake()
    assert await relay.run_once() == 1
    assert (await js.stream_info("ONESTOP")).state.messages == 5

    async def apply(uow: UnitOfWork, env: events_pb2.Envelope) -> None:
        await uow.conn.execute(effects.insert().values(event_id=env.event_id, case_number=env.case_number))

    consumer = _consumer(engine, js, outbox, apply)
    task = asyncio.create_task(consumer.run())
    for _ in range(200):
        if consumer.processed >= 56:
            break
        await asyncio.sleep(0.05)
    # The same event delivered again (a redelivery or a replayed outbox) has no second effect.
    await js.publish("ev.case_withdrawn", _event("X").SerializeToString())
    dup = _event("DUP")
    for _ in range(2):
        await js.publish("ev.case_withdrawn", dup.SerializeToString())
    for _ in range(100):
        if consumer.processed >= 59:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
        dups = (
            await conn.execute(
                select(func.count()).select_from(effects).where(effects.c.case_number == "DUP")
            )
        ).scalar_one()
    assert count == 58
    assert dups == 1
    await nc.close()
    await engine.dispose()


async def test_poison_messages_go_to_the_dead_letter_subject_and_do_not_block(
    postgres_db, nats_server
) -> None:
    engine, nc, js = await _connect(postgres_db, nats_server)
    outbox = Outbox(outbox_t)
    seen: list[str] = []

    async def apply(uow: UnitOfWork, env: events_pb2.Envelope) -> None:
        seen.append(env.case_number)

    consumer = _consumer(engine, js, outbox, apply)
    dlq = await js.subscribe("dlq.probe")
    task = asyncio.create_task(consumer.run())
    await js.publish("ev.case_withdrawn", b"\x0a\xff not an envelope")
    no_body = events_pb2.Envelope(event_id="no-body")
    await js.publish("ev.case_withdrawn", no_body.SerializeToString())
    await js.publish("ev.case_withdrawn", _event("GOOD").SerializeToString())
    dead = [await dlq.next_msg(timeout=10), await dlq.next_msg(timeout=10)]
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    assert seen == ["GOOD"]
    assert all(m.headers and m.headers.get("Onestop-Reason") for m in dead)
    assert consumer.dead_lettered == 2
    await nc.close()
    await engine.dispose()


async def test_a_running_relay_publishes_rows_replayed_behind_its_back(postgres_db, nats_server) -> None:
    """`onestop outbox replay` (or a process that died before publishing) writes the table directly,
    without waking anyone: the running relay's periodic sweep of the table still publishes the rows."""
    engine, nc, js = await _connect(postgres_db, nats_server)
    outbox = Outbox(outbox_t)
    relay = OutboxRelay(engine=engine, outbox=outbox, js=js, sweep_s=0.5)
    task = asyncio.create_task(relay.run(poll_interval=0.1))
    unsent = select(func.count()).select_from(outbox_t).where(outbox_t.c.sent_at.is_(None))

    async def settled() -> int:
        for _ in range(100):
            async with engine.connect() as conn:
                if (await conn.execute(unsent)).scalar_one() == 0:
                    return relay.published
            await asyncio.sleep(0.05)
        raise AssertionError("rows left unsent")

    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(*[_event(f"R-{i}") for i in range(3)])
        await uow.commit()
    before = await settled()  # 3, or more when the first scan also read them (a harmless duplicate)
    # Its marks all written: a replay does not undo a mark that waits for rows JetStream acked in the
    # last `mark_every` (docs/DURABILITY.md §4); this test is about rows replayed behind its back.
    for _ in range(100):
        if relay.mark_due() == float("inf"):
            break
        await asyncio.sleep(0.05)
    async with engine.begin() as conn:  # the replay: no wake, no memory handover
        await conn.execute(outbox_t.update().values(sent_at=None))
    assert await settled() >= before + 3
    task.cancel()
    await nc.close()
    await engine.dispose()


async def test_a_poison_event_packed_with_others_is_dead_lettered_alone(postgres_db, nats_server) -> None:
    """The relay packs what one transaction committed into one message; a handler that refuses one of
    those events (a DomainError) sends that event alone to the dead-letter subject, and every other
    event of the message is applied once, also when one fails for a while first."""
    engine, nc, js = await _connect(postgres_db, nats_server)
    outbox = Outbox(outbox_t)
    flaky = {"FLAKY": 2}  # fails twice, as a database that is briefly away would

    async def apply(uow: UnitOfWork, env: events_pb2.Envelope) -> None:
        if env.case_number == "POISON":
            raise FailedPrecondition("this event can never apply", reason="PROBE_POISON")
        if flaky.get(env.case_number):
            flaky[env.case_number] -= 1
            raise ConnectionError("briefly away")
        await uow.conn.execute(effects.insert().values(event_id=env.event_id, case_number=env.case_number))

    names = ["A", "B", "POISON", "C", "FLAKY", "D"]
    async with UnitOfWork(engine, outbox) as uow:
        uow.emit(*[_event(n) for n in names])
        await uow.commit()
    relay = OutboxRelay(engine=engine, outbox=outbox, js=js)
    assert await relay.run_once() == 6
    assert (await js.stream_info("ONESTOP")).state.messages == 1  # one message of six events
    dlq = await js.subscribe("dlq.probe")
    consumer = _consumer(engine, js, outbox, apply)
    task = asyncio.create_task(consumer.run())
    dead = await dlq.next_msg(timeout=10)

    async def applied() -> list[str]:
        async with engine.connect() as conn:
            return sorted((await conn.execute(select(effects.c.case_number))).scalars().all())

    for _ in range(200):
        if len(await applied()) >= 5:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # time for anything applied or dead-lettered twice to show
    task.cancel()
    assert events_pb2.Envelope.FromString(dead.data).case_number == "POISON"
    assert "PROBE_POISON" in dead.headers["Onestop-Reason"]
    assert await applied() == ["A", "B", "C", "D", "FLAKY"]  # each once: the inbox skipped the repeats
    assert consumer.dead_lettered == 1  # not again when the message came back for FLAKY
    await nc.close()
    await engine.dispose()

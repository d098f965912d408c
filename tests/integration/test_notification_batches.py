"""Notification's consumer on batches, on SQLite and PostgreSQL: a batch (several events of one case,
read ahead once, written once per table) leaves exactly what one event per transaction leaves, and a
redelivered batch changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import new_event
from services.common.jetstream import EventConsumer
from services.common.outbox import Outbox
from services.notification import bootstrap, handlers, orm
from services.notification.live import CaseHub
from services.notification.model import Channels
from services.notification.templates import StaticDirectory, Templates
from tests.harness import FakeMsg

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    yield engine
    await engine.dispose()


def consumer(engine: AsyncEngine) -> EventConsumer:
    """Notification's consumer as bootstrap wires it, with ids counted from 0 (so runs compare)."""
    counter = itertools.count()
    ctx = handlers.NotificationContext(
        clock=ManualClock(AT),
        channels=Channels(sms=True, email=True),
        hub=CaseHub(),
        wake=lambda: None,
        new_id=lambda: f"id-{next(counter):04d}",
        templates=Templates(directory=StaticDirectory("中心", "Center")),
    )
    return EventConsumer(
        name="notification",
        js=None,
        stream="EVENTS",
        engine=engine,
        outbox=Outbox(orm.outbox),
        inbox=orm.inbox,
        handlers=dict.fromkeys(handlers.EVENT_KINDS, partial(bootstrap._on_event, ctx)),
        prefetch=handlers.prefetch,
    )


def event(n: int, case: str, body: Message, *, numbered: bool = True) -> events_pb2.Envelope:
    return new_event(
        center="C1",
        producer="test",
        at=AT,
        body=body,
        case_id=f"id-{case}",
        case_number=case if numbered else "",
        event_id=f"00000000-0000-4000-8000-{n:012d}",
    )


def story() -> list[events_pb2.Envelope]:
    """Two cases' events interleaved, as a busy node's stream carries them."""
    out: list[events_pb2.Envelope] = []
    n = itertools.count(1)
    for case, lang in (("C1-0001", "zh-CN"), ("C1-0002", "en")):
        accepted = events_pb2.CaseAccepted(
            matter_code="TR-001",
            applicant_name="王小明",
            applicant_phone="13812345678",
            applicant_email=f"wang.{case[-4:]}@example.com",
            applicant_language=lang,
            title="新建厂房项目",
            channel=common_pb2.CHANNEL_COUNTER,
        )
        accepted.accepted_by.username = "clerk"
        out.append(event(next(n), case, accepted))
    for case in ("C1-0001", "C1-0002"):
        for dept in ("D1", "D2"):
            opened = events_pb2.TaskOpened()
            opened.task.task_id, opened.task.case_number = f"t-{case}-{dept}", case
            opened.task.department, opened.task.window = dept, f"w-{dept}"
            out.append(event(next(n), case, opened))
        # The same task seen again with another window: the first sighting wins.
        again = events_pb2.TaskOpened()
        again.task.task_id, again.task.case_number = f"t-{case}-D1", case
        again.task.department, again.task.window = "D1", "w-elsewhere"
        out.append(event(next(n), case, again))
        warned = events_pb2.ClockWarned(
            task_id=f"t-{case}-D1", department="D1", level=common_pb2.CLOCK_STATE_YELLOW
        )
        out.append(event(next(n), case, warned))
        decided = events_pb2.TaskDecided(
            task_id=f"t-{case}-D1", department="D1", status=common_pb2.TASK_STATUS_APPROVED
        )
        out.append(event(next(n), case, decided))
        key = events_pb2.KeyProjectDesignated(tracker="tracker.li")
        out.append(event(next(n), case, key, numbered=False))  # known here by its case id only
        concluded = events_pb2.CaseConcluded(outcome=common_pb2.OUTCOME_APPROVED)
        concluded.sealed.seal.signature = b"sig"
        out.append(event(next(n), case, concluded))
        out.append(event(next(n), case, events_pb2.CaseDelivered(method="posted", receiver="王小明")))
    return out


async def _table(engine: AsyncEngine, table: Table, *, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(table))).mappings()]
    out = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    return sorted(out, key=repr)


async def _state(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    stamps = ("created_at", "updated_at", "next_attempt_at", "sent_at", "at", "processed_at")
    return {
        "recipients": await _table(engine, orm.recipients, drop=stamps),
        "tasks": await _table(engine, orm.tasks),
        "deliveries": await _table(engine, orm.deliveries, drop=stamps),
        "attempts": await _table(engine, orm.attempts, drop=(*stamps, "id")),
        "inbox": await _table(engine, orm.inbox_messages, drop=(*stamps, "message_id")),
        "notices": await _table(engine, orm.notices, drop=stamps),
        "applied": await _table(engine, orm.inbox, drop=stamps),
    }


async def test_a_batch_leaves_what_one_event_per_transaction_leaves(
    engine: AsyncEngine, tmp_path: Path, db_url: str
) -> None:
    msgs = [FakeMsg(env) for env in story()]
    await consumer(engine).handle_batch(msgs)
    assert [m.settlements for m in msgs] == [["ack"]] * len(msgs)
    batched = await _state(engine)

    async with engine.begin() as conn:
        for table in reversed(orm.metadata.sorted_tables):
            await conn.execute(table.delete())
    one_by_one = consumer(engine)
    for env in story():
        await one_by_one.handle(FakeMsg(env))
    assert await _state(engine) == batched

    assert {(t["task_id"], t["window"]) for t in batched["tasks"]} >= {("t-C1-0001-D1", "w-D1")}
    assert len(batched["recipients"]) == 2
    warned = {d["recipient"] for d in batched["deliveries"] if d["kind"] == "clock_warned"}
    assert warned == {"window:w-D1", "head:D1"}
    key = [d for d in batched["deliveries"] if d["kind"] == "key_project_designated"]
    assert {d["context"]["title"] for d in key} == {"新建厂房项目"}  # the applicant found by case id
    assert {d["channel"] for d in batched["deliveries"] if d["kind"] == "case_accepted"} == {
        "inbox",
        "sms",
        "email",
    }


async def test_a_redelivered_batch_and_a_copy_within_a_batch_change_nothing(engine: AsyncEngine) -> None:
    envs = story()
    first = consumer(engine)
    await first.handle_batch([FakeMsg(env) for env in envs[:6]] + [FakeMsg(envs[0])])  # a copy in the batch
    await first.handle_batch([FakeMsg(env) for env in envs[6:]])
    once = await _state(engine)
    assert len(once["applied"]) == len(envs)

    again = [FakeMsg(env) for env in envs]
    await consumer(engine).handle_batch(again)  # all of it again, after a crash before the acks
    await consumer(engine).handle(FakeMsg(envs[3]))
    assert [m.settlements for m in again] == [["ack"]] * len(again)
    assert await _state(engine) == once

"""Approval's batches on SQLite and PostgreSQL: a consumer batch (several events of one case, redelivered)
and a group-committed batch of decisions leave exactly what one event or call at a time would have."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.approval import consumers, handlers, orm
from services.approval.grpc_api import ApprovalApi
from services.common.calendar import default_calendar
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import kind, new_event
from services.common.jetstream import EventConsumer
from services.common.outbox import Outbox
from services.common.runtime import Runtime
from tests.harness import FakeMsg

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday morning in Shanghai


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'approval.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    yield engine
    await engine.dispose()


def _ctx() -> handlers.ApprovalContext:
    return handlers.ApprovalContext(
        center="210200",
        clock=ManualClock(START),
        key=Ed25519PrivateKey.generate(),
        calendar=default_calendar(),
    )


def _consumer(engine: AsyncEngine, outbox: Outbox, ctx: handlers.ApprovalContext) -> EventConsumer:
    return EventConsumer(
        name="approval",
        js=None,
        stream="ONESTOP",
        engine=engine,
        outbox=outbox,
        inbox=orm.inbox,
        handlers=dict.fromkeys(consumers.EVENT_HANDLERS, lambda uow, env: consumers.on_event(uow, ctx, env)),
        prefetch=consumers.prefetch,
    )


def _event(case: str, body: Any) -> events_pb2.Envelope:
    return new_event(
        center="210200", producer="test", at=START, case_id=case, case_number=f"N-{case}", body=body
    )


def _routed(case: str) -> events_pb2.Envelope:
    """Three departments: A and B at once, C after A approves."""
    return _event(
        case,
        events_pb2.CaseRouted(
            matter_code="M-1",
            promised_limit_days=5,
            tasks=[
                events_pb2.PlannedTask(task_id=f"{case}-A", department="A", window="w", group=1, lead=True),
                events_pb2.PlannedTask(task_id=f"{case}-B", department="B", window="w", group=1),
                events_pb2.PlannedTask(
                    task_id=f"{case}-C", department="C", window="w", group=2, prerequisites=["A"]
                ),
            ],
        ),
    )


async def _tasks(engine: AsyncEngine, case: str) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(orm.tasks.c.department, orm.tasks.c.status, orm.tasks.c.priority).where(
                orm.tasks.c.case_id == case
            )
        )
        return {r.department: (r.status, r.priority) for r in rows}


async def _plan(engine: AsyncEngine, case: str) -> tuple[str, bool, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(orm.plans).where(orm.plans.c.case_id == case))).one()
        return row.state, row.key_project, row.outcome


async def _outbox_kinds(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(orm.outbox.c.payload).order_by(orm.outbox.c.seq))
        return [kind(events_pb2.Envelope.FromString(r.payload)) for r in rows]


async def test_a_batch_with_several_events_of_one_case_applies_them_in_order_once_even_when_redelivered(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    consumer = _consumer(engine, outbox, _ctx())
    events = [
        _routed("K"),
        _event("K", events_pb2.KeyProjectDesignated()),
        _routed("W"),
        _event("W", events_pb2.CaseWithdrawn(reason="changed my mind")),
        _routed("P"),
    ]
    msgs = [FakeMsg(e) for e in events]
    await consumer.handle_batch(cast(list[Any], msgs))
    assert [m.settlements for m in msgs] == [["ack"]] * len(msgs)
    # Routed, then designated a key project in the same batch: every task is open and first in the queue.
    assert await _tasks(engine, "K") == {"A": (2, 10), "B": (2, 10), "C": (2, 10)}
    assert await _plan(engine, "K") == ("open", True, 0)
    # Routed, then withdrawn in the same batch: nothing left in progress.
    assert await _tasks(engine, "W") == {"A": (8, 0), "B": (8, 0), "C": (8, 0)}
    assert await _plan(engine, "W") == ("withdrawn", False, 4)
    assert await _tasks(engine, "P") == {"A": (2, 0), "B": (2, 0), "C": (1, 0)}
    opened = ["task_opened"] * (2 + 1 + 2 + 2)  # K: A, B then C; W: A, B; P: A, B
    assert sorted(await _outbox_kinds(engine)) == opened

    # The same batch delivered again (the acks were lost): nothing changes, nothing is emitted twice.
    again = [FakeMsg(e) for e in events]
    await consumer.handle_batch(cast(list[Any], again))
    assert [m.settlements for m in again] == [["ack"]] * len(again)
    assert await _tasks(engine, "K") == {"A": (2, 10), "B": (2, 10), "C": (2, 10)}
    assert await _plan(engine, "W") == ("withdrawn", False, 4)
    assert sorted(await _outbox_kinds(engine)) == opened
    # A second CaseRouted for a case approval already planned (another event id) is ignored.
    await consumer.handle_batch(cast(list[Any], [FakeMsg(_routed("P")), FakeMsg(_routed("Q"))]))
    assert await _tasks(engine, "P") == {"A": (2, 0), "B": (2, 0), "C": (1, 0)}
    assert await _tasks(engine, "Q") == {"A": (2, 0), "B": (2, 0), "C": (1, 0)}


async def test_decisions_committed_together_open_what_follows_and_conclude_each_case_once(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    ctx = _ctx()
    await _consumer(engine, outbox, ctx).handle_batch(
        cast(list[Any], [FakeMsg(_routed("X")), FakeMsg(_routed("Y"))])
    )
    runtime = Runtime(settings=cast(Any, None), engine=engine, outbox=outbox, clock=ctx.clock)
    api = ApprovalApi(runtime=runtime, ctx=ctx)

    def decide(task_id: str, department: str) -> Any:
        by = common_pb2.Actor(
            username=f"chief.{department}", role="chief_representative", department=department
        )
        req = approval_pb2.DecideTaskRequest(task_id=task_id, verdict=approval_pb2.VERDICT_APPROVE, by=by)
        return api.DecideTask(req, None)

    queue = await api.ListQueue(approval_pb2.ListQueueRequest(department="A"), None)
    assert sorted(t.task_id for t in queue.tasks) == ["X-A", "Y-A"]
    assert queue.tasks[0].status == common_pb2.TASK_STATUS_PENDING and queue.tasks[0].HasField("due_at")

    # A and B of both cases in one batch: C opens (once per case), nothing concludes yet.
    replies = await asyncio.gather(*(decide(f"{c}-{d}", d) for c in "XY" for d in "AB"))
    assert [r.status for r in replies] == [common_pb2.TASK_STATUS_APPROVED] * 4
    assert api.decisions.batches == 1 and api.decisions.fallbacks == 0
    assert await _tasks(engine, "X") == {"A": (5, 0), "B": (5, 0), "C": (2, 0)}
    assert (await _outbox_kinds(engine)).count("task_opened") == 4 + 2
    queue = await api.ListQueue(approval_pb2.ListQueueRequest(department="C"), None)
    assert sorted(t.task_id for t in queue.tasks) == ["X-C", "Y-C"]
    done = await api.ListQueue(approval_pb2.ListQueueRequest(department="A", include_closed=True), None)
    assert [(t.status, t.decided_by.username) for t in done.tasks] == [
        (common_pb2.TASK_STATUS_APPROVED, "chief.A")
    ] * 2

    # C of X twice in one batch (a retried call): the batch falls back to one call at a time, the
    # second is refused, and X concludes once; C of Y concludes Y in the same round.
    results = await asyncio.gather(
        decide("X-C", "C"), decide("X-C", "C"), decide("Y-C", "C"), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["Task", "FailedPrecondition", "Task"]
    assert await _plan(engine, "X") == ("concluded", False, 1)
    assert await _plan(engine, "Y") == ("concluded", False, 1)
    kinds = await _outbox_kinds(engine)
    assert kinds.count("case_concluded") == 2
    assert kinds.count("task_decided") == 6
    async with engine.connect() as conn:
        sealed = await conn.scalar(select(func.count()).select_from(orm.decisions))
    assert sealed == 6 + 2  # one per task, one per case

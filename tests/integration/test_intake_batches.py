"""Intake in batches, on SQLite and PostgreSQL: submissions that commit together and consumer batches
that read their cases once and write them back once end exactly as one at a time would have."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.intake.v1 import intake_pb2
from services.common import migrate
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import new_event
from services.common.jetstream import EventConsumer
from services.common.outbox import Outbox, UnitOfWork
from services.common.runtime import Runtime
from services.intake import consumers, handlers, model, orm, repository
from services.intake.bootstrap import CONSUMED
from services.intake.grpc_api import IntakeApi
from tests.harness import FakeMsg

CS = common_pb2
CENTER = "210200"
NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)
FORM = "a" * 64  # the digest of the matter's one mandatory document


class Matters:
    """One matter that wants a form (a document this test stores up front)."""

    async def get(self, code: str) -> handlers.MatterView:
        rule = model.MaterialRule("FORM", "申请表", True, (), 10_000_000)
        return handlers.MatterView(code=code, version=1, on_the_spot=False, materials=(rule,))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=db_url)
    eng = create_engine(db_url)
    for digest in (FORM, "b" * 64):
        async with UnitOfWork(eng, Outbox(orm.outbox)) as uow:
            await repository.add_document(
                uow.conn,
                {
                    "digest": digest,
                    "filename": "f.pdf",
                    "content_type": "application/pdf",
                    "size": 10,
                    "stored_at": NOW,
                },
            )
            await uow.commit()
    yield eng
    await eng.dispose()


def _ctx() -> handlers.IntakeContext:
    return handlers.IntakeContext(center=CENTER, matters=Matters(), clock=ManualClock(NOW))


def _api(engine: AsyncEngine) -> IntakeApi:
    runtime = Runtime(
        settings=cast(Any, None), engine=engine, outbox=Outbox(orm.outbox), clock=ManualClock(NOW)
    )
    return IntakeApi(runtime=runtime, ctx=_ctx(), store=cast(Any, None))


def _submission(request_id: str, *, complete: bool = True) -> intake_pb2.SubmitCaseRequest:
    req = intake_pb2.SubmitCaseRequest(
        client_request_id=request_id, matter_code="TR-001", channel=CS.CHANNEL_COUNTER, title=request_id
    )
    req.applicant.name = "张三"
    req.submitted_by.username = "window-1"
    if complete:
        req.documents.add(material_code="FORM", digest=FORM, filename="f.pdf", content_type="application/pdf")
    return req


def _seq(number: str) -> int:
    assert re.fullmatch(rf"{CENTER}-\d{{8}}-\d{{6}}", number), number
    return int(number.rsplit("-", 1)[1])


async def _count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


class Statements:
    """Counts the statements an engine sends (an executemany is one)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


async def _case(engine: AsyncEngine, case_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = await repository.get_case(conn, case_id=case_id)
    assert row is not None
    return row


async def test_submissions_committed_together_get_consecutive_numbers_and_a_retry_gets_the_same_case(
    engine: AsyncEngine,
) -> None:
    api = _api(engine)
    requests = [_submission(f"r{i}") for i in range(12)]
    requests += [_submission("r3"), _submission("incomplete", complete=False)]  # a retry in the same burst
    statements = Statements(engine)
    replies = await asyncio.gather(*(api.SubmitCase(r, None) for r in requests))
    # request ids, documents, numbers, cases, timeline, outbox: not per case
    assert statements.count <= 8, statements.count
    assert api.submissions.batches >= 1 and api.submissions.fallbacks == 0
    assert replies[3].case.case_id == replies[12].case.case_id
    accepted = replies[:12]
    assert sorted(_seq(r.case.case_number) for r in accepted) == list(range(1, 13))
    assert [s.material_code for s in replies[13].supplement] == ["FORM"]
    assert replies[13].case.status == CS.CASE_STATUS_SUPPLEMENT_REQUESTED and not replies[13].case.case_number

    again = await api.SubmitCase(_submission("r5"), None)  # a retry after the reply was lost
    assert (
        again.case.case_id == replies[5].case.case_id
        and again.case.case_number == replies[5].case.case_number
    )
    assert await _count(engine, orm.cases) == 13
    for reply in accepted:
        row = await _case(engine, reply.case.case_id)
        assert row["status"] == CS.CASE_STATUS_ACCEPTED and row["case_number"] == reply.case.case_number
    async with engine.connect() as conn:
        entries = await repository.timeline(conn, replies[0].case.case_id)
        payloads = (await conn.execute(select(orm.outbox.c.payload))).scalars().all()
    assert [e["kind"] for e in entries] == ["case_submitted", "case_accepted"]
    assert replies[0].case.case_number in entries[1]["summary_en"]
    envelopes = [events_pb2.Envelope.FromString(p) for p in payloads]
    numbered = {e.case_id: e.case_number for e in envelopes if e.WhichOneof("body") == "case_accepted"}
    assert numbered == {r.case.case_id: r.case.case_number for r in accepted}

    # The incomplete case is completed later: accepted with the next number, in its own transaction.
    async with UnitOfWork(engine, Outbox(orm.outbox)) as uow:
        supplement = intake_pb2.SupplementCaseRequest(case_id=replies[13].case.case_id)
        supplement.documents.add(
            material_code="FORM", digest=FORM, filename="f.pdf", content_type="application/pdf"
        )
        row, missing = await handlers.supplement_case(uow, _ctx(), supplement)
        await uow.commit()
    assert not missing and _seq(row["case_number"]) == 13
    stored = await _case(engine, row["case_id"])
    assert (stored["status"], stored["case_number"]) == (CS.CASE_STATUS_ACCEPTED, row["case_number"])


async def _accepted_events(engine: AsyncEngine) -> dict[str, events_pb2.Envelope]:
    async with engine.connect() as conn:
        payloads = (await conn.execute(select(orm.outbox.c.payload))).scalars().all()
    envelopes = [events_pb2.Envelope.FromString(p) for p in payloads]
    return {e.case_id: e for e in envelopes if e.WhichOneof("body") == "case_accepted"}


async def test_the_acceptance_carries_the_digest_of_the_query_code_the_applicant_got(
    engine: AsyncEngine,
) -> None:
    api = _api(engine)
    at_once, later = await asyncio.gather(
        api.SubmitCase(_submission("complete"), None),
        api.SubmitCase(_submission("short", complete=False), None),
    )
    assert later.case.status == CS.CASE_STATUS_SUPPLEMENT_REQUESTED and later.query_code
    # The applicant answers the pre-review notice online with the code from the receipt: accepted then.
    answer = intake_pb2.SupplementCaseRequest(case_id=later.case.case_id, query_code=later.query_code)
    answer.documents.add(material_code="FORM", digest=FORM, filename="f.pdf", content_type="application/pdf")
    reply = await api.SupplementCase(answer, None)
    assert reply.case.status == CS.CASE_STATUS_ACCEPTED
    accepted = await _accepted_events(engine)
    for got in (at_once, later):
        # What the gateway sends to supervision with an evaluation: SHA-256 of the code, lowercase hex.
        expected = hashlib.sha256(got.query_code.upper().encode()).hexdigest()
        assert accepted[got.case.case_id].case_accepted.query_code_digest == expected
    assert at_once.query_code != later.query_code


async def test_submitters_in_separate_processes_never_share_a_number(
    db_url: str, engine: AsyncEngine
) -> None:
    other = create_engine(db_url)  # a second intake process on the same database
    try:
        apis = [_api(engine), _api(other)]
        replies = await asyncio.gather(
            *(apis[i % 2].SubmitCase(_submission(f"p{i}"), None) for i in range(40))
        )
    finally:
        await other.dispose()
    assert sorted(_seq(r.case.case_number) for r in replies) == list(range(1, 41))


def _event(body: Any, case: intake_pb2.SubmitCaseResponse) -> events_pb2.Envelope:
    return new_event(
        center=CENTER,
        producer="test",
        at=NOW,
        body=body,
        case_id=case.case.case_id,
        case_number=case.case.case_number,
    )


async def test_a_batch_with_several_events_of_one_case_and_its_redelivery_apply_once(
    engine: AsyncEngine,
) -> None:
    api = _api(engine)
    a, b = await asyncio.gather(
        api.SubmitCase(_submission("a"), None), api.SubmitCase(_submission("b"), None)
    )
    sealed = common_pb2.SealedDecision(canonical=a.case.case_number.encode())
    events = [
        _event(events_pb2.CaseRouted(), a),
        _event(events_pb2.TaskOpened(), a),
        _event(events_pb2.CaseRouted(), b),
        _event(events_pb2.TaskDecided(), a),
        _event(events_pb2.CaseConcluded(outcome=CS.OUTCOME_APPROVED, reasons=["ok"], sealed=sealed), a),
        _event(
            events_pb2.SupplementRoundOpened(round=1, items=[{"material_code": "FORM", "reason": "blurred"}]),
            b,
        ),
    ]
    ctx = _ctx()
    consumer = EventConsumer(
        name="intake",
        js=None,
        stream="ONESTOP",
        engine=engine,
        outbox=Outbox(orm.outbox),
        inbox=orm.inbox,
        handlers={name: lambda uow, env: consumers.on_event(uow, env, ctx=ctx) for name in CONSUMED},
        prefetch=consumers.prefetch,
    )

    async def one_by_one(msg: Any) -> None:
        raise AssertionError("the batch fell back to one event at a time")

    consumer.handle = one_by_one  # type: ignore[method-assign]
    statements = Statements(engine)
    for delivery in range(2):  # the second time: redelivered after a lost ack
        msgs = [FakeMsg(env) for env in events]
        statements.count = 0
        await consumer.handle_batch(msgs)
        # inbox, cases (with uploads), one update per case (each its own columns), timeline: not one per event
        assert statements.count <= (6 if delivery == 0 else 2), statements.count
        assert [m.settlements for m in msgs] == [["ack"]] * len(events)
        case_a, case_b = await _case(engine, a.case.case_id), await _case(engine, b.case.case_id)
        assert (case_a["status"], case_a["outcome"], case_a["reasons"]) == (
            CS.CASE_STATUS_CONCLUDED,
            CS.OUTCOME_APPROVED,
            ["ok"],
        )
        assert bytes.fromhex(case_a["sealed"]) == sealed.SerializeToString()
        assert case_a["concluded_at"] is not None and case_a["case_number"] == a.case.case_number
        assert (case_b["status"], case_b["supplement_round"]) == (CS.CASE_STATUS_SUPPLEMENT_REQUESTED, 1)
        assert case_b["open_supplement"][0]["reason"] == "blurred"
        async with engine.connect() as conn:
            kinds = [e["kind"] for e in await repository.timeline(conn, a.case.case_id)]
        assert kinds == [
            "case_submitted",
            "case_accepted",
            "case_routed",
            "task_opened",
            "task_decided",
            "case_concluded",
        ], delivery
        assert await _count(engine, orm.timeline, orm.timeline.c.case_id == b.case.case_id) == 4
    assert consumer.processed == 2 * len(events)

"""Interconnect state on real PostgreSQL: the result feed, the applied cursor, the forwarding outbox, resumable documents."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2
from services.common import migrate
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.events import new_event
from services.common.outbox import Outbox, UnitOfWork
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.intake import federation, feed, orm, outbound, repository
from services.intake.documents import LocalDocumentStore
from services.intake.handlers import IntakeContext
from services.intake.link_status import LinkStatusApi
from services.intake.received_documents import ReceivedDocuments
from services.intake.watcher import applied_cursor, apply_update, apply_updates

pytestmark = pytest.mark.postgres
CS = common_pb2


@pytest.fixture
async def engine(postgres_db: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=postgres_db)
    eng = create_engine(postgres_db, pool_size=4)
    yield eng
    await eng.dispose()


def _ctx() -> IntakeContext:
    return IntakeContext(
        center="210211", matters=cast(Any, None), clock=ManualClock(datetime(2026, 11, 26, 9, tzinfo=UTC))
    )


async def _forwarded_case(
    engine: AsyncEngine, outbox: Outbox, *, origin: str = "", queued: bool = True
) -> str:
    case_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with UnitOfWork(engine, outbox) as uow:
        await repository.insert_case(
            uow.conn,
            {
                "case_id": case_id,
                "case_number": f"210211-20261126-{uuid.uuid4().int % 10**6:06d}",
                "query_code": "ABCDEFGH",
                "center": "210211",
                "matter_code": "TR-001",
                "matter_version": 1,
                "status": CS.CASE_STATUS_FORWARDED,
                "outcome": 0,
                "channel": CS.CHANNEL_COUNTER,
                "applicant": {"name": "张三"},
                "documents": [],
                "form": {},
                "title": "",
                "submitted_by": {},
                "submitted_at": now,
                "accepted_at": now,
                "concluded_at": None,
                "key_project": False,
                "promised_deadline": None,
                "open_supplement": [],
                "supplement_round": 0,
                "reasons": [],
                "origin_center": origin,
                "origin_case_id": str(uuid.uuid4()) if origin else "",
                "sealed": None,
                "updated_at": now,
            },
        )
        if queued:
            await outbound.enqueue(uow.conn, case_id=case_id, op=outbound.UPLOAD, parent_center="210200")
        await uow.commit()
    return case_id


async def test_a_result_update_is_applied_once_even_when_it_arrives_twice(engine: AsyncEngine) -> None:
    outbox = Outbox(orm.outbox)
    case_id = await _forwarded_case(engine, outbox)
    update = interconnect_pb2.ResultUpdate(
        cursor=1,
        child_case_id=case_id,
        kind="concluded",
        outcome=CS.OUTCOME_APPROVED,
        summary_zh="办结:准予许可",
        summary_en="approved",
    )
    applied = []
    for _ in range(2):
        async with UnitOfWork(engine, outbox) as uow:
            applied.append(await apply_update(uow, _ctx(), "210200", update))
            await uow.commit()
    assert applied == [True, False]
    async with engine.connect() as conn:
        row = await repository.get_case(conn, case_id=case_id)
        trail = [e["kind"] for e in await repository.timeline(conn, case_id)]
        events = (await conn.execute(select(func.count()).select_from(orm.outbox))).scalar_one()
    assert row is not None and (row["status"], row["outcome"]) == (
        CS.CASE_STATUS_CONCLUDED,
        CS.OUTCOME_APPROVED,
    )
    assert trail == ["parent_result_received"] and events == 1


async def test_a_burst_of_results_is_applied_in_one_transaction_in_order_and_once(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    x, y = await _forwarded_case(engine, outbox), await _forwarded_case(engine, outbox)

    def upd(cursor: int, case_id: str, kind: str, **fields: Any) -> interconnect_pb2.ResultUpdate:
        return interconnect_pb2.ResultUpdate(cursor=cursor, child_case_id=case_id, kind=kind, **fields)

    burst = [
        upd(1, x, "accepted", parent_case_id="px", parent_case_number="210200-X"),
        upd(2, y, "accepted", parent_case_id="py", parent_case_number="210200-Y"),
        upd(3, x, "supplement_requested", supplement=[CS.SupplementItem(material_code="EIA", reason="r")]),
        upd(4, x, "concluded", outcome=CS.OUTCOME_APPROVED, summary_zh="办结", summary_en="approved"),
        upd(5, str(uuid.uuid4()), "concluded", outcome=CS.OUTCOME_APPROVED),  # a case we do not hold
    ]
    async with UnitOfWork(engine, outbox) as uow:
        assert await apply_updates(uow, _ctx(), "210200", burst) == 5
        await uow.commit()
    async with UnitOfWork(engine, outbox) as uow:  # the stream resumed too early: all but 6 are old
        more = [*burst[2:], upd(6, y, "concluded", outcome=CS.OUTCOME_REJECTED)]
        assert await apply_updates(uow, _ctx(), "210200", more) == 1
        await uow.commit()
    async with engine.connect() as conn:
        cx, cy = [await repository.get_case(conn, case_id=c) for c in (x, y)]
        ux, uy = [await outbound.upload_of(conn, c) for c in (x, y)]
        kinds = [
            events_pb2.Envelope.FromString(p).WhichOneof("body")
            for p in (await conn.execute(select(orm.outbox.c.payload).order_by(orm.outbox.c.seq))).scalars()
        ]
        assert await applied_cursor(conn, "210200") == 6
    assert cx is not None and cy is not None and ux is not None and uy is not None
    # x: the supplement request, then (later in the same burst) the conclusion, which saw it.
    assert (cx["status"], cx["outcome"], cx["supplement_round"]) == (
        CS.CASE_STATUS_CONCLUDED,
        CS.OUTCOME_APPROVED,
        1,
    )
    assert (cy["status"], cy["outcome"]) == (CS.CASE_STATUS_CONCLUDED, CS.OUTCOME_REJECTED)
    assert (ux["parent_case_number"], uy["parent_case_number"]) == ("210200-X", "210200-Y")
    assert ux["result_at"] is not None and uy["result_at"] is not None
    assert kinds == ["supplement_requested", "parent_result_received", "parent_result_received"]


async def test_a_burst_of_conclusions_costs_the_same_statements_however_many_cases_it_concludes(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    cases = [await _forwarded_case(engine, outbox) for _ in range(7)]
    updates = [
        interconnect_pb2.ResultUpdate(
            cursor=i + 1, child_case_id=c, kind="concluded", outcome=CS.OUTCOME_APPROVED
        )
        for i, c in enumerate(cases)
    ]
    async with UnitOfWork(engine, outbox) as uow:  # the first result from this parent creates the link row
        assert await apply_updates(uow, _ctx(), "210200", updates[:1]) == 1
        await uow.commit()
    burst = updates[1:]
    seen: list[str] = []
    listener = lambda *args: seen.append(str(args[2]).split()[0])  # noqa: E731
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        async with UnitOfWork(engine, outbox) as uow:
            assert await apply_updates(uow, _ctx(), "210200", burst) == 6
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    # the link's lock and cursor, the cases and their uploads read, then one write each for the cases,
    # the uploads' result times, the timeline and the outbox
    assert len(seen) <= 8, seen
    async with engine.connect() as conn:
        for c in cases:
            row, up = await repository.get_case(conn, case_id=c), await outbound.upload_of(conn, c)
            assert row is not None and up is not None
            assert (row["status"], row["outcome"]) == (CS.CASE_STATUS_CONCLUDED, CS.OUTCOME_APPROVED)
            assert up["result_at"] is not None


async def test_a_supplement_relayed_from_two_levels_up_names_the_center_that_raised_it(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    case_id = await _forwarded_case(engine, outbox, origin="210211101")  # uploaded to us by a township
    item = CS.SupplementItem(material_code="EIA", reason="figures missing")
    relayed = interconnect_pb2.ResultUpdate(
        cursor=1,
        child_case_id=case_id,
        kind="supplement_requested",
        supplement=[item],
        parent_center="210200",
        raised_at_center="210000",  # the city passes down what the province asked
    )
    async with UnitOfWork(engine, outbox) as uow:
        assert await apply_update(uow, _ctx(), "210200", relayed)
        await uow.commit()
    async with engine.connect() as conn:
        payloads = (await conn.execute(select(orm.outbox.c.payload))).scalars().all()
    (env,) = [events_pb2.Envelope.FromString(p) for p in payloads]
    assert env.supplement_requested.parent_center == "210000"
    (down,) = await feed.read(engine, child_center="210211101", after=0, limit=10)
    assert (down.kind, down.parent_center, down.raised_at_center) == (
        "supplement_requested",
        "210211",
        "210000",
    )
    older = interconnect_pb2.ResultUpdate(  # a parent that does not fill raised_at_center: itself
        cursor=2, child_case_id=case_id, kind="task_deemed_approved", department="ENV"
    )
    async with UnitOfWork(engine, outbox) as uow:
        assert await apply_update(uow, _ctx(), "210200", older)
        await uow.commit()
    _, again = await feed.read(engine, child_center="210211101", after=0, limit=10)
    assert (again.parent_center, again.raised_at_center) == ("210211", "210200")


async def test_feed_cursors_follow_commit_order_without_gaps(engine: AsyncEngine) -> None:
    first = await engine.connect()
    await first.begin()
    await feed.append(
        first, child_center="A", update_msg=interconnect_pb2.ResultUpdate(child_case_id="a1", kind="x")
    )

    async def second() -> int:
        async with engine.begin() as conn:
            return await feed.append(
                conn, child_center="A", update_msg=interconnect_pb2.ResultUpdate(child_case_id="a2", kind="x")
            )

    later = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not later.done()  # waits for the first writer's head row: cursor 2 cannot become visible before 1
    assert await feed.read(engine, child_center="A", after=0, limit=10) == []
    await first.commit()
    await first.close()
    assert await later == 2
    async with engine.begin() as conn:
        await feed.append(
            conn, child_center="B", update_msg=interconnect_pb2.ResultUpdate(child_case_id="b1")
        )
    got = await feed.read(engine, child_center="A", after=0, limit=10)
    assert [(u.cursor, u.child_case_id) for u in got] == [(1, "a1"), (2, "a2")]
    assert [u.cursor for u in await feed.read(engine, child_center="B", after=0, limit=10)] == [1]
    assert await feed.ack(engine, child_center="A", cursor=2) == 2
    assert await feed.ack(engine, child_center="A", cursor=1) == 2
    with pytest.raises(InvalidArgument):
        await feed.ack(engine, child_center="A", cursor=3)


async def test_updates_added_in_one_transaction_get_consecutive_cursors_at_commit_in_order(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:  # B already has an update: its cursors go on from it
        await feed.append(
            conn, child_center="B", update_msg=interconnect_pb2.ResultUpdate(child_case_id="b0")
        )
    later: list[asyncio.Task[int]] = []

    async def other_writer() -> int:
        async with engine.begin() as conn:
            return await feed.append(
                conn, child_center="A", update_msg=interconnect_pb2.ResultUpdate(child_case_id="a4")
            )

    async def after_the_feed_is_written(_: Any) -> None:  # the heads are locked from here to commit
        later.append(asyncio.create_task(other_writer()))
        await asyncio.sleep(0.3)
        assert not later[0].done()  # cursor 4 cannot become visible before 1..3

    async with UnitOfWork(engine, Outbox(orm.outbox)) as uow:
        for child, case in (("B", "b1"), ("A", "a1"), ("B", "b2"), ("A", "a2"), ("A", "a3")):
            feed.append_later(
                uow, child_center=child, update_msg=interconnect_pb2.ResultUpdate(child_case_id=case)
            )
        assert await feed.read(engine, child_center="A", after=0, limit=10) == []  # nothing before commit
        uow.before_commit(after_the_feed_is_written)
        await uow.commit()
    assert await later[0] == 4
    got = {c: await feed.read(engine, child_center=c, after=0, limit=10) for c in ("A", "B")}
    assert [(u.cursor, u.child_case_id) for u in got["A"]] == [(1, "a1"), (2, "a2"), (3, "a3"), (4, "a4")]
    assert [(u.cursor, u.child_case_id) for u in got["B"]] == [(1, "b0"), (2, "b1"), (3, "b2")]


async def test_a_childs_stream_is_woken_when_its_result_commits_and_not_by_a_rollback(
    engine: AsyncEngine,
) -> None:
    ctx, outbox = _ctx(), Outbox(orm.outbox)
    row = {"case_id": "p1", "case_number": "210211-1", "origin_center": "210211101", "origin_case_id": "c1"}
    bell = ctx.bells.feed("210211101")
    async with UnitOfWork(engine, outbox) as uow:
        await federation.feed_update(uow, ctx, row, what="concluded", zh="办结", en="concluded")
        await federation.feed_update(uow, ctx, row, what="concluded", zh="办结", en="concluded")
        waiter = asyncio.create_task(bell.wait(5))
        await asyncio.sleep(0.1)
        assert not waiter.done()  # nothing to read yet: the stream sleeps on
        await uow.commit()
    await asyncio.wait_for(waiter, 1)
    assert len(await feed.read(engine, child_center="210211101", after=0, limit=10)) == 2
    async with UnitOfWork(engine, outbox) as uow:  # rolled back: nobody is woken for nothing
        await federation.feed_update(uow, ctx, row, what="concluded", zh="办结", en="concluded")
    started = asyncio.get_running_loop().time()
    await bell.wait(0.3)
    assert asyncio.get_running_loop().time() - started >= 0.25


async def test_uploads_queued_by_one_batch_go_in_one_statement_and_a_later_event_of_the_batch_sees_them(
    engine: AsyncEngine,
) -> None:
    ctx, outbox = _ctx(), Outbox(orm.outbox)
    cases = [await _forwarded_case(engine, outbox, queued=False) for _ in range(4)]
    forwarded = [
        new_event(
            center="210211",
            producer="routing",
            at=datetime.now(UTC),
            body=events_pb2.CaseForwarded(parent_center="210200"),
            case_id=c,
        )
        for c in cases
    ]
    inserts: list[str] = []

    def listener(*args: Any) -> None:
        if "INSERT INTO intake_forwarding" in str(args[2]):
            inserts.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        async with UnitOfWork(engine, outbox) as uow:
            federation.know_uploads(uow, dict.fromkeys(cases, False))  # as the consumer's prefetch says
            for env in forwarded:
                row = await repository.load_case(uow, env.case_id)
                assert row is not None and not await federation.on_forwarded(uow, ctx, env, row)
            assert len(inserts) == 0  # queued, not written yet
            # the applicant withdraws the first case in the same batch: its upload is seen, the withdrawal queued behind it
            row = await repository.load_case(uow, cases[0])
            assert row is not None
            await federation.after_withdraw(uow, ctx, row, "changed my mind")
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert len(inserts) == 2  # the four uploads (read by the withdrawal), then the withdrawal at commit
    async with engine.connect() as conn:
        ops = (
            await conn.execute(
                select(orm.forwarding.c.case_id, orm.forwarding.c.op, orm.forwarding.c.state).order_by(
                    orm.forwarding.c.seq
                )
            )
        ).all()
    assert [tuple(o) for o in ops] == [
        *[(c, outbound.UPLOAD, outbound.PENDING) for c in cases],
        (cases[0], outbound.WITHDRAW, outbound.PENDING),
    ]


async def test_operations_go_up_in_order_per_case_and_back_off_after_a_failure(engine: AsyncEngine) -> None:
    outbox = Outbox(orm.outbox)
    x, y = await _forwarded_case(engine, outbox), await _forwarded_case(engine, outbox)
    async with engine.begin() as conn:
        await outbound.enqueue(conn, case_id=x, op=outbound.SUPPLEMENT, parent_center="210200")

    async def due(limit: int = 10, exclude: frozenset[int] = frozenset()) -> list[outbound.Operation]:
        return (await outbound.due(engine, limit=limit, exclude=set(exclude)))[0]

    ops, cases = await outbound.due(engine, limit=10, exclude=set())
    assert sorted((o.case_id, o.op) for o in ops) == sorted([(x, "upload"), (y, "upload")])
    assert {c: row["case_id"] for c, row in cases.items()} == {x: x, y: y}  # read with them, for upload
    async with engine.connect() as conn:
        assert cases[x] == await repository.get_case(conn, case_id=x)  # the whole row, as stored
    upload_x = next(o for o in ops if o.case_id == x)
    busy = await due(exclude=frozenset({upload_x.seq}))  # x's upload is being delivered
    assert [o.case_id for o in busy] == [y]
    assert len(await due(limit=1)) == 1
    await outbound.retry_later(engine, upload_x, error="UNAVAILABLE: parent down", permanent=False)
    assert [o.case_id for o in await due()] == [y]
    assert await outbound.retry_now(engine) == 1  # the link is back
    again = await due()
    assert {(o.case_id, o.op, o.attempts) for o in again} >= {(x, "upload", 1)}
    async with UnitOfWork(engine, outbox) as uow:  # two uploads finished in one transaction
        for op, number in ((upload_x, "P-1"), (next(o for o in again if o.case_id == y), "P-2")):
            outbound.finish_upload_later(
                uow, op.seq, parent_case_id=f"id-{number}", parent_case_number=number
            )
        await uow.commit()
    async with engine.connect() as conn:
        assert {
            (r["case_id"], r["parent_case_number"])
            for r in [await outbound.upload_of(conn, c) for c in (x, y)]
        } == {
            (x, "P-1"),
            (y, "P-2"),
        }
    ops, cases = await outbound.due(engine, limit=10, exclude=set())
    assert [(o.case_id, o.op) for o in ops] == [(x, "supplement")] and cases == {}  # no case row for it


async def _chunks(*parts: Any) -> AsyncIterator[interconnect_pb2.DocumentChunk]:
    for part in parts:
        yield part


async def test_a_document_upload_resumes_where_it_stopped_and_is_checked_by_digest(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    received = ReceivedDocuments(engine=engine, store=LocalDocumentStore(tmp_path))
    data = b"%PDF-1.4 " + bytes(range(256)) * 40
    digest = hashlib.sha256(data).hexdigest()
    head = interconnect_pb2.DocumentChunk(
        digest=digest,
        offset=0,
        data=data[:4000],
        total_size=len(data),
        filename="a.pdf",
        content_type="application/pdf",
    )
    status = await received.receive(_chunks(head))
    assert (status.received, status.complete) == (4000, False)
    assert (await received.status(digest)).received == 4000
    with pytest.raises(FailedPrecondition):
        await received.receive(
            _chunks(
                interconnect_pb2.DocumentChunk(digest=digest, offset=6000, data=b"x", total_size=len(data))
            )
        )
    rest = interconnect_pb2.DocumentChunk(
        digest=digest,
        offset=4000,
        data=data[4000:],
        total_size=len(data),
        filename="a.pdf",
        content_type="application/pdf",
    )
    assert (await received.receive(_chunks(rest))).complete
    assert (await received.status(digest)).complete
    bad = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(InvalidArgument):
        await received.receive(
            _chunks(
                interconnect_pb2.DocumentChunk(
                    digest=bad, offset=0, data=data, total_size=len(data), content_type="application/pdf"
                )
            )
        )
    assert (await received.status(bad)).received == 0


async def test_waiting_uploads_are_listed_however_many_cases_went_up_before(engine: AsyncEngine) -> None:
    outbox = Outbox(orm.outbox)
    done = [await _forwarded_case(engine, outbox) for _ in range(3)]
    waiting = await _forwarded_case(engine, outbox)
    async with engine.begin() as conn:
        for case_id in done:
            op = await outbound.upload_of(conn, case_id)
            assert op is not None
            await outbound.finish(conn, op["seq"], state=outbound.DONE)
    settings = Settings(
        service="intake", env="test", center="210211", center_level="district", database_url="", nats_url=""
    )
    runtime = Runtime(settings=settings, engine=engine, outbox=outbox, clock=ManualClock(datetime.now(UTC)))
    api = LinkStatusApi(runtime=runtime, link=None)
    # The older, finished uploads fill a small limit: the filter must come before it.
    listed = await api.ListForwarded(
        interconnect_pb2.ListForwardedRequest(state="waiting_to_upload", limit=2), None
    )
    assert waiting in {c.case_id for c in listed.cases}
    assert {c.state for c in listed.cases} == {"waiting_to_upload"}
    uploaded = await api.ListForwarded(
        interconnect_pb2.ListForwardedRequest(state="uploaded", limit=100), None
    )
    assert set(done) <= {c.case_id for c in uploaded.cases}
    link = await api.GetLink(interconnect_pb2.GetLinkRequest(), None)
    assert link.waiting_to_upload >= 1 and not link.connected

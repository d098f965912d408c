"""Receipt numbering and the fee ledger on PostgreSQL: gapless under concurrency and rollback, per year."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from services.common.db import create_engine
from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.outbox import Outbox, UnitOfWork, transact
from services.intake import fees_handlers, orm
from services.intake.convenience import ConvenienceContext
from services.intake.convenience_staff import Grant

pytestmark = pytest.mark.postgres
CENTER = "210211101"


class Staff:
    """Two fee collectors, a director and a liaison officer."""

    async def grants(self, center: str, role: str) -> list[Grant]:
        people = {
            "fee_collector": ["fee1", "fee2"],
            "center_director": ["director"],
            "liaison_officer": ["liaison"],
        }.get(role, [])
        return [Grant(u, u, role, center, "") for u in people]

    async def centers(self) -> list[tuple[str, str]]:
        return [(CENTER, "township")]


class Matters:
    async def get(self, code: str) -> Any:
        return code


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


class Intake:
    def __init__(self, clock: Clock) -> None:
        self.center, self.clock, self.matters = CENTER, clock, Matters()


def actor(username: str, role: str = "fee_collector") -> common_pb2.Actor:
    return common_pb2.Actor(username=username, role=role, center=CENTER)


@pytest.fixture
async def env(postgres_db: str) -> Any:
    engine = create_engine(postgres_db)
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    clock = Clock()
    ctx = ConvenienceContext(intake=Intake(clock), staff=Staff())  # type: ignore[arg-type]
    outbox = Outbox(orm.outbox)
    yield ctx, clock, lambda fn: transact(lambda: UnitOfWork(engine, outbox), fn)
    await engine.dispose()


def charge(amount: str, collector: str = "fee1") -> pb.CollectFeeRequest:
    return pb.CollectFeeRequest(
        matter_code="CV-006",
        fee_code="ID-CARD",
        fee_kind="administrative",
        amount=amount,
        payer="李四",
        method="cash",
        collector=actor(collector),
    )


async def test_concurrent_collectors_get_consecutive_numbers_and_failures_consume_none(env: Any) -> None:
    ctx, clock, run = env

    async def collect(amount: str, who: str) -> dict[str, Any]:
        return await run(lambda uow: fees_handlers.collect(uow, ctx, charge(amount, who)))  # type: ignore[no-any-return]

    async def failing(uow: UnitOfWork) -> None:
        await fees_handlers.collect(uow, ctx, charge("1.00"))
        raise FailedPrecondition("printer jammed")  # the whole transaction rolls back, number included

    rows = await asyncio.gather(*(collect(f"{i}.50", "fee1" if i % 2 else "fee2") for i in range(1, 21)))
    with pytest.raises(FailedPrecondition):
        await run(failing)
    with pytest.raises(InvalidArgument):
        await collect("-1", "fee1")
    with pytest.raises(PermissionDenied):
        await collect("1.00", "stranger")
    last = await collect("3.00", "fee1")
    seqs = sorted(r["seq"] for r in [*rows, last])
    assert seqs == list(range(1, 22))
    assert last["receipt_number"] == f"{CENTER}-2026-000021"
    clock.at = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)  # New Year in Dalian: a new series
    assert (await collect("3.00", "fee1"))["receipt_number"] == f"{CENTER}-2027-000001"


async def test_concurrent_refunds_never_exceed_the_charge(env: Any) -> None:
    ctx, _, run = env
    paid = await run(lambda uow: fees_handlers.collect(uow, ctx, charge("100.00")))
    req = pb.RefundFeeRequest(
        receipt_number=paid["receipt_number"], amount="30.00", reason="退", by=actor("fee1")
    )
    results = await asyncio.gather(
        *(run(lambda uow: fees_handlers.refund(uow, ctx, req)) for _ in range(5)), return_exceptions=True
    )
    done = [r for r in results if isinstance(r, dict)]
    assert len(done) == 3 and all(isinstance(r, FailedPrecondition) for r in results if r not in done)
    rec = await run(
        lambda uow: fees_handlers.reconcile(
            uow,
            ctx,
            pb.ReconcileRequest(day="2026-03-02", collector="fee1", declared="10.00", by=actor("fee1")),
        )
    )
    assert rec["balanced"] and rec["expected"] == Decimal("10.00") and rec["entries"] == 4


async def test_a_day_that_does_not_balance_puts_one_alarm_naming_the_director_in_the_outbox(env: Any) -> None:
    ctx, _, run = env
    await run(lambda uow: fees_handlers.collect(uow, ctx, charge("20.00", "fee2")))

    async def reconcile(declared: str) -> dict[str, Any]:
        req = pb.ReconcileRequest(day="2026-03-02", collector="fee2", declared=declared, by=actor("fee2"))
        return await run(lambda uow: fees_handlers.reconcile(uow, ctx, req))  # type: ignore[no-any-return]

    assert (await reconcile("20.00"))["balanced"]
    short = await reconcile("19.90")

    async def alarms(uow: UnitOfWork) -> list[bytes]:
        rows = await uow.conn.execute(
            select(orm.outbox.c.payload).where(orm.outbox.c.subject == "ev.fee_reconciliation_failed")
        )
        return [r[0] for r in rows]

    (payload,) = await run(alarms)
    env_ = events_pb2.Envelope.FromString(payload)
    body = env_.fee_reconciliation_failed
    assert (env_.center, env_.producer, env_.case_number) == (CENTER, "intake", "")
    assert (body.reconciliation_id, body.day, body.collector) == (short["id"], "2026-03-02", "fee2")
    assert (body.expected, body.declared, body.difference) == ("20.00", "19.90", "-0.10")
    assert list(body.supervisors) == ["director"] and body.by.username == "fee2"


async def test_the_days_reconciliations_are_read_back_with_their_printable_reports(env: Any) -> None:
    ctx, _, run = env
    await run(lambda uow: fees_handlers.collect(uow, ctx, charge("20.00", "fee1")))
    await run(lambda uow: fees_handlers.collect(uow, ctx, charge("7.50", "fee2")))

    async def reconcile(collector: str, declared: str, by: common_pb2.Actor) -> dict[str, Any]:
        req = pb.ReconcileRequest(day="2026-03-02", collector=collector, declared=declared, by=by)
        return await run(lambda uow: fees_handlers.reconcile(uow, ctx, req))  # type: ignore[no-any-return]

    mine = await reconcile("fee1", "20.00", actor("fee1"))
    center = await reconcile("", "27.00", actor("director", "center_director"))

    async def listed(**fields: Any) -> list[dict[str, Any]]:
        req = pb.ListReconciliationsRequest(day="2026-03-02", **fields)
        return await run(lambda uow: fees_handlers.reconciliations(uow, ctx, req))  # type: ignore[no-any-return]

    every = await listed()
    assert [(r["id"], r["collector"], r["balanced"]) for r in every] == [
        (mine["id"], "fee1", True),
        (center["id"], "", False),
    ]
    assert all("report_html" not in r for r in every)  # only when asked: a report has a row per entry
    (own,) = await listed(collector="fee1", with_reports=True)
    assert own["report_html"] == mine["report_html"] and f"{CENTER}-2026-000001" in own["report_html"]
    (whole,) = await listed(id=center["id"], with_reports=True)
    assert "27.50" in whole["report_html"] and "-0.50" in whole["report_html"]
    assert await listed(collector="fee2") == []
    other_day = pb.ListReconciliationsRequest(day="2026-03-03", id=center["id"])
    assert await run(lambda uow: fees_handlers.reconciliations(uow, ctx, other_day)) == []
    not_a_day = pb.ListReconciliationsRequest(day="2026-02-30")
    with pytest.raises(InvalidArgument):
        await run(lambda uow: fees_handlers.reconciliations(uow, ctx, not_a_day))


async def test_only_fee_collectors_and_the_director_reconcile(env: Any) -> None:
    ctx, _, run = env
    await run(lambda uow: fees_handlers.collect(uow, ctx, charge("20.00", "fee1")))
    req = pb.ReconcileRequest(day="2026-03-02", declared="20.00", by=actor("liaison", "liaison_officer"))
    with pytest.raises(PermissionDenied, match="fee collector or the center director"):
        await run(lambda uow: fees_handlers.reconcile(uow, ctx, req))
    by_director = pb.ReconcileRequest(
        day="2026-03-02", declared="20.00", by=actor("director", "center_director")
    )
    assert (await run(lambda uow: fees_handlers.reconcile(uow, ctx, by_director)))["balanced"]

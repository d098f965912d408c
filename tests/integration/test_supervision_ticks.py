"""Supervision on real PostgreSQL: two replicas ticking the same clocks never urge or deem twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import migrate
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.supervision import orm, repository
from tests.unit.supervision.harness import FakeApproval, Supervision, at, eod, fresh_calendar

pytestmark = pytest.mark.postgres
CASES = 40


@pytest.fixture
async def engines(postgres_db: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines (two replicas' pools) on one migrated database."""
    await asyncio.to_thread(migrate.upgrade, service="supervision", database_url=postgres_db)
    a, b = create_engine(postgres_db, pool_size=2), create_engine(postgres_db, pool_size=2)
    try:
        yield a, b
    finally:
        await a.dispose()
        await b.dispose()


async def drain(sup: Supervision, *, limit: int) -> int:
    """Tick until nothing is due; how many clocks this replica processed."""
    done = 0
    while (result := await sup.tick(limit=limit)).processed:
        done += result.processed
        await asyncio.sleep(0)
    return done


async def test_two_replicas_ticking_together_urge_and_deem_each_task_exactly_once(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    calls: Counter[str] = Counter()
    cal = fresh_calendar()
    a = Supervision(
        engines[0],
        clock=ManualClock(at(2025, 9, 22, 9)),
        calendar=cal,
        approval=FakeApproval(calls, delay=0.002),
    )
    b = Supervision(
        engines[1],
        clock=ManualClock(at(2025, 9, 22, 9)),
        calendar=cal,
        approval=FakeApproval(calls, delay=0.002),
    )
    cases = [await a.case(f"PG-{i:03d}").accept(at(2025, 9, 22), "PLAN") for i in range(CASES)]

    for replica in (a, b):
        replica.clock.set(at(2025, 9, 29, 0, 30))
    done = await asyncio.gather(drain(a, limit=3), drain(b, limit=3))
    assert sum(done) == 2 * CASES and all(done), done  # both replicas took part
    assert await a.count(orm.urges) == CASES
    assert await a.count(orm.warnings) == 2 * CASES  # each case's clock and its task's clock, red once
    assert len(await a.emitted("task_urged")) == CASES

    for replica in (a, b):
        replica.clock.set(at(2025, 10, 12, 1))
    done = await asyncio.gather(drain(a, limit=3), drain(b, limit=3))
    assert sum(done) == CASES, done
    assert calls == {c.tasks["PLAN"]: 1 for c in cases}
    assert {r["state"] for r in await a.rows(orm.deemed)} == {"deemed"}
    assert await a.count(orm.deemed) == CASES
    assert await a.count(orm.accountability) == CASES


async def test_rows_a_replica_holds_are_skipped_by_the_other(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    a = Supervision(engines[0], clock=ManualClock(at(2025, 9, 22, 9)), calendar=fresh_calendar())
    for i in range(4):
        await a.case(f"SK-{i}").accept(at(2025, 9, 22), "PLAN")
    async with engines[0].connect() as holder, engines[1].connect() as other:
        await holder.begin()
        held = await repository.claim_due(holder, now=at(2025, 9, 29, 1), limit=3)
        await other.begin()
        rest = await repository.claim_due(other, now=at(2025, 9, 29, 1), limit=10)
        assert len(held) == 3 and len(rest) == 5  # 4 cases x 2 clocks, minus the 3 held
        assert not {r["clock_id"] for r in held} & {r["clock_id"] for r in rest}
        await holder.rollback()
        await other.rollback()


async def test_deadlines_survive_the_round_trip_through_timestamptz(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    sup = Supervision(engines[0], clock=ManualClock(at(2025, 9, 22, 9)), calendar=fresh_calendar())
    case = await sup.case("TZ-1").accept(at(2025, 9, 22), "PLAN")
    row = await sup.clock_row(case.task_clock("PLAN"))
    assert row["due_at"] == eod(2025, 9, 28)
    assert row["next_action_at"] == at(2025, 9, 28, 0)
    assert (await sup.tick(at(2025, 9, 27, 23, 59))).processed == 0
    assert (await sup.tick(at(2025, 9, 28, 0))).warned == 2

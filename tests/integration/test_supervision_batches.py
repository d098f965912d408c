"""Supervision's consumer batches on SQLite and PostgreSQL: several events of one case in a batch, a
redelivered batch, and (PostgreSQL) two replicas applying batches about the same new cases at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common import migrate
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import kind
from services.supervision import model, orm
from tests.unit.supervision.harness import Supervision, at, fresh_calendar

APPROVED = common_pb2.TASK_STATUS_APPROVED


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'supervision.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated supervision database."""
    await asyncio.to_thread(migrate.upgrade, service="supervision", database_url=db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def replica(engine: AsyncEngine) -> Supervision:
    return Supervision(engine, clock=ManualClock(at(2025, 9, 22, 9)), calendar=fresh_calendar())


async def _cases(sup: Supervision, n: int) -> list[Any]:
    """n cases' whole lives, collected (not applied): two tasks each, one claimed, both decided."""
    with sup.collect() as envs:
        for i in range(n):
            case = await sup.case(f"IB-{i:03d}").accept(at(2025, 9, 22), "PLAN", "FIRE")
            await case.claim("PLAN", "li.clerk", at(2025, 9, 22, 11))
            await case.decide("PLAN", APPROVED, at(2025, 9, 23))
            await case.extend("FIRE", 2, at(2025, 9, 23, 10))
            await case.decide("FIRE", APPROVED, at(2025, 9, 24))
            await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 24, 12))
    return envs


async def _check_concluded(sup: Supervision, n: int) -> None:
    cases = await sup.rows(orm.cases)
    assert len(cases) == n and {c["status"] for c in cases} == {"concluded"}
    assert {c["center"] for c in cases} == {"210200"} and all(c["case_number"] for c in cases)
    clocks = await sup.rows(orm.clocks)
    assert len(clocks) == 3 * n
    assert all(r["stopped_at"] is not None and r["next_action_at"] is None for r in clocks)
    tasks = [r for r in clocks if r["task_id"]]
    assert {r["outcome"] for r in tasks} == {model.APPROVED}
    assert sorted(r["extension_days"] for r in clocks) == [0] * n + [2] * 2 * n  # the case's follows
    assert [r["claimants"] for r in tasks if r["department"] == "PLAN"] == [["li.clerk"]] * n
    # started + stopped per clock, and one extension on the task's clock and on the case's
    assert len(await sup.rows(orm.clock_changes)) == 2 * 3 * n + 2 * n


async def test_batches_of_several_events_per_case_and_their_redelivery(engine: AsyncEngine) -> None:
    sup = replica(engine)
    envs = await _cases(sup, 6)
    half = len(envs) // 2
    assert set(await sup.deliver(envs[:half])) == {"ack"}
    assert set(await sup.deliver(envs[half - 5 :], delivered=2)) == {"ack"}  # overlaps the first
    await _check_concluded(sup, 6)
    assert set(await sup.deliver(envs, delivered=3)) == {"ack"}  # all of it again: nothing changes
    await _check_concluded(sup, 6)


@pytest.mark.postgres
async def test_two_replicas_applying_the_same_new_cases_at_once_lose_nothing(postgres_db: str) -> None:
    await asyncio.to_thread(migrate.upgrade, service="supervision", database_url=postgres_db)
    engines = [create_engine(postgres_db, pool_size=2) for _ in range(2)]
    try:
        a, b = replica(engines[0]), replica(engines[1])
        envs = await _cases(a, 12)
        # Replicas share the consumer: one gets the acceptances while the other gets the rest.
        accepted = [e for e in envs if kind(e) == "case_accepted"]
        rest = [e for e in envs if kind(e) != "case_accepted"]
        batches = [(a, accepted[:6]), (b, rest), (a, accepted[6:])]
        for _ in range(20):
            settled = await asyncio.gather(*(r.deliver(batch) for r, batch in batches))
            # What failed (a deadlock, retried alone) is redelivered, as JetStream would.
            batches = [
                (r, [e for e, s in zip(batch, done, strict=True) if s != "ack"])
                for (r, batch), done in zip(batches, settled, strict=True)
            ]
            batches = [(r, batch) for r, batch in batches if batch]
            if not batches:
                break
        assert not batches
        await _check_concluded(a, 12)
        assert not [e for e in (await a.emitted()) if kind(e) == "calendar_missing"]
    finally:
        for e in engines:
            await e.dispose()


async def test_a_case_concluded_in_the_batch_of_its_late_task_opening(engine: AsyncEngine) -> None:
    sup = replica(engine)
    with sup.collect() as envs:
        case = await sup.case("IB-LATE").accept(at(2025, 9, 22), "PLAN", "FIRE", open_tasks=False)
        await case.open("PLAN", at(2025, 9, 22, 10))
        await case.feed(events_pb2.CaseWithdrawn(reason="moved away"), at(2025, 9, 23, 9))
        await case.open("FIRE", at(2025, 9, 22, 10))
    assert set(await sup.deliver(envs)) == {"ack"}
    for clock_id in (case.case_clock, case.task_clock("PLAN"), case.task_clock("FIRE")):
        row = await sup.clock_row(clock_id)
        assert row["stopped_at"] == at(2025, 9, 23, 9), clock_id
    assert (await sup.clock_row(case.task_clock("FIRE")))["outcome"] == 0

"""Events delivered as consumer batches (the case's events together, redelivered, out of order) leave
exactly what the same events applied one at a time leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import ManualClock
from services.supervision import handlers, model, orm
from tests.unit.supervision.harness import FakeApproval, Supervision, at, fresh_calendar, sqlite_engine

APPROVED = common_pb2.TASK_STATUS_APPROVED
SUPPLEMENT = common_pb2.TASK_STATUS_SUPPLEMENT_REQUESTED
# Written with the instant of the transaction, which differs between a batch and single events.
_WHEN_WRITTEN = {"updated_at", "id"}


@pytest.fixture
async def twin(tmp_path: Path) -> AsyncIterator[Supervision]:
    """A second replica on a database of its own, to apply the same events another way."""
    engine = await sqlite_engine(str(tmp_path / "twin.sqlite"))
    try:
        yield Supervision(
            engine, clock=ManualClock(at(2025, 9, 22, 9)), calendar=fresh_calendar(), approval=FakeApproval()
        )
    finally:
        await engine.dispose()


async def _state(sup: Supervision) -> dict[str, list[dict[str, Any]]]:
    """What supervision holds: cases, clocks and clock changes, without the instants of writing."""
    out = {}
    for table, key in ((orm.cases, "case_id"), (orm.clocks, "clock_id"), (orm.clock_changes, "id")):
        rows = [{k: v for k, v in r.items() if k not in _WHEN_WRITTEN} for r in await sup.rows(table)]
        out[table.name] = sorted(rows, key=lambda r: (str(r.get(key, "")), str(r.get("event_id", ""))))
    return out


async def _two_cases(sup: Supervision) -> list[Any]:
    """Two whole cases' events (collected, not applied): a supplement, an extension, a late opening."""
    with sup.collect() as envs:
        one = await sup.case("B-1").accept(at(2025, 9, 22), "PLAN", "FIRE", "LAND")
        await one.claim("PLAN", "li.clerk", at(2025, 9, 22, 11))
        await one.decide("PLAN", APPROVED, at(2025, 9, 23))
        await one.decide("FIRE", SUPPLEMENT, at(2025, 9, 23, 14))
        await one.feed(events_pb2.SupplementRoundOpened(round=1), at(2025, 9, 23, 15))
        await one.feed(events_pb2.CaseSupplemented(round=1), at(2025, 9, 26, 9))
        await one.extend("LAND", 3, at(2025, 9, 26, 10))
        await one.decide("FIRE", APPROVED, at(2025, 9, 29, 9))
        await one.decide("LAND", APPROVED, at(2025, 9, 29, 10))
        await one.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 29, 11))
        two = await sup.case("B-2").accept(at(2025, 9, 22, 11), "PLAN", "FIRE", open_tasks=False)
        await two.open("PLAN", at(2025, 9, 22, 11))
        await two.feed(events_pb2.CaseWithdrawn(reason="no longer needed"), at(2025, 9, 24))
        await two.open("FIRE", at(2025, 9, 22, 11))  # arrives after the withdrawal
    return envs


async def test_a_batch_of_whole_cases_leaves_what_one_event_at_a_time_leaves(
    sup: Supervision, twin: Supervision
) -> None:
    envs = await _two_cases(sup)
    for env in envs:
        await twin.apply(env)
    assert await sup.deliver(envs) == ["ack"] * len(envs)
    assert await _state(sup) == await _state(twin)
    clocks = {r["clock_id"]: r for r in await sup.rows(orm.clocks)}
    assert len(clocks) == 7 and all(r["stopped_at"] is not None for r in clocks.values())
    plan = next(r for r in clocks.values() if r["department"] == "PLAN" and r["claimants"])
    assert (plan["claimants"], plan["outcome"]) == (["li.clerk"], model.APPROVED)


async def test_a_redelivered_batch_is_acknowledged_and_changes_nothing(sup: Supervision) -> None:
    envs = await _two_cases(sup)
    assert set(await sup.deliver(envs[:9])) == {"ack"}
    before = await _state(sup)
    # The first part again (its acks were lost) with the rest: only the rest is applied.
    assert set(await sup.deliver(envs, delivered=2)) == {"ack"}
    after = await _state(sup)
    assert set(await sup.deliver(envs, delivered=3)) == {"ack"}
    assert await _state(sup) == after != before
    changes = await sup.rows(orm.clock_changes)
    assert len(changes) == len({(c["clock_id"], c["event_id"], c["cause"]) for c in changes})


async def test_copies_of_one_event_in_a_batch_count_once(sup: Supervision) -> None:
    with sup.collect() as envs:
        case = await sup.case("B-3").accept(at(2025, 9, 22), "PLAN")
        await case.extend("PLAN", 4, at(2025, 9, 23))
    assert set(await sup.deliver([*envs, envs[-1], envs[-1]])) == {"ack"}
    row = await sup.clock_row(case.task_clock("PLAN"))
    assert row["extension_days"] == 4
    assert (await sup.clock_row(case.case_clock))["extension_days"] == 4


async def test_an_event_not_ready_in_a_batch_is_redelivered_and_the_others_are_applied(
    sup: Supervision,
) -> None:
    with sup.collect() as envs:
        early = sup.case("B-4")
        early.tasks["PLAN"] = "00000000-0000-0000-0000-000000000004"
        await early.open("PLAN", at(2025, 9, 22, 10))  # before its case was routed
        other = await sup.case("B-5").accept(at(2025, 9, 22), "FIRE")
    assert await sup.deliver(envs) == ["nak"] + ["ack"] * (len(envs) - 1)
    assert (await sup.clock_row(other.task_clock("FIRE")))["stopped_at"] is None
    with sup.collect() as later:
        await early.accept(at(2025, 9, 22), open_tasks=False)
    assert set(await sup.deliver([*later, envs[0]], delivered=2)) == {"ack"}
    row = await sup.clock_row(early.task_clock("PLAN"))
    assert (row["department"], row["stopped_at"]) == ("PLAN", None)


async def test_a_batch_sees_the_clocks_its_earlier_events_started(sup: Supervision) -> None:
    # The routing and the openings arrive with a pause of the case: the pause reaches the new clocks.
    with sup.collect() as envs:
        case = await sup.case("B-6").accept(at(2025, 9, 22), "PLAN", "FIRE")
        await case.feed(events_pb2.SupplementRoundOpened(round=1), at(2025, 9, 22, 15))
    assert set(await sup.deliver(envs)) == {"ack"}
    for clock_id in (case.case_clock, case.task_clock("PLAN"), case.task_clock("FIRE")):
        row = await sup.clock_row(clock_id)
        assert row["paused"] and row["next_action_at"] is None, clock_id


async def test_handlers_read_what_they_need_when_nothing_was_read_ahead(
    sup: Supervision, twin: Supervision
) -> None:
    envs = await _two_cases(sup)
    for env in envs:
        await twin.apply(env)
    async with sup.uow() as uow:  # no prefetch: every read falls back to a read of its own
        for env in envs:
            await handlers.on_event(uow, sup.ctx, env)
        await uow.commit()
    assert await _state(sup) == await _state(twin)

"""A due date in a year without calendar data raises a visible alarm; loading the year recomputes the clocks."""

from __future__ import annotations

from onestop.common.v1 import common_pb2
from onestop.supervision.v1 import supervision_pb2
from services.supervision import orm, recompute
from tests.unit.supervision.harness import Supervision, at, eod, fresh_calendar

# 2027 as the State Council might publish it; only New Year's Day matters for these clocks.
HOLIDAYS_2027 = ["2027-01-01"]


async def test_clock_due_in_a_year_without_data_raises_the_alarm_once(sup: Supervision) -> None:
    late = await sup.case("Y-1", promised=10).accept(at(2026, 12, 24), "PLAN")
    await sup.case("Y-2", promised=15).accept(at(2026, 12, 24), "FIRE")
    row = await sup.clock_row(late.task_clock("PLAN"))
    assert (row["due_at"], row["calendar_missing"], row["next_action_at"]) == (None, 2027, None)
    assert [e.calendar_missing.year for e in await sup.emitted("calendar_missing")] == [2027]
    [alarm] = await sup.rows(orm.alarms)
    assert (alarm["kind"], alarm["key"], alarm["cleared_at"]) == ("calendar_missing", "2027", None)
    clocks = await sup.api().GetClocks(supervision_pb2.GetClocksRequest(case_number="Y-1"), None)
    assert not clocks.clocks[0].HasField("due_at")


async def test_loading_the_missing_year_recomputes_open_clocks_and_clears_the_alarm(sup: Supervision) -> None:
    case = await sup.case("Y-3", promised=10).accept(at(2026, 12, 24), "PLAN")
    early = await sup.case("Y-4", promised=2).accept(at(2026, 12, 24), "FIRE")
    moved = await recompute.load_year(sup.ctx, sup.uow, year=2027, holidays=HOLIDAYS_2027, workdays=[])
    assert moved == 2  # Y-3's case and task clocks; Y-4 was due in 2026 and stays
    # Dec 25, 28, 29, 30, 31, then New Year's Day off: Jan 4, 5, 6, 7, 8.
    row = await sup.clock_row(case.task_clock("PLAN"))
    assert (row["due_at"], row["calendar_missing"]) == (eod(2027, 1, 8), 0)
    assert row["next_action_at"] == at(2027, 1, 8, 0)
    [change] = [c for c in await sup.changes(case.task_clock("PLAN")) if c["cause"] == "calendar"]
    assert (change["old_due"], change["new_due"]) == (None, eod(2027, 1, 8))
    assert [c["cause"] for c in await sup.changes(early.task_clock("FIRE"))] == ["started"]
    [alarm] = await sup.rows(orm.alarms)
    assert alarm["cleared_at"] is not None
    assert (await sup.tick(at(2027, 1, 9, 0, 30))).urged == 2  # both tasks are late by then


async def test_a_year_loaded_by_one_replica_reaches_the_others(sup: Supervision) -> None:
    await sup.case("Y-7", promised=10).accept(at(2026, 12, 24), "PLAN")
    other = Supervision(sup.engine, clock=sup.clock, calendar=fresh_calendar())
    await recompute.load_year(sup.ctx, sup.uow, year=2027, holidays=HOLIDAYS_2027, workdays=[])
    # The other replica's periodic check picks the year up and, its calendar now equal, recomputes nothing.
    assert await recompute.sync_calendar(other.ctx, other.uow) is None
    assert 2027 in other.ctx.calendar.years()
    assert await sup.count(orm.clock_changes) == 2 + 2  # started, then moved by the calendar (case and task)


async def test_a_corrected_year_moves_open_clocks_and_records_the_cause(sup: Supervision) -> None:
    case = await sup.case("Y-5", promised=5).accept(at(2025, 9, 22), "PLAN")
    data = sup.ctx.calendar.year_data(2025)
    # A local correction: Friday 26 September 2025 becomes a holiday.
    holidays = dict(data.holidays) | {at(2025, 9, 26).date(): "typhoon closure"}
    assert await recompute.sync_calendar(sup.ctx, sup.uow) == 0  # first sync: fingerprint stored
    assert await recompute.sync_calendar(sup.ctx, sup.uow) is None  # unchanged calendar: nothing to do
    moved = await recompute.load_year(sup.ctx, sup.uow, year=2025, holidays=holidays, workdays=data.workdays)
    assert moved == 2
    assert (await sup.clock_row(case.task_clock("PLAN")))["due_at"] == eod(2025, 9, 29)


async def test_rectification_dates_in_a_missing_year_raise_the_alarm(sup: Supervision) -> None:
    case = await sup.case("Y-6", promised=1).accept(at(2026, 12, 30), "PLAN")
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2026, 12, 31, 9))
    sup.clock.set(at(2026, 12, 31, 10))
    reply = await sup.api().SubmitEvaluation(
        supervision_pb2.SubmitEvaluationRequest(case_number="Y-6", rating=1), None
    )
    assert reply.rectification_opened and not reply.HasField("rectify_due")
    assert [e.calendar_missing.year for e in await sup.emitted("calendar_missing")] == [2027]

"""Supervision driven by events and ticks, as users see it: warnings, urges, deemed approvals, pauses."""

from __future__ import annotations

import pytest

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.clock import from_timestamp
from services.supervision import handlers, model, orm
from tests.unit.supervision.harness import FakeApproval, Supervision, at, eod

APPROVED = common_pb2.TASK_STATUS_APPROVED
SUPPLEMENT = common_pb2.TASK_STATUS_SUPPLEMENT_REQUESTED


async def test_silent_department_is_deemed_to_approve_five_working_days_after_the_urge(
    sup: Supervision,
) -> None:
    case = await sup.case("210200-20250922-0001").accept(at(2025, 9, 22), "PLAN")
    await case.claim("PLAN", "li.clerk", at(2025, 9, 22, 11))
    assert (await sup.clock_row(case.task_clock("PLAN")))["due_at"] == eod(2025, 9, 28)

    assert (await sup.tick(at(2025, 9, 27, 12))).warned == 0  # Saturday before the adjusted Sunday
    result = await sup.tick(at(2025, 9, 28, 8))
    assert (result.warned, result.urged) == (2, 0)  # the case's clock and the task's turn yellow
    result = await sup.tick(at(2025, 9, 29, 0, 5))
    assert (result.warned, result.urged, result.deemed) == (2, 1, 0)
    urged = await sup.emitted("task_urged")
    assert [e.task_urged.task_id for e in urged] == [case.tasks["PLAN"]]

    # National Day: Sep 29, 30, Oct 9, 10 and Saturday Oct 11 are the five working days.
    assert (await sup.tick(at(2025, 10, 11, 20))).deemed == 0
    assert sup.approval.calls == {}
    result = await sup.tick(at(2025, 10, 12, 0, 1))
    assert result.deemed == 1
    assert sup.approval.calls == {case.tasks["PLAN"]: 1}
    assert (await sup.tick(at(2025, 10, 20))).processed == 0

    [record] = await sup.rows(orm.accountability)
    assert (record["department"], record["window"], record["staff"]) == ("PLAN", "W-PLAN", ["li.clerk"])
    [deemed] = await sup.rows(orm.deemed)
    assert deemed["state"] == "deemed"
    levels = sorted(
        (e.clock_warned.task_id != "", e.clock_warned.level) for e in await sup.emitted("clock_warned")
    )
    assert levels == [(False, model.YELLOW), (False, model.RED), (True, model.YELLOW), (True, model.RED)]

    api = sup.api()
    records = await api.ListAccountability(supervision_pb2.ListAccountabilityRequest(department="PLAN"), None)
    assert [r.staff for r in records.records] == [["li.clerk"]]
    # Approval's own task_decided (deemed) then stops the clock; nothing is settled twice.
    await case.decide(
        "PLAN", common_pb2.TASK_STATUS_DEEMED_APPROVED, at(2025, 10, 12, 0, 2), by="management_office"
    )
    row = await sup.clock_row(case.task_clock("PLAN"))
    assert (row["outcome"], row["deem_state"]) == (model.DEEMED_APPROVED, "deemed")
    assert await sup.count(orm.accountability) == 1


async def test_matter_that_forbids_deemed_approval_is_urged_but_never_deemed(sup: Supervision) -> None:
    case = await sup.case("N-1", deemed_allowed=False).accept(at(2025, 9, 22), "FIRE")
    assert (await sup.tick(at(2025, 9, 29, 1))).urged == 1
    assert (await sup.tick(at(2025, 12, 31))).deemed == 0
    assert sup.approval.calls == {}
    assert (await sup.clock_row(case.task_clock("FIRE")))["next_action_at"] is None


async def test_no_deemed_approval_while_paused_for_a_supplement(sup: Supervision) -> None:
    case = await sup.case("P-1").accept(at(2025, 9, 22), "LAND")
    assert (await sup.tick(at(2025, 9, 29, 1))).urged == 1
    await case.decide("LAND", SUPPLEMENT, at(2025, 9, 30, 9))
    await case.feed(events_pb2.SupplementRoundOpened(round=1), at(2025, 9, 30, 9, 5))
    assert (await sup.tick(at(2025, 10, 20))).deemed == 0
    assert sup.approval.calls == {}
    row = await sup.clock_row(case.task_clock("LAND"))
    assert row["paused"] and row["next_action_at"] is None
    # Once the applicant answers, the five days go on from where they stopped.
    await case.feed(events_pb2.CaseSupplemented(round=1), at(2025, 10, 21, 9))
    row = await sup.clock_row(case.task_clock("LAND"))
    assert not row["paused"] and row["next_action_at"] is not None


async def test_no_deemed_approval_after_an_approved_extension(sup: Supervision) -> None:
    case = await sup.case("E-1").accept(at(2025, 9, 22), "ENV")
    await case.extend("ENV", 3, at(2025, 9, 26, 16))
    row = await sup.clock_row(case.task_clock("ENV"))
    assert row["due_at"] == eod(2025, 10, 9)
    assert (await sup.clock_row(case.case_clock))["due_at"] == eod(2025, 10, 9)
    assert (await sup.tick(at(2025, 9, 29, 1))).urged == 0
    assert (await sup.tick(at(2025, 10, 10, 1))).urged == 1
    assert (await sup.tick(at(2025, 12, 31))).deemed == 0
    assert sup.approval.calls == {}
    [change] = [c for c in await sup.changes(case.task_clock("ENV")) if c["cause"] == "extension"]
    assert (change["old_due"], change["new_due"]) == (eod(2025, 9, 28), eod(2025, 10, 9))


async def test_refused_extension_changes_nothing(sup: Supervision) -> None:
    case = await sup.case("E-2").accept(at(2025, 9, 22), "ENV")
    await case.extend("ENV", 3, at(2025, 9, 26, 16), approved=False)
    assert (await sup.clock_row(case.task_clock("ENV")))["due_at"] == eod(2025, 9, 28)


async def test_supplement_pause_moves_the_due_date_and_records_why(sup: Supervision) -> None:
    case = await sup.case("S-1").accept(at(2025, 9, 22), "PLAN", "FIRE")
    await case.decide("PLAN", SUPPLEMENT, at(2025, 9, 24, 14))
    await case.decide("FIRE", SUPPLEMENT, at(2025, 9, 24, 15))
    await case.feed(events_pb2.SupplementRoundOpened(round=1), at(2025, 9, 24, 15))
    clocks = await sup.api().GetClocks(supervision_pb2.GetClocksRequest(case_number="S-1"), None)
    assert [c.state for c in clocks.clocks] == [common_pb2.CLOCK_STATE_PAUSED] * 3
    await case.feed(events_pb2.CaseSupplemented(round=1), at(2025, 9, 26, 9))
    await case.open("PLAN", at(2025, 9, 26, 9))  # approval re-opens the task: the same clock goes on
    for clock_id in (case.case_clock, case.task_clock("PLAN"), case.task_clock("FIRE")):
        assert (await sup.clock_row(clock_id))["due_at"] == eod(2025, 9, 30)
    causes = [(c["cause"], c["new_due"]) for c in await sup.changes(case.case_clock)]
    assert causes == [
        ("started", eod(2025, 9, 28)),
        ("supplement_pause", eod(2025, 9, 28)),
        ("supplement_resume", eod(2025, 9, 30)),
    ]
    sup.clock.set(at(2025, 9, 29))
    clocks = await sup.api().GetClocks(supervision_pb2.GetClocksRequest(case_number="S-1"), None)
    assert clocks.clocks[0].paused_days == 2


async def test_decision_stops_the_clock_with_the_working_days_used(sup: Supervision) -> None:
    case = await sup.case("D-1").accept(at(2025, 9, 22), "TAX")
    await case.decide("TAX", APPROVED, at(2025, 9, 24, 16))
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 24, 16))
    task, own = await sup.clock_row(case.task_clock("TAX")), await sup.clock_row(case.case_clock)
    assert (task["working_days"], task["outcome"], task["decided_by"]) == (2, model.APPROVED, "chief.tax")
    assert (own["working_days"], own["outcome"], own["next_action_at"]) == (2, model.APPROVED, None)
    assert (await sup.tick(at(2025, 10, 30))).processed == 0


async def test_approval_refusal_is_recorded_as_nothing_to_do(sup: Supervision) -> None:
    case = await sup.case("R-1").accept(at(2025, 9, 22), "QS")
    sup.approval.refuse.add(case.tasks["QS"])
    await sup.tick(at(2025, 9, 29, 0, 30))
    assert (await sup.tick(at(2025, 10, 12, 1))).deemed == 0
    [deemed] = await sup.rows(orm.deemed)
    assert deemed["state"] == "refused" and "already decided or extended" in deemed["note"]
    assert await sup.count(orm.accountability) == 0
    assert (await sup.tick(at(2025, 10, 20))).processed == 0


class FlakyApproval(FakeApproval):
    """Approval that is down for the first call."""

    async def deem_approve(self, task_id: str) -> bool:
        await super().deem_approve(task_id)
        if self.calls[task_id] == 1:
            raise ConnectionError("approval unavailable")
        return True


async def test_a_failed_call_to_approval_is_retried_by_a_later_tick(sup: Supervision) -> None:
    sup.ctx.approval = sup.approval = FlakyApproval()
    case = await sup.case("F-1").accept(at(2025, 9, 22), "QS")
    await sup.tick(at(2025, 9, 29, 0, 30))
    assert (await sup.tick(at(2025, 10, 12, 1))).deemed == 0
    [deemed] = await sup.rows(orm.deemed)
    assert (deemed["state"], deemed["attempts"]) == ("pending", 1)
    assert (await sup.tick(at(2025, 10, 12, 1, 0, 30))).processed == 0  # not before the retry delay
    assert (await sup.tick(at(2025, 10, 12, 1, 2))).deemed == 1
    assert sup.approval.calls == {case.tasks["QS"]: 2}
    assert await sup.count(orm.accountability) == 1


async def test_task_opened_before_its_case_was_routed_is_retried_later(sup: Supervision) -> None:
    case = sup.case("O-1")
    case.tasks["PLAN"] = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(handlers.NotReadyYet):
        await case.open("PLAN", at(2025, 9, 22))


async def test_a_decision_that_overtakes_the_task_opening_is_retried_later(sup: Supervision) -> None:
    case = await sup.case("O-2").accept(at(2025, 9, 22), "PLAN", open_tasks=False)
    with pytest.raises(handlers.NotReadyYet):
        await case.decide("PLAN", APPROVED, at(2025, 9, 23))
    await case.open("PLAN", at(2025, 9, 22, 10, 1))
    await case.decide("PLAN", APPROVED, at(2025, 9, 23))
    assert (await sup.clock_row(case.task_clock("PLAN")))["outcome"] == model.APPROVED


async def test_a_task_opening_that_arrives_after_the_conclusion_is_recorded_as_stopped(
    sup: Supervision,
) -> None:
    # Redelivered late (it overtook the routing, then waited out its backoff): the department's clock is
    # still recorded, stopped when the case concluded, so its timing is not lost and nothing runs on.
    case = await sup.case("L-1").accept(at(2025, 9, 22), "PLAN", "FIRE", open_tasks=False)
    await case.open("PLAN", at(2025, 9, 22, 10, 1))
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 24, 15))
    await case.open("FIRE", at(2025, 9, 22, 10, 1))
    row = await sup.clock_row(case.task_clock("FIRE"))
    assert (row["stopped_at"], row["outcome"], row["next_action_at"]) == (at(2025, 9, 24, 15), 0, None)
    assert row["working_days"] == (await sup.clock_row(case.task_clock("PLAN")))["working_days"] == 2
    assert [c["cause"] for c in await sup.changes(case.task_clock("FIRE"))] == ["started", "concluded"]
    result = await sup.tick(at(2025, 12, 1))
    assert (result.warned, result.urged, result.deemed) == (0, 0, 0)


async def test_on_the_spot_case_has_only_its_own_clock(sup: Supervision) -> None:
    case = await sup.case("OS-1", promised=0, on_the_spot=True).accept(
        at(2025, 9, 27, 10), "IC", open_tasks=False
    )
    await case.decide("IC", APPROVED, at(2025, 9, 27, 10))  # decided at acceptance: no task clock, no error
    row = await sup.clock_row(case.case_clock)
    assert row["due_at"] == eod(2025, 9, 27)  # on the spot, even on a Saturday
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 27, 10))
    assert (await sup.clock_row(case.case_clock))["working_days"] == 0


async def test_withdrawal_stops_every_clock(sup: Supervision) -> None:
    case = await sup.case("W-1").accept(at(2025, 9, 22), "PLAN", "FIRE")
    await case.feed(events_pb2.CaseWithdrawn(reason="no longer needed"), at(2025, 9, 23))
    for clock_id in (case.case_clock, case.task_clock("PLAN"), case.task_clock("FIRE")):
        assert (await sup.clock_row(clock_id))["stopped_at"] == at(2025, 9, 23)
    assert (await sup.tick(at(2025, 12, 1))).processed == 0


async def test_key_project_deadline_caps_its_clocks_and_its_tracker_sees_them(sup: Supervision) -> None:
    case = await sup.case("K-1", promised=10).accept(at(2025, 9, 22), "DRC")
    body = events_pb2.KeyProjectDesignated(tracker="zhao.tracker")
    body.promised_deadline.FromDatetime(at(2025, 9, 26, 17))
    await case.feed(body, at(2025, 9, 22, 15))
    assert (await sup.clock_row(case.task_clock("DRC")))["due_at"] == eod(2025, 9, 26)
    api = sup.api()
    listed = await api.ListKeyProjects(supervision_pb2.ListKeyProjectsRequest(tracker="zhao.tracker"), None)
    assert [c.clock_id for c in listed.clocks] == [case.case_clock, case.task_clock("DRC")]
    assert not (
        await api.ListKeyProjects(supervision_pb2.ListKeyProjectsRequest(tracker="other"), None)
    ).clocks


async def test_warnings_list_shows_each_open_clock_at_its_highest_level(sup: Supervision) -> None:
    a = await sup.case("L-1").accept(at(2025, 9, 22), "PLAN")
    await sup.case("L-2", promised=6).accept(at(2025, 9, 22), "FIRE")
    await sup.tick(at(2025, 9, 28, 8))  # L-1 yellow on its last day
    await sup.tick(at(2025, 9, 29, 1))  # L-1 red, L-2 (due Sep 29) yellow
    api = sup.api()
    found = await api.ListWarnings(supervision_pb2.ListWarningsRequest(), None)
    got = sorted((w.clock.case_number, w.clock.task_id != "", w.level) for w in found.warnings)
    assert got == [
        ("L-1", False, model.RED),
        ("L-1", True, model.RED),
        ("L-2", False, model.YELLOW),
        ("L-2", True, model.YELLOW),
    ]
    red_plan = await api.ListWarnings(
        supervision_pb2.ListWarningsRequest(department="PLAN", min_level=common_pb2.CLOCK_STATE_RED), None
    )
    assert [w.clock.task_id for w in red_plan.warnings] == [a.tasks["PLAN"]]


async def test_tick_over_grpc_reports_what_it_did(sup: Supervision) -> None:
    await sup.case("T-1").accept(at(2025, 9, 22), "PLAN")
    sup.clock.set(at(2025, 9, 29, 1))
    reply = await sup.api().Tick(supervision_pb2.TickRequest(), None)
    assert (reply.warned, reply.urged, reply.deemed) == (2, 1, 0)
    assert reply.now.ToDatetime().isoformat().startswith("2025-09-28T17:00")


async def test_a_ticks_red_warning_and_urge_name_the_case_the_department_and_the_due_instant(
    sup: Supervision,
) -> None:
    """What notification and the timeline read of a tick's events (built in bulk by the tick)."""
    first = await sup.case("210200-20250922-0001").accept(at(2025, 9, 22), "PLAN")
    second = await sup.case("210200-20250922-0002").accept(at(2025, 9, 22), "PLAN", "LAND")
    await sup.tick(at(2025, 9, 29, 0, 5))  # every clock past its due instant: red and urged at once
    warned = await sup.emitted("clock_warned")
    urged = await sup.emitted("task_urged")
    tasks = {first.tasks["PLAN"]: first, second.tasks["PLAN"]: second, second.tasks["LAND"]: second}
    assert sorted(e.task_urged.task_id for e in urged) == sorted(tasks)
    red = [e for e in warned if e.clock_warned.level == model.RED]
    assert sorted(e.clock_warned.task_id for e in red if e.clock_warned.task_id) == sorted(tasks)
    for event in [*urged, *red]:
        body = event.task_urged if event.HasField("task_urged") else event.clock_warned
        if not body.task_id:  # the case's own clock
            continue
        case = tasks[body.task_id]
        row = await sup.clock_row(case.task_clock(body.department))
        assert (event.center, event.producer) == ("210200", "supervision")
        assert (event.case_id, event.case_number) == (row["case_id"], case.number)
        assert from_timestamp(body.due_at) == row["due_at"]
        assert from_timestamp(event.occurred_at) == at(2025, 9, 29, 0, 5)
    ids = [e.event_id for e in [*warned, *urged]]
    assert len(set(ids)) == len(ids) and all(ids)

"""A case decided above this node: no clock runs here, but its state (forwarded, the parent's result) shows."""

from __future__ import annotations

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.supervision.v1 import supervision_pb2
from services.supervision import model, orm
from tests.unit.supervision.harness import Supervision, at

APPROVED = common_pb2.OUTCOME_APPROVED


async def _state(sup: Supervision, number: str) -> supervision_pb2.GetClocksResponse:
    return await sup.api().GetClocks(supervision_pb2.GetClocksRequest(case_number=number), None)


async def test_case_decided_above_runs_no_clock_here_and_shows_the_parents_result(sup: Supervision) -> None:
    case = sup.case("210211-20250922-0001")
    await case.feed(events_pb2.CaseAccepted(matter_code="M1", origin_center="210211"), at(2025, 9, 22))
    await case.feed(
        events_pb2.CaseForwarded(parent_center="210200", reason="decided_above"), at(2025, 9, 22, 10, 1)
    )
    # A routing or a task opening that reaches this node anyway starts nothing: the parent decides.
    routed = events_pb2.CaseRouted(matter_code="M1", promised_limit_days=5, statutory_limit_days=20)
    routed.tasks.add(task_id="t-1", department="PLAN", window="W-PLAN")
    await case.feed(routed, at(2025, 9, 22, 10, 2))
    task = common_pb2.Task(task_id="t-1", case_id=case.case_id, department="PLAN", window="W-PLAN")
    await case.feed(events_pb2.TaskOpened(task=task), at(2025, 9, 22, 10, 3))
    assert await sup.count(orm.clocks) == 0
    state = await _state(sup, case.number)
    assert (list(state.clocks), state.case_status, state.forwarded_to) == ([], "forwarded", "210200")

    # The parent's supplement notice comes down, the applicant answers: still nothing to pause or warn.
    await case.feed(events_pb2.SupplementRequested(round=1, during_review=True), at(2025, 10, 9, 10))
    await case.feed(events_pb2.CaseSupplemented(round=1), at(2025, 10, 10, 10))
    assert (await sup.tick(at(2025, 12, 31))).processed == 0
    assert await sup.emitted("clock_warned", "task_urged") == []

    await case.feed(
        events_pb2.ParentResultReceived(parent_center="210200", outcome=APPROVED), at(2025, 10, 20, 15)
    )
    state = await _state(sup, case.number)
    assert (state.case_status, state.outcome, state.forwarded_to) == ("concluded", APPROVED, "210200")


async def test_preliminary_review_clocks_run_here_then_the_case_waits_for_the_parent(
    sup: Supervision,
) -> None:
    case = sup.case("210200-20250922-0002", promised=7, statutory=7)
    await case.feed(events_pb2.CaseAccepted(matter_code="M1", origin_center="210200"), at(2025, 9, 22))
    await case.feed(
        events_pb2.CaseForwarded(parent_center="210000", reason="preliminary_review"), at(2025, 9, 22, 10)
    )
    await case.accept(at(2025, 9, 22), "PLAN")  # the city's own preliminary tasks, 7 working days (R3)
    assert (await sup.clock_row(case.task_clock("PLAN")))["stopped_at"] is None

    await case.decide("PLAN", common_pb2.TASK_STATUS_APPROVED, at(2025, 9, 24, 10))
    await case.conclude(APPROVED, at(2025, 9, 24, 10, 1))
    row = await sup.clock_row(case.case_clock)
    assert (row["stopped_at"] is not None, row["outcome"]) == (True, model.APPROVED)
    state = await _state(sup, case.number)
    assert (state.case_status, state.forwarded_to) == ("forwarded", "210000")
    assert [c["cause"] for c in await sup.changes(case.case_clock)][-1] == "preliminary_review"

    await case.feed(
        events_pb2.ParentResultReceived(parent_center="210000", outcome=common_pb2.OUTCOME_REJECTED),
        at(2025, 10, 20),
    )
    state = await _state(sup, case.number)
    assert (state.case_status, state.outcome) == ("concluded", common_pb2.OUTCOME_REJECTED)


async def test_refused_preliminary_review_concludes_the_case_here(sup: Supervision) -> None:
    case = sup.case("210200-20250922-0003", promised=7, statutory=7)
    await case.feed(
        events_pb2.CaseForwarded(parent_center="210000", reason="preliminary_review"), at(2025, 9, 22, 10)
    )
    await case.accept(at(2025, 9, 22), "PLAN")
    await case.conclude(common_pb2.OUTCOME_REJECTED, at(2025, 9, 24))
    state = await _state(sup, case.number)
    assert (state.case_status, state.outcome) == ("concluded", common_pb2.OUTCOME_REJECTED)


async def test_a_preliminary_review_marked_on_the_event_leaves_the_case_forwarded(sup: Supervision) -> None:
    # The case_forwarded has not been seen (yet): the flag on case_concluded is enough.
    case = await sup.case("P-9", promised=7, statutory=7).accept(at(2025, 9, 22), "PLAN")
    await case.feed(events_pb2.CaseConcluded(outcome=APPROVED, preliminary_review=True), at(2025, 9, 24))
    assert (await _state(sup, case.number)).case_status == "forwarded"
    assert (await sup.clock_row(case.case_clock))["stopped_at"] is not None

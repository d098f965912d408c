"""A case decided above this node: no clock runs here, but its state (forwarded, the parent's result) shows."""

from __future__ import annotations

from datetime import datetime

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.events import timestamp
from services.supervision import model, orm
from tests.unit.supervision.harness import Case, Supervision, at

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


DISTRICT, CITY = "210211", "210200"
#          sent up, waiting, approved above, rejected above, withdrawn
Forwarded = tuple[int, int, int, int, int]


async def _figures(
    sup: Supervision, group_by: str, start: datetime, end: datetime
) -> dict[str, tuple[tuple[int, int, int], Forwarded]]:
    """Per key: (accepted, concluded, on time) of this node's own clocks, and the forwarded figures."""
    req = supervision_pb2.GetStatisticsRequest(group_by=group_by, to=timestamp(end))
    getattr(req, "from").CopyFrom(timestamp(start))
    return {
        r.key: (
            (r.accepted, r.concluded, r.on_time),
            (
                r.forwarded,
                r.forwarded_waiting,
                r.forwarded_approved,
                r.forwarded_rejected,
                r.forwarded_withdrawn,
            ),
        )
        for r in (await sup.api().GetStatistics(req, None)).rows
    }


async def _sent_up(sup: Supervision, number: str, when: datetime) -> Case:
    case = sup.case(number, matter="PL-CITY", center=DISTRICT)
    await case.feed(events_pb2.CaseAccepted(matter_code="PL-CITY", origin_center=DISTRICT), when)
    await case.feed(events_pb2.CaseForwarded(parent_center=CITY, reason="decided_above"), when)
    return case


async def _decided_above(case: Case, outcome: common_pb2.Outcome.ValueType, when: datetime) -> None:
    await case.feed(events_pb2.ParentResultReceived(parent_center=CITY, outcome=outcome), when)


async def test_a_districts_statistics_count_the_cases_it_sent_up_apart_from_its_own_figures(
    sup: Supervision,
) -> None:
    # Decided here, on time: the district's own figures.
    own = await sup.case("L-1", matter="M1", center=DISTRICT).accept(at(2025, 9, 22), "PLAN")
    await own.decide("PLAN", common_pb2.TASK_STATUS_APPROVED, at(2025, 9, 23))
    await own.conclude(APPROVED, at(2025, 9, 23))
    # Decided at the city: approved, rejected, deemed approved, still waiting, withdrawn after going up.
    approved = await _sent_up(sup, "D-1", at(2025, 9, 22))
    rejected = await _sent_up(sup, "D-2", at(2025, 9, 23))
    deemed = await _sent_up(sup, "D-3", at(2025, 9, 24))
    await _sent_up(sup, "D-4", at(2025, 9, 25))
    withdrawn = await _sent_up(sup, "D-5", at(2025, 9, 25))
    # A preliminary review here that passes goes up (its review is the district's own work) ...
    passed = sup.case("P-1", matter="PL-PROV", promised=7, statutory=7, center=DISTRICT)
    await passed.feed(
        events_pb2.CaseForwarded(parent_center=CITY, reason="preliminary_review"), at(2025, 9, 22)
    )
    await passed.accept(at(2025, 9, 22), "PLAN")
    await passed.decide("PLAN", common_pb2.TASK_STATUS_APPROVED, at(2025, 9, 24))
    await passed.conclude(APPROVED, at(2025, 9, 24, 11))
    # ... one that is refused is concluded here and never goes up.
    refused = sup.case("P-2", matter="PL-PROV", promised=7, statutory=7, center=DISTRICT)
    await refused.feed(
        events_pb2.CaseForwarded(parent_center=CITY, reason="preliminary_review"), at(2025, 9, 22)
    )
    await refused.accept(at(2025, 9, 22), "PLAN")
    await refused.decide("PLAN", common_pb2.TASK_STATUS_REJECTED, at(2025, 9, 25))
    await refused.conclude(common_pb2.OUTCOME_REJECTED, at(2025, 9, 25))
    # The city's results come down in October; the applicant of D-5 withdraws meanwhile.
    await withdrawn.feed(events_pb2.CaseWithdrawn(reason="不再需要"), at(2025, 10, 9))
    await _decided_above(approved, APPROVED, at(2025, 10, 20))
    await _decided_above(rejected, common_pb2.OUTCOME_REJECTED, at(2025, 10, 21))
    await _decided_above(deemed, common_pb2.OUTCOME_DEEMED_APPROVED, at(2025, 10, 22))
    # A result that overtook its forwarding (events may arrive in any order) still counts, once.
    late = sup.case("D-6", matter="PL-CITY", center=DISTRICT)
    await late.feed(events_pb2.CaseAccepted(matter_code="PL-CITY", origin_center=DISTRICT), at(2025, 9, 26))
    await _decided_above(late, APPROVED, at(2025, 10, 23))
    await late.feed(events_pb2.CaseForwarded(parent_center=CITY, reason="decided_above"), at(2025, 9, 26))

    # The own figures are those of L-1 and of the two reviews (P-1 approved, P-2 rejected, on time):
    # nothing of what the city decided mixes into them.
    whole = await _figures(sup, "center", at(2025, 9, 1), at(2025, 11, 1))
    assert whole == {DISTRICT: ((3, 3, 3), (7, 2, 3, 1, 1))}  # waiting: D-4 and P-1
    september = await _figures(sup, "center", at(2025, 9, 1), at(2025, 10, 1))
    assert september[DISTRICT][1] == (7, 7, 0, 0, 0)  # all sent up, none back yet
    late_october = await _figures(sup, "center", at(2025, 10, 15), at(2025, 11, 1))
    assert late_october[DISTRICT][1] == (0, 2, 3, 1, 0)
    by_matter = await _figures(sup, "matter", at(2025, 9, 1), at(2025, 11, 1))
    assert {k: v[1] for k, v in by_matter.items()} == {
        "M1": (0, 0, 0, 0, 0),
        "PL-CITY": (6, 1, 3, 1, 1),
        "PL-PROV": (1, 1, 0, 0, 0),
    }
    # Departments and windows only ever see their own tasks.
    by_department = await _figures(sup, "department", at(2025, 9, 1), at(2025, 11, 1))
    assert {k: v[1] for k, v in by_department.items()} == {"PLAN": (0, 0, 0, 0, 0)}

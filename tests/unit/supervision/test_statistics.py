"""Statistics on a seeded data set whose figures are worked out by hand below, and the ranking formula."""

from __future__ import annotations

import pytest

from onestop.common.v1 import common_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.errors import InvalidArgument
from services.common.events import timestamp
from services.supervision import ranking, stats
from tests.unit.supervision.harness import Supervision, at

APPROVED, REJECTED = common_pb2.TASK_STATUS_APPROVED, common_pb2.TASK_STATUS_REJECTED


async def seed(sup: Supervision) -> None:
    """Four cases around National Day 2025 (M1: 5 working days, deemed allowed; M2: 3 days, not allowed).

    C1 M1 accepted Mon Sep 22, A approves Sep 24 (2 working days: 23, 24)            on time
    C2 M1 accepted Sep 22, A approves Fri Sep 26 (4 days), B is urged after its due Sun Sep 28 and
          approves Oct 9 (8 days: 23-26, 28-30, Oct 9): the case concludes late, never deemed
    C3 M2 accepted Tue Sep 23, B rejects Thu Sep 25 (2 days: 24, 25)                  on time
    C4 M2 accepted Wed Sep 24, due Sun Sep 28 (25, 26, 28), B never answers: urged, open and late
    Ratings: C1 5 (Sep 25), C3 4 (Sep 26), C2 2 (Oct 10).
    """
    c1 = await sup.case("C1", matter="M1", promised=5).accept(at(2025, 9, 22), "A")
    c2 = await sup.case("C2", matter="M1", promised=5).accept(at(2025, 9, 22), "A", "B")
    c3 = await sup.case("C3", matter="M2", promised=3, deemed_allowed=False).accept(at(2025, 9, 23), "B")
    await sup.case("C4", matter="M2", promised=3, deemed_allowed=False).accept(at(2025, 9, 24), "B")
    await c1.decide("A", APPROVED, at(2025, 9, 24, 15))
    await c1.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 24, 15))
    await c3.decide("B", REJECTED, at(2025, 9, 25, 16))
    await c3.conclude(common_pb2.OUTCOME_REJECTED, at(2025, 9, 25, 16))
    await c2.decide("A", APPROVED, at(2025, 9, 26, 11))
    api = sup.api()
    sup.clock.set(at(2025, 9, 25, 17))
    await api.SubmitEvaluation(supervision_pb2.SubmitEvaluationRequest(case_number="C1", rating=5), None)
    sup.clock.set(at(2025, 9, 26, 17))
    await api.SubmitEvaluation(supervision_pb2.SubmitEvaluationRequest(case_number="C3", rating=4), None)
    assert (await sup.tick(at(2025, 9, 29, 0, 30))).urged == 2  # C2's B and C4's B
    await c2.decide("B", APPROVED, at(2025, 10, 9, 10))
    await c2.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 10, 9, 10))
    sup.clock.set(at(2025, 10, 10, 9))
    await api.SubmitEvaluation(supervision_pb2.SubmitEvaluationRequest(case_number="C2", rating=2), None)


async def figures(
    sup: Supervision,
    group_by: str,
    start: tuple[int, int, int] = (2025, 9, 1),
    end: tuple[int, int, int] = (2025, 10, 15),
) -> dict[str, tuple[object, ...]]:
    req = supervision_pb2.GetStatisticsRequest(group_by=group_by, to=timestamp(at(*end, 0)))
    getattr(req, "from").CopyFrom(timestamp(at(*start, 0)))
    rows = (await sup.api().GetStatistics(req, None)).rows
    return {
        r.key: (
            r.accepted,
            r.concluded,
            r.on_time,
            r.on_time_rate,
            r.avg_working_days,
            r.p90_working_days,
            r.overdue,
            r.urged,
            r.deemed_approved,
            r.evaluations,
            r.avg_rating,
        )
        for r in rows
    }


async def test_statistics_per_department_window_matter_center_and_staff(sup: Supervision) -> None:
    await seed(sup)
    #                acc conc on-time rate avg  p90  overdue urged deemed evals avg-rating
    by_department = {
        "A": (2, 2, 2, 1.0, 3.0, 4.0, 0, 0, 0, 2, 3.5),
        "B": (3, 2, 1, 0.5, 5.0, 8.0, 2, 2, 0, 2, 3.0),
    }
    assert await figures(sup, "department") == by_department
    assert await figures(sup, "window") == {f"W-{k}": v for k, v in by_department.items()}
    assert await figures(sup, "matter") == {
        "M1": (2, 2, 1, 0.5, 5.0, 8.0, 1, 1, 0, 2, 3.5),
        "M2": (2, 1, 1, 1.0, 2.0, 2.0, 1, 1, 0, 1, 4.0),
    }
    assert await figures(sup, "center") == {"210200": (4, 3, 2, 0.6667, 4.0, 8.0, 2, 2, 0, 3, 3.67)}
    staff = await figures(sup, "staff")
    assert staff["chief.a"][:3] == (2, 2, 2) and staff["chief.b"][:3] == (2, 2, 1)


async def test_statistics_of_a_shorter_period(sup: Supervision) -> None:
    await seed(sup)
    # Until Sep 27: C2's B is still open but not yet due, nobody was urged, only C3 was rated.
    assert await figures(sup, "department", end=(2025, 9, 27)) == {
        "A": (2, 2, 2, 1.0, 3.0, 4.0, 0, 0, 0, 1, 5.0),
        "B": (3, 1, 1, 1.0, 2.0, 2.0, 0, 0, 0, 1, 4.0),
    }


async def test_statistics_reject_an_unknown_grouping(sup: Supervision) -> None:
    with pytest.raises(InvalidArgument):
        await sup.api().GetStatistics(supervision_pb2.GetStatisticsRequest(group_by="planet"), None)


def test_p90_is_the_nearest_rank() -> None:
    assert stats.p90([]) == 0
    assert stats.p90([7]) == 7
    assert stats.p90(list(range(1, 11))) == 9  # rank ceil(9.0) = 9
    assert stats.p90(list(range(1, 12))) == 10  # rank ceil(9.9) = 10
    assert stats.p90([5, 1, 3]) == 5


def row(key: str, **kw: int) -> stats.Row:
    r = stats.Row(key=key)
    for name, value in kw.items():
        setattr(r, name, value)
    return r


def test_score_grade_and_veto_follow_the_documented_formula() -> None:
    # on time 18/20 = 0.9, ratings avg 4.5 -> satisfaction 0.875: 100*(0.6*0.9 + 0.4*0.875) = 89; minus 2*1 overdue
    good = row("W-A", concluded=20, on_time=18, overdue=1, evaluations=4, rating_sum=18)
    assert ranking.score(good) == 87.0
    assert ranking.grade(87.0, vetoed=False) == ranking.GOOD
    silent = row("W-B", concluded=10, on_time=10)  # no evaluations: the on-time rate alone
    assert ranking.score(silent) == 100.0
    deemed = row("W-C", concluded=30, on_time=30, deemed_approved=1)
    [a] = ranking.assess([deemed])
    assert (a.score, a.veto, a.grade) == (95.0, True, ranking.FAIL)
    bad = row("W-D", concluded=30, on_time=30, evaluations=3, rating_sum=6, bad_reviews=3)
    assert ranking.veto(bad) == ("3 bad review(s)",)
    assert ranking.grade(59.9, vetoed=False) == ranking.FAIL
    assert ranking.grade(60.0, vetoed=False) == ranking.PASS
    assert ranking.grade(90.0, vetoed=False) == ranking.EXCELLENT


def test_red_flag_windows_are_the_best_unvetoed_with_enough_work() -> None:
    rows = [
        row("W-1", concluded=40, on_time=40),
        row("W-2", concluded=50, on_time=50),
        row("W-3", concluded=5, on_time=5),
        row("W-4", concluded=60, on_time=60, deemed_approved=1),
        row("W-5", concluded=40, on_time=36),
        row("W-6", concluded=40, on_time=30),
    ]
    picked = ranking.red_flag_windows(rows)
    # W-1 and W-2 tie on 100: more conclusions first; W-3 did too little; W-4 is vetoed.
    assert [a.key for a in picked] == ["W-2", "W-1", "W-5"]
    rules = ranking.RankingRules(red_flag_count=1, min_concluded=1)
    assert [a.key for a in ranking.red_flag_windows(rows, rules)] == ["W-2"]


def test_quarter_and_year_bounds_are_in_the_center_time_zone() -> None:
    assert ranking.quarter(2025, 4) == (at(2025, 10, 1, 0), at(2026, 1, 1, 0))
    assert ranking.quarter(2025, 1) == (at(2025, 1, 1, 0), at(2025, 4, 1, 0))
    assert ranking.year(2025) == (at(2025, 1, 1, 0), at(2026, 1, 1, 0))
    with pytest.raises(ValueError):
        ranking.quarter(2025, 5)

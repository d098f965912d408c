"""Applicant evaluations (好差评): ratings of concluded cases, and the rectification of bad reviews."""

from __future__ import annotations

import hashlib

import pytest

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.supervision import evaluations, orm
from tests.unit.supervision.harness import Supervision, at, eod

DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def rating(
    number: str, value: int, *, digest: str = DIGEST, tags: tuple[str, ...] = ()
) -> supervision_pb2.SubmitEvaluationRequest:
    return supervision_pb2.SubmitEvaluationRequest(
        case_number=number, query_code_digest=digest, rating=value, tags=list(tags), text="窗口服务"
    )


def code_digest(code: str) -> str:
    """What the gateway sends for a query code (and intake puts in case_accepted)."""
    return hashlib.sha256(code.upper().encode()).hexdigest()


async def concluded(sup: Supervision, number: str, *, query_code_digest: str = "") -> None:
    case = await sup.case(number).accept(at(2025, 9, 22), "PLAN", query_code_digest=query_code_digest)
    await case.decide("PLAN", common_pb2.TASK_STATUS_APPROVED, at(2025, 9, 29, 10))
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 29, 10))


async def test_satisfied_applicant_rates_once(sup: Supervision) -> None:
    await concluded(sup, "EV-1")
    api = sup.api()
    reply = await api.SubmitEvaluation(rating("EV-1", 5, tags=("快捷", "热情")), None)
    assert (reply.rating, reply.rectification_opened) == (5, False)
    assert not reply.HasField("callback_due")
    [event] = await sup.emitted("evaluation_submitted")
    assert (event.case_number, event.evaluation_submitted.rating, list(event.evaluation_submitted.tags)) == (
        "EV-1",
        5,
        ["快捷", "热情"],
    )
    with pytest.raises(AlreadyExists):
        await api.SubmitEvaluation(rating("EV-1", 4), None)


async def test_bad_review_opens_a_rectification_across_national_day(sup: Supervision) -> None:
    await concluded(sup, "EV-2")
    sup.clock.set(at(2025, 9, 30, 10))
    reply = await sup.api().SubmitEvaluation(rating("EV-2", 2), None)
    assert reply.rectification_opened
    # The next working day after Sep 30 is Oct 9; fifteen working days end on Oct 28 (Sat Oct 11 counts).
    assert reply.callback_due.seconds == int(eod(2025, 10, 9).timestamp())
    assert reply.rectify_due.seconds == int(eod(2025, 10, 28).timestamp())

    async with sup.uow() as uow:
        late = await evaluations.overdue_rectifications(uow, now=at(2025, 10, 10))
        assert [r["case_number"] for r in late] == ["EV-2"]
        await evaluations.record_progress(uow, sup.ctx, evaluation_id=reply.evaluation_id, step="called_back")
        assert not await evaluations.overdue_rectifications(uow, now=at(2025, 10, 10))
        await uow.commit()

    # The applicant's one follow-up rating, after the rectification.
    follow = await sup.api().SubmitEvaluation(rating("EV-2", 4), None)
    assert (follow.evaluation_id, follow.rating, follow.rectification_opened) == (
        reply.evaluation_id,
        4,
        True,
    )
    with pytest.raises(AlreadyExists):
        await sup.api().SubmitEvaluation(rating("EV-2", 5), None)
    [row] = await sup.rows(orm.evaluations)
    assert (row["rating"], row["follow_up_rating"]) == (2, 4)


async def test_evaluation_needs_a_known_concluded_case_and_a_rating_of_one_to_five(sup: Supervision) -> None:
    api = sup.api()
    with pytest.raises(NotFound):
        await api.SubmitEvaluation(rating("NOPE", 3), None)
    await sup.case("EV-3").accept(at(2025, 9, 22), "PLAN")
    with pytest.raises(FailedPrecondition):
        await api.SubmitEvaluation(rating("EV-3", 3), None)
    await concluded(sup, "EV-4")
    for bad in (0, 6):
        with pytest.raises(InvalidArgument) as err:
            await api.SubmitEvaluation(rating("EV-4", bad), None)
        assert err.value.field == "rating"
    with pytest.raises(InvalidArgument):
        await api.SubmitEvaluation(rating("", 3), None)


async def test_a_wrong_query_code_is_refused_even_on_the_first_evaluation(sup: Supervision) -> None:
    await concluded(sup, "EV-6", query_code_digest=code_digest("K7M2P9QX"))
    api = sup.api()
    for wrong in (code_digest("K7M2P9QY"), "", DIGEST):
        with pytest.raises(PermissionDenied):
            await api.SubmitEvaluation(rating("EV-6", 1, digest=wrong), None)
    assert await sup.rows(orm.evaluations) == [] and await sup.emitted("evaluation_submitted") == []
    [case] = await sup.rows(orm.cases, case_number="EV-6")
    assert case["query_code_digest"] == code_digest("K7M2P9QX")  # a refused digest is not remembered

    reply = await api.SubmitEvaluation(rating("EV-6", 5, digest=code_digest("k7m2p9qx").upper()), None)
    assert (reply.case_number, reply.rating) == ("EV-6", 5)
    [row] = await sup.rows(orm.evaluations)
    assert row["rating"] == 5


async def test_a_case_accepted_before_the_digest_was_sent_trusts_the_first_evaluation(
    sup: Supervision,
) -> None:
    # case_accepted without query_code_digest (intake before it filled it): trust on first use.
    await concluded(sup, "EV-5")
    await sup.api().SubmitEvaluation(rating("EV-5", 1), None)
    with pytest.raises(PermissionDenied):
        await sup.api().SubmitEvaluation(rating("EV-5", 4, digest="0" * 64), None)


def forwarded(value: int, *, follow_up: bool = False) -> events_pb2.EvaluationForwarded:
    return events_pb2.EvaluationForwarded(
        child_center="210211", rating=value, tags=[" 等候久 ", ""], text=" 窗口服务 ", follow_up=follow_up
    )


async def test_a_rating_given_at_the_child_counts_here_and_its_follow_up_after_the_rectification(
    sup: Supervision,
) -> None:
    case = await sup.case("EV-F1").accept(at(2025, 9, 22), "PLAN")
    await case.feed(forwarded(2), at(2025, 9, 23))  # not decided yet: left, and nothing recorded
    assert not await sup.rows(orm.evaluations)
    await case.decide("PLAN", common_pb2.TASK_STATUS_APPROVED, at(2025, 9, 29, 10))
    await case.conclude(common_pb2.OUTCOME_APPROVED, at(2025, 9, 29, 10))
    await case.feed(forwarded(2), at(2025, 9, 30, 10))
    [row] = await sup.rows(orm.evaluations)
    assert (row["rating"], row["tags"], row["text"], row["rectification"]) == (
        2,
        ["等候久"],
        "窗口服务",
        True,
    )
    assert row["rectify_due"] == eod(2025, 10, 28)  # the same rectification as a rating given here
    await case.feed(forwarded(4, follow_up=True), at(2025, 10, 20))
    await case.feed(forwarded(5, follow_up=True), at(2025, 10, 21))  # a third rating: left
    [row] = await sup.rows(orm.evaluations)
    assert (row["rating"], row["follow_up_rating"]) == (2, 4)
    events = await sup.emitted("evaluation_submitted")
    assert [(e.evaluation_submitted.rating, e.evaluation_submitted.follow_up) for e in events] == [
        (2, False),
        (4, True),
    ]


async def test_the_applicant_reads_back_the_rating_and_whether_a_follow_up_is_open(sup: Supervision) -> None:
    api = sup.api()
    code = code_digest("K7Q2M9XA")
    await concluded(sup, "EV-9", query_code_digest=code)

    def asked(digest: str = code) -> supervision_pb2.GetEvaluationRequest:
        return supervision_pb2.GetEvaluationRequest(case_number="EV-9", query_code_digest=digest)

    with pytest.raises(NotFound):  # not rated yet: the page offers the form
        await api.GetEvaluation(asked(), None)
    sup.clock.set(at(2025, 9, 30, 10))
    await api.SubmitEvaluation(rating("EV-9", 1, digest=code), None)
    with pytest.raises(PermissionDenied):
        await api.GetEvaluation(asked(DIGEST), None)
    bad = await api.GetEvaluation(asked(), None)
    assert (bad.first_rating, bad.follow_up_rating, bad.follow_up_allowed) == (1, 0, True)
    assert bad.submitted_at.seconds == int(at(2025, 9, 30, 10).timestamp())
    assert not bad.HasField("rectified_at")
    async with sup.uow() as uow:
        await evaluations.record_progress(uow, sup.ctx, evaluation_id=bad.evaluation_id, step="rectified")
        await uow.commit()
    await api.SubmitEvaluation(rating("EV-9", 4, digest=code), None)
    done = await api.GetEvaluation(asked(), None)
    assert (done.rating, done.first_rating, done.follow_up_rating, done.follow_up_allowed) == (4, 1, 4, False)
    assert done.HasField("rectified_at")
    with pytest.raises(NotFound):
        await api.GetEvaluation(supervision_pb2.GetEvaluationRequest(case_number="NOPE"), None)

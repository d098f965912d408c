"""Applicant evaluations (好差评, GB/T 39734-2020): ratings, and rectification of bad reviews.

Five levels: 1 very dissatisfied, 2 dissatisfied, 3 neutral, 4 satisfied, 5 very satisfied.  A bad
review (1-2) opens a rectification: call the applicant back within 1 working day and rectify within 15
working days; the applicant may then give one follow-up rating (a second SubmitEvaluation on the case).

Only the applicant may rate: an evaluation carries the digest of the case's query code, checked against
the digest intake put in `case_accepted` (a wrong code is refused, the first evaluation too). A case
accepted before intake sent the digest has none stored: there the first evaluation's digest is trusted
and guards the follow-up (trust on first use), the only way such a case can still be evaluated.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from onestop.events.v1 import events_pb2
from services.common import ratings
from services.common.calendar import CalendarMissing
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.outbox import UnitOfWork
from services.supervision import orm, repository
from services.supervision.clocks import SupervisionContext, raise_calendar_missing

BAD_REVIEW_MAX = 2
CALLBACK_DAYS = 1
RECTIFY_DAYS = 15


def _row(raw: Any) -> dict[str, Any]:
    return dict(raw)


def _validate(*, case_number: str, rating: int, tags: list[str], text: str) -> None:
    if not case_number:
        raise InvalidArgument("case_number is required", field="case_number", zh="请填写报件编号")
    ratings.validate(rating=rating, tags=tags, text=text)


async def _case(uow: UnitOfWork, case_number: str, query_code_digest: str) -> dict[str, Any]:
    case = await repository.get_case(uow.conn, case_number=case_number, lock=True)
    if case is None:
        raise NotFound(
            f"no case {case_number} is known here", zh=f"本中心未查到报件编号为 {case_number} 的报件"
        )
    stored = case["query_code_digest"]
    if stored and not hmac.compare_digest(stored, query_code_digest.strip().lower()):
        raise PermissionDenied(
            "the query code does not match this case", zh="查询码与该报件不符，请核对后重新输入"
        )
    _check_closed(case)
    return case


def _check_closed(case: dict[str, Any]) -> None:
    if case["status"] not in ("concluded", "withdrawn"):
        raise FailedPrecondition(
            f"case {case['case_number']} is not concluded yet; it can be evaluated afterwards",
            zh=f"报件 {case['case_number']} 尚未办结，办结后方可评价",
        )


async def submit(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    *,
    case_number: str,
    query_code_digest: str,
    rating: int,
    tags: list[str],
    text: str,
) -> dict[str, Any]:
    """Rate a concluded case; a bad review opens a rectification; a second rating is its follow-up."""
    tags, text = ratings.clean(tags, text)
    _validate(case_number=case_number, rating=rating, tags=tags, text=text)
    case = await _case(uow, case_number, query_code_digest)
    # A case accepted before case_accepted carried the digest: the first evaluator's guards the follow-up.
    trusted = "" if case["query_code_digest"] else query_code_digest.strip().lower()
    return await _record(
        uow, ctx, case, rating=rating, tags=tags, text=text, now=ctx.clock.now(), trust_digest=trusted
    )


async def get(uow: UnitOfWork, *, case_number: str, query_code_digest: str) -> dict[str, Any]:
    """The applicant's evaluation of a case (NotFound while there is none; the query code vouches)."""
    if not case_number:
        raise InvalidArgument("case_number is required", field="case_number", zh="请填写报件编号")
    case = await repository.get_case(uow.conn, case_number=case_number)
    if case is None:
        raise NotFound(
            f"no case {case_number} is known here", zh=f"本中心未查到报件编号为 {case_number} 的报件"
        )
    stored = case["query_code_digest"]
    if not stored:  # set by case_accepted, or by the first evaluation (see the module's docstring)
        raise NotFound(f"case {case_number} has not been evaluated", zh=f"报件 {case_number} 尚未评价")
    if not hmac.compare_digest(stored, query_code_digest.strip().lower()):
        raise PermissionDenied(
            "the query code does not match this case", zh="查询码与该报件不符，请核对后重新输入"
        )
    row = await _evaluation_of(uow, case["case_id"])
    if row is None:
        raise NotFound(f"case {case_number} has not been evaluated", zh=f"报件 {case_number} 尚未评价")
    return row


async def record_forwarded(
    uow: UnitOfWork, ctx: SupervisionContext, case: dict[str, Any], body: events_pb2.EvaluationForwarded
) -> dict[str, Any]:
    """Record the rating of a case decided here that its applicant gave at the child center (intake
    checked the child's certificate and that the case is its own; the child checked the query code)."""
    tags, text = ratings.clean(list(body.tags), body.text)
    ratings.validate(rating=body.rating, tags=tags, text=text)
    _check_closed(case)
    return await _record(uow, ctx, case, rating=body.rating, tags=tags, text=text, now=ctx.clock.now())


async def _evaluation_of(uow: UnitOfWork, case_id: str) -> dict[str, Any] | None:
    e = orm.evaluations
    raw = (await uow.conn.execute(select(e).where(e.c.case_id == case_id))).mappings().first()
    return None if raw is None else _row(raw)


async def _record(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    case: dict[str, Any],
    *,
    rating: int,
    tags: list[str],
    text: str,
    now: datetime,
    trust_digest: str = "",
) -> dict[str, Any]:
    """The case's first rating (then `trust_digest`, if given, becomes its query code digest), or its
    follow-up; either way evaluation_submitted."""
    existing = await _evaluation_of(uow, case["case_id"])
    if existing is not None:
        row = await _follow_up(uow, existing, rating=rating, now=now)
    else:
        if trust_digest:
            await repository.upsert_case(
                uow.conn, case_id=case["case_id"], now=now, query_code_digest=trust_digest
            )
        row = await _first(uow, ctx, case, rating=rating, tags=tags, text=text, now=now)
    uow.emit(
        ctx.event(
            events_pb2.EvaluationSubmitted(
                rating=rating, tags=tags, text=text, follow_up=existing is not None
            ),
            case_id=case["case_id"],
            case_number=case["case_number"],
        )
    )
    return row


async def _first(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    case: dict[str, Any],
    *,
    rating: int,
    tags: list[str],
    text: str,
    now: datetime,
) -> dict[str, Any]:
    case_number = case["case_number"]
    bad = rating <= BAD_REVIEW_MAX
    callback_due = rectify_due = None
    if bad:
        try:
            callback_due = ctx.calendar.due_instant(now, CALLBACK_DAYS, center=ctx.center)
            rectify_due = ctx.calendar.due_instant(now, RECTIFY_DAYS, center=ctx.center)
        except CalendarMissing as exc:
            await raise_calendar_missing(uow, ctx, exc.year, detail=f"rectification of case {case_number}")
    row = {
        "evaluation_id": str(uuid.uuid4()),
        "case_id": case["case_id"],
        "case_number": case_number,
        "center": case["center"],
        "matter_code": case["matter_code"],
        "rating": rating,
        "tags": tags,
        "text": text,
        "submitted_at": now,
        "rectification": bad,
        "callback_due": callback_due,
        "rectify_due": rectify_due,
        "called_back_at": None,
        "rectified_at": None,
        "follow_up_rating": None,
        "follow_up_at": None,
    }
    await uow.conn.execute(orm.evaluations.insert().values(**row))
    return row


def follow_up_allowed(row: dict[str, Any]) -> bool:
    """A bad review was rectified and the applicant has not yet given the one follow-up rating."""
    return bool(row["rectification"]) and row["follow_up_rating"] is None


async def _follow_up(uow: UnitOfWork, row: dict[str, Any], *, rating: int, now: datetime) -> dict[str, Any]:
    if not follow_up_allowed(row):
        if row["rectification"]:
            raise AlreadyExists(
                f"case {row['case_number']} already has its follow-up rating",
                zh=f"报件 {row['case_number']} 已在整改后再次评价过，不能重复评价",
            )
        raise AlreadyExists(
            f"case {row['case_number']} has already been evaluated",
            zh=f"报件 {row['case_number']} 已评价过，不能重复评价",
        )
    await uow.conn.execute(
        update(orm.evaluations)
        .where(orm.evaluations.c.evaluation_id == row["evaluation_id"])
        .values(follow_up_rating=rating, follow_up_at=now)
    )
    row.update(follow_up_rating=rating, follow_up_at=now)
    return row


async def record_progress(
    uow: UnitOfWork, ctx: SupervisionContext, *, evaluation_id: str, step: str
) -> dict[str, Any]:
    """Mark a rectification's call back ("called_back") or its completion ("rectified")."""
    column = {"called_back": "called_back_at", "rectified": "rectified_at"}.get(step)
    if column is None:
        raise InvalidArgument(
            "step must be called_back or rectified",
            field="step",
            zh="整改进度只能登记为已回访 (called_back) 或已整改 (rectified)",
        )
    raw = (
        (
            await uow.conn.execute(
                select(orm.evaluations).where(orm.evaluations.c.evaluation_id == evaluation_id)
            )
        )
        .mappings()
        .first()
    )
    if raw is None:
        raise NotFound(f"no evaluation {evaluation_id}", zh="未找到该评价")
    row = _row(raw)
    if not row["rectification"]:
        raise FailedPrecondition("only a bad review has a rectification", zh="只有差评才需要整改")
    if row[column] is None:
        now = ctx.clock.now()
        await uow.conn.execute(
            update(orm.evaluations)
            .where(orm.evaluations.c.evaluation_id == evaluation_id)
            .values({column: now})
        )
        row[column] = now
    return row


async def overdue_rectifications(uow: UnitOfWork, *, now: datetime) -> list[dict[str, Any]]:
    """Bad reviews whose call back or rectification is late."""
    e = orm.evaluations
    stmt = select(e).where(
        e.c.rectification.is_(True),
        ((e.c.called_back_at.is_(None)) & (e.c.callback_due < now))
        | ((e.c.rectified_at.is_(None)) & (e.c.rectify_due < now)),
    )
    return [_row(r) for r in (await uow.conn.execute(stmt.order_by(e.c.submitted_at))).mappings()]

"""Delivery of a concluded case's result with the receiver's confirmation; emits case_delivered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import from_timestamp
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.outbox import UnitOfWork
from services.intake import convenience_repository as repo
from services.intake.convenience import ConvenienceContext, load_case
from services.intake.convert import to_json

CS = common_pb2
METHODS = ("handed_over", "posted", "picked_up")
METHODS_ZH = {"handed_over": "当面交付", "posted": "邮寄", "picked_up": "本人领取"}  # as gateway/labels.py
CLOCK_SKEW = timedelta(minutes=5)


def _check(req: Any, now: datetime) -> datetime:
    if not req.case_id and not req.case_number:
        raise InvalidArgument(
            "a delivery needs a case: case_id or case_number is required",
            field="case_id",
            zh="登记送达须指明报件：请提供报件编号",
        )
    if req.method not in METHODS:
        raise InvalidArgument(
            f"method must be one of {', '.join(METHODS)}; got {req.method[:40]!r}",
            field="method",
            zh=f"送达方式须为{'、'.join(METHODS_ZH[m] for m in METHODS)}之一",
        )
    if not req.receiver_name.strip():
        raise InvalidArgument(
            "the receiver's name is required (their confirmation)",
            field="receiver_name",
            zh="请填写签收人姓名（作为其签收确认）",
        )
    if not req.by.username:
        raise PermissionDenied("a named person records the delivery (R22)", zh="送达须由具名的经办人员登记")
    if not req.HasField("confirmed_at"):
        raise InvalidArgument(
            "confirmed_at (when the receiver confirmed) is required",
            field="confirmed_at",
            zh="请填写签收时间",
        )
    confirmed = from_timestamp(req.confirmed_at)
    if confirmed > now + CLOCK_SKEW:
        raise InvalidArgument(
            "confirmed_at is in the future", field="confirmed_at", zh="签收时间不能晚于当前时间"
        )
    return confirmed


async def record_delivery(uow: UnitOfWork, ctx: ConvenienceContext, req: Any) -> dict[str, Any]:
    """Record how the result reached the applicant and who confirmed receiving it."""
    now = ctx.now()
    confirmed = _check(req, now)
    case = await load_case(uow, req.case_id, req.case_number)
    if case["status"] != CS.CASE_STATUS_CONCLUDED:
        raise FailedPrecondition(
            f"case {case['case_number'] or case['case_id']} is not concluded; there is no result to deliver yet",
            zh=f"{_case_zh(case)}尚未办结，还没有可送达的办理结果",
        )
    if case["outcome"] == CS.OUTCOME_WITHDRAWN:
        raise FailedPrecondition(
            f"case {case['case_number']} was withdrawn; there is no result to deliver",
            zh=f"{_case_zh(case)}已撤回，没有可送达的办理结果",
        )
    if await repo.get_delivery(uow.conn, case["case_id"]):
        raise AlreadyExists(
            f"the result of case {case['case_number']} was already delivered",
            zh=f"{_case_zh(case)}的办理结果已经送达",
        )
    row = {
        "case_id": case["case_id"],
        "case_number": case["case_number"] or "",
        "method": req.method,
        "receiver_name": req.receiver_name.strip(),
        "confirmed_at": confirmed,
        "by": to_json(req.by),
        "recorded_at": now,
        "note": req.note,
    }
    await repo.insert(uow.conn, repo.t.deliveries, row)
    body = events_pb2.CaseDelivered(method=req.method, receiver=row["receiver_name"], by=req.by)
    uow.emit(ctx.intake.event(body, case))  # intake's own consumer puts it on the timeline
    return row


def _case_zh(case: dict[str, Any]) -> str:
    """The case as a Chinese refusal names it: by its number once it has one (its id is internal)."""
    return f"报件 {case['case_number']} " if case["case_number"] else "该报件"


def age_days(concluded_at: datetime | None, now: datetime) -> float:
    """Days since the conclusion, to a tenth."""
    if concluded_at is None:
        return 0.0
    return round((now - concluded_at).total_seconds() / 86400, 1)

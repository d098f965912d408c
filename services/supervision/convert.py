"""Protobuf views of supervision's rows (the gRPC edge's only dependency on the stubs' shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from onestop.common.v1 import common_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import CalendarMissing, WorkingCalendar
from services.common.events import timestamp
from services.supervision import evaluations, model, repository, stats


def clock_message(
    row: dict[str, Any], *, now: datetime, cal: WorkingCalendar, center: str
) -> common_pb2.Clock:
    """A clock as people see it at ``now``: state, remaining and paused working days."""
    clock = repository.to_model(row)
    until = clock.stopped_at or now
    try:
        state = model.state_at(clock, now, cal, center=center)
        paused = model.paused_days(clock, until, cal, center=center)
        remaining = (
            cal.remaining_working_days(now, clock.due_at, center=center)
            if clock.due_at is not None and clock.stopped_at is None
            else 0
        )
    except CalendarMissing:
        state, paused, remaining = model.UNSPECIFIED, 0, 0
    msg = common_pb2.Clock(
        clock_id=row["clock_id"],
        case_number=row["case_number"],
        task_id=row["task_id"],
        department=row["department"],
        state=common_pb2.ClockState.ValueType(state),
        limit_days=row["limit_days"],
        extension_days=row["extension_days"],
        paused_days=paused,
        remaining_working_days=remaining,
        urged=row["urged_at"] is not None,
        deemed_approval_allowed=clock.may_be_deemed,
    )
    msg.started_at.CopyFrom(timestamp(row["started_at"]))
    if row["due_at"] is not None:
        msg.due_at.CopyFrom(timestamp(row["due_at"]))
    if row["urged_at"] is not None:
        msg.urged_at.CopyFrom(timestamp(row["urged_at"]))
    return msg


def accountability_message(row: dict[str, Any]) -> supervision_pb2.AccountabilityRecord:
    """An accountability record."""
    msg = supervision_pb2.AccountabilityRecord(
        case_number=row["case_number"],
        task_id=row["task_id"],
        department=row["department"],
        window=row["window"],
        staff=list(row["staff"] or []),
    )
    for name in ("due_at", "urged_at", "deemed_at"):
        if row[name] is not None:
            getattr(msg, name).CopyFrom(timestamp(row[name]))
    return msg


def evaluation_message(row: dict[str, Any]) -> supervision_pb2.Evaluation:
    """An evaluation (the follow-up rating, once given, is the one shown)."""
    rating = row["follow_up_rating"] if row["follow_up_rating"] is not None else row["rating"]
    msg = supervision_pb2.Evaluation(
        evaluation_id=row["evaluation_id"],
        case_number=row["case_number"],
        rating=rating,
        rectification_opened=row["rectification"],
        first_rating=row["rating"],
        follow_up_rating=row["follow_up_rating"] or 0,
        follow_up_allowed=evaluations.follow_up_allowed(row),
    )
    for name in ("callback_due", "rectify_due", "submitted_at", "called_back_at", "rectified_at"):
        if row[name] is not None:
            getattr(msg, name).CopyFrom(timestamp(row[name]))
    return msg


def statistics_row(row: stats.Row) -> supervision_pb2.StatisticsRow:
    """One group's figures."""
    return supervision_pb2.StatisticsRow(
        key=row.key,
        accepted=row.accepted,
        concluded=row.concluded,
        on_time=row.on_time,
        on_time_rate=round(row.on_time_rate, 4),
        avg_working_days=round(row.avg_working_days, 2),
        p90_working_days=row.p90_working_days,
        overdue=row.overdue,
        urged=row.urged,
        deemed_approved=row.deemed_approved,
        evaluations=row.evaluations,
        avg_rating=round(row.avg_rating, 2),
        forwarded=row.forwarded,
        forwarded_waiting=row.forwarded_waiting,
        forwarded_approved=row.forwarded_approved,
        forwarded_rejected=row.forwarded_rejected,
        forwarded_withdrawn=row.forwarded_withdrawn,
    )

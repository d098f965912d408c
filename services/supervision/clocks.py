"""Supervision's context and the clock operations shared by event handlers, the tick and recomputes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from onestop.events.v1 import events_pb2
from services.common.calendar import CalendarMissing, WorkingCalendar
from services.common.clock import Clock
from services.common.db import insert_ignore
from services.common.events import new_event
from services.common.logging import get_logger
from services.common.outbox import Outbox, UnitOfWork
from services.supervision import model, orm, repository, store

log = get_logger(__name__)


class DeemApprover(Protocol):
    """Whoever applies the deemed-approval seal (approval, over gRPC; a fake in tests)."""

    async def deem_approve(self, task_id: str) -> bool: ...


@dataclass
class SupervisionContext:
    """Supervision's collaborators, wired in bootstrap."""

    center: str
    clock: Clock
    calendar: WorkingCalendar
    approval: DeemApprover
    tick_batch: int = 1000
    outbox: Outbox | None = None  # woken after a tick wrote events (the tick writes them itself)

    def event(self, body: Any, *, case_id: str = "", case_number: str = "") -> events_pb2.Envelope:
        """A new event produced by supervision."""
        return new_event(
            center=self.center,
            producer="supervision",
            at=self.clock.now(),
            body=body,
            case_id=case_id,
            case_number=case_number,
        )


@dataclass(frozen=True)
class Computed:
    """A clock with its due instant set, when it next needs the tick, and a missing calendar year."""

    clock: model.Clock
    next_action_at: datetime | None
    missing_year: int = 0


def compute(ctx: SupervisionContext, clock: model.Clock) -> Computed:
    """Due instant and next action of a clock; a missing calendar year leaves both unset."""
    try:
        with_due = replace(clock, due_at=model.due(clock, ctx.calendar, center=ctx.center))
        return Computed(with_due, model.next_action_at(with_due, ctx.calendar, center=ctx.center))
    except CalendarMissing as exc:
        due_at = clock.due_at if clock.stopped_at is not None else None
        return Computed(replace(clock, due_at=due_at), None, exc.year)


async def raise_calendar_missing(uow: UnitOfWork, ctx: SupervisionContext, year: int, *, detail: str) -> None:
    """Record the alarm and emit calendar_missing, once per year until it is cleared."""
    inserted = await insert_ignore(
        uow.conn,
        orm.alarms,
        {
            "kind": "calendar_missing",
            "key": str(year),
            "raised_at": ctx.clock.now(),
            "detail": detail,
            "cleared_at": None,
        },
    )
    if inserted:
        log.error("calendar missing: clocks cannot be computed", year=year, detail=detail)
        uow.emit(ctx.event(events_pb2.CalendarMissing(year=year)))


async def save(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    row: dict[str, Any],
    clock: model.Clock,
    *,
    cause: str,
    at: datetime,
    detail: str = "",
    event_id: str = "",
    always: bool = True,
) -> None:
    """Recompute, write and record a changed clock (``always=False``: record only a moved due)."""
    done = compute(ctx, clock)
    if done.missing_year:
        await raise_calendar_missing(uow, ctx, done.missing_year, detail=f"clock {row['clock_id']} ({cause})")
    next_at = done.next_action_at
    if clock.deem_state == "pending" and clock.stopped_at is None:
        # A claimed deemed approval keeps its retry slot, except while paused (never deemed while paused).
        next_at = None if clock.paused else (row["next_action_at"] or ctx.clock.now())
    values = repository.model_values(done.clock) | {
        "next_action_at": next_at,
        "calendar_missing": done.missing_year,
        "updated_at": ctx.clock.now(),
    }
    old_due = row["due_at"]
    row.update(values)
    store.save_clock(uow, row)
    if always or done.clock.due_at != old_due:
        repository.add_change(
            uow,
            clock_id=row["clock_id"],
            case_number=row["case_number"],
            at=at,
            cause=cause,
            old_due=old_due,
            new_due=done.clock.due_at,
            detail=detail,
            event_id=event_id,
        )


def new_row(
    case: dict[str, Any],
    *,
    clock_id: str,
    task_id: str,
    department: str,
    window: str,
    started_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """A new clock's whole row, taking the case's limits (computed by `start`)."""
    return {
        "clock_id": clock_id,
        "case_id": case["case_id"],
        "case_number": case["case_number"] or "",
        "task_id": task_id,
        "center": case["center"],
        "matter_code": case["matter_code"],
        "department": department,
        "window": window,
        "accepted_at": case["accepted_at"] or started_at,
        "started_at": started_at,
        "limit_days": case["promised_days"],
        "statutory_days": case["statutory_days"],
        "key_deadline": case["key_deadline"],
        "extension_days": 0,
        "threshold_days": case["threshold_days"],
        "deemed_allowed": case["deemed_allowed"],
        "pauses": [],
        "paused": False,
        "due_at": None,
        "calendar_missing": 0,
        "warned_level": 0,
        "urged_at": None,
        "deem_state": "",
        "claimants": [],
        "decided_by": "",
        "stopped_at": None,
        "outcome": 0,
        "working_days": None,
        "next_action_at": None,
        "updated_at": now,
    }


async def start(uow: UnitOfWork, ctx: SupervisionContext, row: dict[str, Any], *, event_id: str) -> bool:
    """Insert a new clock (computed) and record its start; False when it already existed."""
    done = compute(ctx, repository.to_model(row))
    row.update(
        repository.model_values(done.clock),
        next_action_at=done.next_action_at,
        calendar_missing=done.missing_year,
    )
    if not await store.add_clock(uow, row):
        return False
    if done.missing_year:
        await raise_calendar_missing(uow, ctx, done.missing_year, detail=f"clock {row['clock_id']} (started)")
    repository.add_change(
        uow,
        clock_id=row["clock_id"],
        case_number=row["case_number"],
        at=row["started_at"],
        cause="started",
        old_due=None,
        new_due=row["due_at"],
        detail=f"limit {row['limit_days']} working days",
        event_id=event_id,
    )
    return True


async def stop(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    row: dict[str, Any],
    *,
    at: datetime,
    outcome: int,
    decided_by: str = "",
    cause: str,
    event_id: str,
) -> None:
    """Stop a clock for good, keeping the working days it used (pauses excluded)."""
    if row["stopped_at"] is not None:
        return
    clock = replace(repository.to_model(row), stopped_at=at)
    clock = replace(clock, pauses=tuple(replace(p, end=at) if p.end is None else p for p in clock.pauses))
    try:
        used: int | None = model.working_days_used(clock, at, ctx.calendar, center=ctx.center)
    except CalendarMissing:
        used = None
    values = repository.model_values(clock) | {
        "outcome": outcome,
        "decided_by": decided_by or row["decided_by"],
        "working_days": used,
        "next_action_at": None,
        "updated_at": ctx.clock.now(),
    }
    row.update(values)
    store.save_clock(uow, row)
    repository.add_change(
        uow,
        clock_id=row["clock_id"],
        case_number=row["case_number"],
        at=at,
        cause=cause,
        old_due=row["due_at"],
        new_due=row["due_at"],
        detail=f"outcome {outcome}, {used} working days used",
        event_id=event_id,
    )

"""Approval's consumer: the events of other services it applies, a batch's cases read at once."""

from __future__ import annotations

from collections.abc import Sequence

from onestop.events.v1 import events_pb2
from services.approval import calendar_years, model, repository
from services.approval.handlers import ApprovalContext, _advance, _conclude_task, _due, _emit_opened, _open
from services.common.clock import from_timestamp
from services.common.events import kind
from services.common.outbox import UnitOfWork


async def on_case_routed(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """Create the case's tasks; the first ones open at once, prerequisites wait (R4, R8, R11)."""
    body = env.case_routed
    if await repository.locked_case(uow, env.case_id):
        return
    accepted_at = (
        from_timestamp(body.accepted_at) if body.HasField("accepted_at") else from_timestamp(env.occurred_at)
    )
    now = ctx.clock.now()
    plan = {
        "case_id": env.case_id,
        "case_number": env.case_number,
        "matter_code": body.matter_code,
        "accepted_at": accepted_at,
        "promised_limit_days": body.promised_limit_days,
        "key_project": body.key_project,
        "preliminary_review": body.preliminary_review,
        "supplement_round": 0,
        "state": "open",
        "outcome": 0,
        "updated_at": now,
        "special_procedures": list(body.special_procedures),
    }
    due = _due(ctx, accepted_at, body.promised_limit_days)
    priority = model.KEY_PROJECT_PRIORITY if body.key_project else 0
    rows = [
        {
            "task_id": t.task_id,
            "case_id": env.case_id,
            "case_number": env.case_number,
            "matter_code": body.matter_code,
            "department": t.department,
            "window": t.window,
            "grp": t.group,
            "prerequisites": list(t.prerequisites),
            "lead": t.lead,
            # A task that may start at once is inserted open (as _open would leave it): no second write.
            "status": model.PENDING if opens else model.WAITING,
            "priority": priority,
            "due_at": due,
            "claimed_by": None,
            "decided_by": None,
            "opinion": "",
            "reasons": [],
            "items": [],
            "extension_days": 0,
            "special_procedure": "",
            "created_at": now,
            "opened_at": now if opens and not body.on_the_spot else None,
            "decided_at": None,
        }
        for t in body.tasks
        for opens in [not t.prerequisites or body.key_project]
    ]
    repository.save_plan(uow, plan)
    for row in rows:
        repository.save_task(uow, row)
    repository.remember_case(uow, plan, rows)
    if body.on_the_spot:
        for row in rows:
            await _conclude_task(uow, ctx, row, status=model.APPROVED, by=body.accepted_by, reasons=[])
        await _advance(uow, ctx, plan, rows)
        return
    for row in rows:
        if row["status"] == model.PENDING:
            _emit_opened(uow, ctx, row)


async def on_case_supplemented(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """The applicant answered the merged notice: the same tasks resume."""
    case = await repository.locked_case(uow, env.case_id)
    for row in case[1] if case else []:
        if row["status"] == model.SUPPLEMENT:
            await _open(uow, ctx, row)


async def on_case_withdrawn(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """Withdrawal cancels every task still in progress."""
    case = await repository.locked_case(uow, env.case_id)
    if case is None or case[0]["state"] != "open":
        return
    plan, rows = case
    for row in rows:
        if row["status"] not in model.DONE:
            row["status"] = model.CANCELLED
            repository.save_task(uow, row)
    plan.update(state="withdrawn", outcome=4, updated_at=ctx.clock.now())
    repository.save_plan(uow, plan)


async def on_key_project(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """A key project jumps every queue and opens all departments at once (joint review, R2)."""
    case = await repository.locked_case(uow, env.case_id)
    if case is None:
        return
    plan, rows = case
    plan["key_project"] = True
    repository.save_plan(uow, plan)
    for row in rows:
        row["priority"] = model.KEY_PROJECT_PRIORITY
        repository.save_task(uow, row)
        if row["status"] == model.WAITING:
            await _open(uow, ctx, row)


EVENT_HANDLERS = {
    "case_routed": on_case_routed,
    "case_supplemented": on_case_supplemented,
    "case_withdrawn": on_case_withdrawn,
    "key_project_designated": on_key_project,
    "calendar_year_loaded": calendar_years.on_calendar_year_loaded,
}


async def on_event(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """Dispatch a consumed event."""
    await EVENT_HANDLERS[kind(env)](uow, ctx, env)


async def prefetch(uow: UnitOfWork, envs: Sequence[events_pb2.Envelope]) -> None:
    """Before a consumed batch: every event approval consumes is about one case, so lock and read the
    batch's cases at once (in case id order) for its handlers."""
    await repository.load_cases(uow, case_ids=sorted({env.case_id for env in envs}))

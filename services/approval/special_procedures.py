"""Special procedures (特别程序): hearings, expert review, testing ... whose time is not counted.

行政许可法 Art. 45: the time a hearing, tendering, auction, testing, inspection, quarantine, appraisal or
expert review takes is not counted in the licensing period, and the applicant is told in writing how long
it will take. A task's window starts one of the procedures the matter's catalogue entry allows, with a
reason and the working days it expects; supervision pauses the task's clock and the case's while it runs
and notification sends the applicant the written notice. The window ends it with what it found; the task's
due date moves by the working days it covered, and only then may the task be decided.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.approval import model, orm, repository
from services.approval.convert import actor_json, view, who
from services.approval.handlers import ApprovalContext, audit, procedure_zh
from services.common import special_procedures as names
from services.common.calendar import CalendarError
from services.common.clock import aware
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import set_instant
from services.common.outbox import UnitOfWork

MAX_EXPECTED_DAYS = 250  # about a year of working days: a longer one is a mistake in the form
RUNNING, ENDED = "running", "ended"


def _zh(code: str) -> str:
    """A procedure's Chinese name in a refusal ("听证"; the code itself when unknown)."""
    return names.name(code, "zh-CN")


async def start(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.StartSpecialProcedureRequest
) -> dict[str, Any]:
    """The task's window starts a procedure the matter allows: its clocks stop, the applicant is told."""
    plan, rows = await repository.case_of_task(uow, req.task_id)
    row = repository.task_in((plan, rows), req.task_id)
    model.check_window_actor(view(row), who(req.by), action="start a special procedure on")
    model.check_open(view(row), action="start a special procedure on")
    procedure = req.procedure.strip()
    allowed = list(plan.get("special_procedures") or [])
    if not allowed:
        raise FailedPrecondition(
            f"matter {plan['matter_code']} allows no special procedure",
            zh=f"事项 {plan['matter_code']} 不适用特别程序",
        )
    if procedure not in allowed:
        raise InvalidArgument(
            f"matter {plan['matter_code']} allows only {', '.join(allowed)}, not {procedure or '(none)'}",
            field="procedure",
            zh=f"事项 {plan['matter_code']} 只适用{'、'.join(_zh(p) for p in allowed)}，"
            f"不适用{_zh(procedure) if procedure else '未选择的特别程序'}",
        )
    if not req.reason.strip():
        raise InvalidArgument(
            "a special procedure needs a reason", field="reason", zh="启动特别程序须写明理由"
        )
    if not 1 <= req.expected_days <= MAX_EXPECTED_DAYS:
        raise InvalidArgument(
            f"expected_days must be between 1 and {MAX_EXPECTED_DAYS} working days",
            field="expected_days",
            zh=f"特别程序预计所需时间应在 1 至 {MAX_EXPECTED_DAYS} 个工作日之间",
        )
    if row["special_procedure"]:
        raise FailedPrecondition(
            f"task {req.task_id} is already in a {row['special_procedure']}; end it first",
            zh=f"该审批任务正在进行{procedure_zh(row['special_procedure'])}，请先结束后再启动新的特别程序",
        )
    now = ctx.clock.now()
    try:
        expected_end = ctx.calendar.due_instant(now, req.expected_days)
    except CalendarError as exc:
        raise FailedPrecondition(
            f"cannot tell the applicant when it ends: {exc}",
            zh="工作日历缺少所需年份的数据，无法告知申请人特别程序何时结束，请联系系统管理员",
        ) from exc
    proc = {
        "procedure_id": str(uuid.uuid4()),
        "task_id": req.task_id,
        "case_number": row["case_number"],
        "department": row["department"],
        "procedure": procedure,
        "reason": req.reason.strip(),
        "expected_days": req.expected_days,
        "expected_end": expected_end,
        "state": RUNNING,
        "started_by": actor_json(req.by),
        "started_at": now,
        "ended_by": None,
        "ended_at": None,
        "result": "",
    }
    await uow.conn.execute(orm.special_procedures.insert().values(**proc))
    row["special_procedure"] = procedure
    repository.save_task(uow, row)
    started = events_pb2.SpecialProcedureStarted(
        task_id=req.task_id,
        procedure=procedure,
        reason=proc["reason"],
        by=req.by,
        procedure_id=proc["procedure_id"],
        expected_days=req.expected_days,
        department=row["department"],
    )
    set_instant(started.expected_end, expected_end)
    uow.emit(ctx.event(started, case_id=row["case_id"], case_number=row["case_number"]))
    await audit(
        uow,
        ctx,
        req.by,
        "start_special_procedure",
        row["case_number"],
        task_id=req.task_id,
        procedure=procedure,
        expected_days=req.expected_days,
        reason=proc["reason"],
    )
    return proc


async def end(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.EndSpecialProcedureRequest
) -> dict[str, Any]:
    """The window ends a running procedure with what it found; the task's due date moves by its days."""
    proc = await _get(uow, req.procedure_id)
    plan, rows = await repository.case_of_task(uow, proc["task_id"])
    row = repository.task_in((plan, rows), proc["task_id"])
    proc = await _get(uow, req.procedure_id)  # re-read under the case lock
    actor = who(req.by)
    if actor.role not in model.WINDOW_ROLES or actor.department != proc["department"]:
        raise PermissionDenied(
            f"only department {proc['department']}'s window ends its special procedure",
            zh=f"只有 {proc['department']} 部门窗口人员可以结束该特别程序",
        )
    if not actor.username:
        raise InvalidArgument(
            "the acting staff member (by.username) is required", field="by.username", zh="缺少经办人员"
        )
    if proc["state"] != RUNNING:
        raise FailedPrecondition(
            f"the {proc['procedure']} of task {proc['task_id']} has already ended",
            zh=f"该审批任务的{procedure_zh(proc['procedure'])}已经结束",
        )
    if not req.result.strip():
        raise InvalidArgument(
            "say what the special procedure found", field="result", zh="请填写特别程序的结果"
        )
    now = ctx.clock.now()
    proc.update(state=ENDED, ended_by=actor_json(req.by), ended_at=now, result=req.result.strip())
    await uow.conn.execute(
        orm.special_procedures.update()
        .where(orm.special_procedures.c.procedure_id == req.procedure_id)
        .values(state=ENDED, ended_by=proc["ended_by"], ended_at=now, result=proc["result"])
    )
    row["special_procedure"] = ""
    if row["status"] not in model.DONE:
        row["due_at"] = await _due_after_procedures(uow, ctx, plan, row)
    repository.save_task(uow, row)
    uow.emit(
        ctx.event(
            events_pb2.SpecialProcedureEnded(
                task_id=row["task_id"],
                by=req.by,
                procedure_id=req.procedure_id,
                procedure=proc["procedure"],
                result=proc["result"],
                department=row["department"],
            ),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )
    await audit(
        uow,
        ctx,
        req.by,
        "end_special_procedure",
        row["case_number"],
        task_id=row["task_id"],
        procedure=proc["procedure"],
        result=proc["result"],
    )
    return proc


async def _get(uow: UnitOfWork, procedure_id: str) -> dict[str, Any]:
    stmt = select(orm.special_procedures).where(orm.special_procedures.c.procedure_id == procedure_id)
    found = (await uow.conn.execute(stmt)).mappings().first()
    if found is None:
        raise NotFound(f"no special procedure {procedure_id}", zh="未找到该特别程序")
    return dict(found)


async def _due_after_procedures(
    uow: UnitOfWork, ctx: ApprovalContext, plan: dict[str, Any], row: dict[str, Any]
) -> Any:
    """The task's due instant with every ended procedure of it not counted (supervision's clock agrees)."""
    stmt = select(orm.special_procedures.c.started_at, orm.special_procedures.c.ended_at).where(
        orm.special_procedures.c.task_id == row["task_id"], orm.special_procedures.c.state == ENDED
    )
    pauses = [(a, b) for s, e in (await uow.conn.execute(stmt)).all() if (a := aware(s)) and (b := aware(e))]
    accepted = aware(plan["accepted_at"]) or ctx.clock.now()
    try:
        return ctx.calendar.due_instant(accepted, plan["promised_limit_days"] + row["extension_days"], pauses)
    except CalendarError:
        return row["due_at"]


async def listed(conn: Any, *, case_number: str = "", task_id: str = "") -> list[dict[str, Any]]:
    """A case's (or a task's) special procedures, oldest first."""
    if not case_number and not task_id:
        raise InvalidArgument(
            "case_number or task_id is required", field="case_number", zh="请指定报件编号或审批任务"
        )
    t = orm.special_procedures
    stmt = select(t).where(t.c.case_number == case_number if case_number else t.c.task_id == task_id)
    return [dict(r) for r in (await conn.execute(stmt.order_by(t.c.started_at))).mappings()]


def message(proc: dict[str, Any]) -> approval_pb2.SpecialProcedure:
    """The protobuf view of a special procedure row."""
    msg = approval_pb2.SpecialProcedure(
        procedure_id=proc["procedure_id"],
        task_id=proc["task_id"],
        case_number=proc["case_number"],
        department=proc["department"],
        procedure=proc["procedure"],
        reason=proc["reason"],
        expected_days=proc["expected_days"],
        state=proc["state"],
        result=proc["result"] or "",
    )
    msg.started_by.CopyFrom(common_pb2.Actor(**(proc["started_by"] or {})))
    if proc.get("ended_by"):
        msg.ended_by.CopyFrom(common_pb2.Actor(**proc["ended_by"]))
    for name in ("expected_end", "started_at", "ended_at"):
        if (value := aware(proc.get(name))) is not None:
            set_instant(getattr(msg, name), value)
    return msg

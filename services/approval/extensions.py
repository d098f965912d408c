"""Extensions (延期) and opinions: requested at the window, decided by the head (R7)."""

from __future__ import annotations

import uuid
from typing import Any

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.approval import model, repository
from services.approval.convert import actor_json, view, who
from services.approval.handlers import ApprovalContext, _due, audit
from services.common.clock import aware
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.outbox import UnitOfWork

# An extension's decided states, as a Chinese refusal names them ("该延期申请" + this).
_EXTENSION_STATE_ZH = {"approved": "已批准", "refused": "已不予批准"}


async def request_extension(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.RequestExtensionRequest
) -> dict[str, Any]:
    """A window asks for more working days, with a reason."""
    row = repository.task_in(await repository.case_of_task(uow, req.task_id), req.task_id)
    model.check_window_actor(view(row), who(req.by), action="extend")
    pending = await repository.extensions(uow.conn, task_id=req.task_id, state="requested")
    model.check_extension_request(days=req.days, reason=req.reason, pending=bool(pending), task=view(row))
    ext = {
        "extension_id": str(uuid.uuid4()),
        "task_id": req.task_id,
        "case_number": row["case_number"],
        "department": row["department"],
        "days": req.days,
        "reason": req.reason.strip(),
        "state": "requested",
        "requested_by": actor_json(req.by),
        "decided_by": None,
        "decision_reason": "",
        "requested_at": ctx.clock.now(),
        "decided_at": None,
    }
    await repository.insert_extension(uow.conn, ext)
    uow.emit(
        ctx.event(
            events_pb2.ExtensionRequested(
                task_id=req.task_id,
                extension_id=ext["extension_id"],
                days=req.days,
                reason=ext["reason"],
                by=req.by,
            ),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )
    await audit(
        uow,
        ctx,
        req.by,
        "request_extension",
        row["case_number"],
        task_id=req.task_id,
        days=req.days,
        reason=req.reason,
    )
    return ext


async def decide_extension(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.DecideExtensionRequest
) -> dict[str, Any]:
    """The department head approves (the clock moves, the applicant is told in writing) or refuses."""
    ext = await repository.get_extension(uow.conn, req.extension_id)
    plan, rows = await repository.case_of_task(uow, ext["task_id"])
    row = repository.task_in((plan, rows), ext["task_id"])
    ext = await repository.get_extension(uow.conn, req.extension_id)  # re-read under the case lock
    if ext["state"] != "requested":
        raise FailedPrecondition(
            f"extension {req.extension_id} was already {ext['state']}",
            zh=f"该延期申请{_EXTENSION_STATE_ZH.get(ext['state'], '已处理')}，不能再次决定",
        )
    model.check_extension_decider(who=who(req.by), department=ext["department"])
    if not req.approve and not req.reason.strip():
        raise InvalidArgument("a refusal needs a reason", field="reason", zh="不予批准延期须写明理由")
    if row["status"] in model.DONE:
        raise FailedPrecondition(
            f"task {row['task_id']} is already {model.state_name(row['status'])}",
            zh=f"该审批任务{model.state_name_zh(row['status'])}，不能再决定延期",
        )
    now = ctx.clock.now()
    ext.update(
        state="approved" if req.approve else "refused",
        decided_by=actor_json(req.by),
        decision_reason=req.reason,
        decided_at=now,
    )
    await repository.update_extension(
        uow.conn,
        req.extension_id,
        state=ext["state"],
        decided_by=ext["decided_by"],
        decision_reason=req.reason,
        decided_at=now,
    )
    if req.approve:
        days = row["extension_days"] + ext["days"]
        due = _due(ctx, aware(plan["accepted_at"]) or now, plan["promised_limit_days"] + days)
        row.update(extension_days=days, due_at=due)
        repository.save_task(uow, row)
    uow.emit(
        ctx.event(
            events_pb2.ExtensionDecided(
                task_id=row["task_id"],
                extension_id=req.extension_id,
                approved=req.approve,
                days=ext["days"],
                by=req.by,
                reason=req.reason,
            ),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )
    await audit(
        uow,
        ctx,
        req.by,
        "approve_extension" if req.approve else "refuse_extension",
        row["case_number"],
        extension_id=req.extension_id,
        reason=req.reason,
    )
    return ext


async def add_opinion(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.AddOpinionRequest
) -> dict[str, Any]:
    """Add to the shared discussion record; any department of a joint review may speak."""
    row = await repository.get_task(uow.conn, req.task_id)
    if not req.text.strip():
        raise InvalidArgument("an opinion needs text", field="text", zh="请填写意见内容")
    if req.by.role not in model.WINDOW_ROLES:
        raise InvalidArgument(
            "opinions come from department windows", field="by.role", zh="只有部门窗口人员可以发表意见"
        )
    await repository.add_opinion(
        uow.conn,
        {
            "task_id": req.task_id,
            "case_id": row["case_id"],
            "author": actor_json(req.by),
            "text": req.text.strip(),
            "at": ctx.clock.now(),
        },
    )
    await audit(uow, ctx, req.by, "opinion", row["case_number"], task_id=req.task_id)
    return row


def extension_message(ext: dict[str, Any]) -> approval_pb2.Extension:
    """The protobuf view of an extension row."""
    msg = approval_pb2.Extension(
        extension_id=ext["extension_id"],
        task_id=ext["task_id"],
        days=ext["days"],
        reason=ext["reason"],
        state=ext["state"],
        case_number=ext["case_number"],
        department=ext["department"],
    )
    msg.requested_by.CopyFrom(common_pb2.Actor(**(ext["requested_by"] or {})))
    if ext.get("decided_by"):
        msg.decided_by.CopyFrom(common_pb2.Actor(**ext["decided_by"]))
    return msg

"""Approval's command handlers and the case's progress: queues, decisions, supplements, the join, seals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.approval import model, orm, repository
from services.approval.convert import actor_json, task_message, view, who
from services.common import special_procedures
from services.common.calendar import CalendarError, WorkingCalendar
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.events import new_event, timestamp
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.common.seal import seal

log = get_logger(__name__)
MANAGEMENT_OFFICE = "management_office"


def procedure_zh(code: str) -> str:
    """A special procedure as a Chinese refusal names it: "听证（特别程序）"."""
    return f"{special_procedures.name(code, 'zh-CN')}（特别程序）"


@dataclass
class ApprovalContext:
    """Approval's collaborators, wired in bootstrap."""

    center: str
    clock: Clock
    key: Ed25519PrivateKey
    calendar: WorkingCalendar

    def event(self, body: Any, *, case_id: str, case_number: str) -> events_pb2.Envelope:
        """A new event about a case."""
        return new_event(
            center=self.center,
            producer="approval",
            at=self.clock.now(),
            body=body,
            case_id=case_id,
            case_number=case_number,
        )


def _due(ctx: ApprovalContext, accepted_at: datetime, days: int) -> datetime | None:
    try:
        return ctx.calendar.due_instant(accepted_at, days)
    except CalendarError as exc:  # supervision raises the visible alarm; the queue sorts it last
        log.warning("no due time: calendar missing", error=str(exc))
        return None


def _sealed(
    ctx: ApprovalContext,
    *,
    case_number: str,
    matter_code: str,
    task_id: str,
    department: str,
    outcome: int,
    reasons: list[str],
    by: str,
) -> common_pb2.SealedDecision:
    decision = common_pb2.Decision(
        center=ctx.center,
        case_number=case_number,
        task_id=task_id,
        department=department,
        outcome=common_pb2.Outcome.ValueType(outcome),
        reasons=reasons,
        decided_by=by,
        matter_code=matter_code,
    )
    decision.decided_at.CopyFrom(timestamp(ctx.clock.now()))
    return seal(decision, ctx.key)


async def audit(
    uow: UnitOfWork, ctx: ApprovalContext, by: common_pb2.Actor, action: str, subject: str, **detail: Any
) -> None:
    """Record a staff action in approval's hash-chained audit log, written with the transaction."""
    uow.audit(
        orm.audit,
        at=ctx.clock.now(),
        actor=by.username or "?",
        role=by.role,
        action=action,
        subject=subject,
        detail=detail,
    )


async def _open(uow: UnitOfWork, ctx: ApprovalContext, row: dict[str, Any]) -> None:
    row.update(status=model.PENDING, opened_at=ctx.clock.now(), items=[])
    repository.save_task(uow, row)
    _emit_opened(uow, ctx, row)


def _emit_opened(uow: UnitOfWork, ctx: ApprovalContext, row: dict[str, Any]) -> None:
    uow.emit(
        ctx.event(
            events_pb2.TaskOpened(task=task_message(row)),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )


# -- commands ----------------------------------------------------------------------------------


async def claim(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.ClaimTaskRequest, *, release: bool
) -> dict[str, Any]:
    """Claim a pending task for oneself, or release one's claim."""
    row = repository.task_in(await repository.case_of_task(uow, req.task_id), req.task_id)
    task = view(row)
    model.check_window_actor(task, who(req.by), action="release" if release else "claim")
    if release:
        if row["status"] != model.CLAIMED:
            raise FailedPrecondition(
                f"task {req.task_id} is not claimed", zh="该审批任务尚未被认领，无需释放"
            )
        row.update(status=model.PENDING, claimed_by=None)
        body: Any = events_pb2.TaskReleased(task_id=req.task_id, by=req.by)
    else:
        model.check_open(task, action="claim")
        if row["status"] == model.CLAIMED:
            raise FailedPrecondition(
                f"task {req.task_id} is already claimed by you", zh="您已认领该审批任务，无需重复认领"
            )
        row.update(status=model.CLAIMED, claimed_by=actor_json(req.by))
        body = events_pb2.TaskClaimed(task_id=req.task_id, by=req.by)
    repository.save_task(uow, row)
    uow.emit(ctx.event(body, case_id=row["case_id"], case_number=row["case_number"]))
    await audit(uow, ctx, req.by, "release" if release else "claim", row["case_number"], task_id=req.task_id)
    return dict(row)


VERDICTS = {
    approval_pb2.VERDICT_APPROVE: "approve",
    approval_pb2.VERDICT_REJECT: "reject",
    approval_pb2.VERDICT_REQUEST_SUPPLEMENT: "supplement",
}


async def decide(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.DecideTaskRequest
) -> dict[str, Any]:
    """Approve, reject (with reasons) or ask for a supplement (with items), then advance the case."""
    verdict = VERDICTS.get(req.verdict)
    if verdict is None:
        raise InvalidArgument(
            "verdict must be APPROVE, REJECT or REQUEST_SUPPLEMENT",
            field="verdict",
            zh="审批结论须为准予许可、不予许可或要求补正之一",
        )
    plan, rows = await repository.case_of_task(uow, req.task_id)  # one decider of a case at a time
    row = repository.task_in((plan, rows), req.task_id)
    task = view(row)
    model.check_window_actor(
        task, who(req.by), action="decide", overrides_claim=verdict in ("approve", "reject")
    )
    model.check_open(task, action="decide")
    if row["special_procedure"]:
        raise FailedPrecondition(
            f"task {req.task_id} is in a {row['special_procedure']}: end it with its result before deciding",
            zh=f"该审批任务正在进行{procedure_zh(row['special_procedure'])}，"
            "请先结束并录入结果后再作审批决定",
        )
    model.check_decision(verdict=verdict, who=who(req.by), reasons=list(req.reasons), items=list(req.items))
    if req.opinion:
        row["opinion"] = req.opinion
        repository.save_task(uow, row)
    if verdict == "supplement":
        items = [
            json_format.MessageToDict(i, preserving_proto_field_name=True) | {"department": row["department"]}
            for i in req.items
        ]
        row.update(status=common_pb2.TaskStatus.ValueType(model.SUPPLEMENT), items=items, claimed_by=None)
        repository.save_task(uow, row)
        uow.emit(
            ctx.event(
                events_pb2.TaskDecided(
                    task_id=row["task_id"],
                    department=row["department"],
                    status=common_pb2.TaskStatus.ValueType(model.SUPPLEMENT),
                    by=req.by,
                ),
                case_id=row["case_id"],
                case_number=row["case_number"],
            )
        )
    else:
        status = model.APPROVED if verdict == "approve" else model.REJECTED
        await _conclude_task(
            uow,
            ctx,
            row,
            status=common_pb2.TaskStatus.ValueType(status),
            by=req.by,
            reasons=[r for r in req.reasons if r.strip()],
        )
    await audit(
        uow,
        ctx,
        req.by,
        verdict,
        row["case_number"],
        task_id=req.task_id,
        department=row["department"],
        reasons=list(req.reasons),
        items=[i.material_code for i in req.items],
    )
    await _advance(uow, ctx, plan, rows)
    return dict(row)  # as decided (a later command of the batch may change the case's other rows)


async def deem_approve(
    uow: UnitOfWork, ctx: ApprovalContext, req: approval_pb2.DeemApproveRequest
) -> dict[str, Any]:
    """Apply the management office's seal to a silent task (R6): it counts as approved."""
    plan, rows = await repository.case_of_task(uow, req.task_id)
    row = repository.task_in((plan, rows), req.task_id)
    if row["status"] not in model.OPEN:
        raise FailedPrecondition(
            f"task {req.task_id} is {model.state_name(row['status'])}; only a silent open task "
            "can be deemed approved",
            zh=f"该审批任务{model.state_name_zh(row['status'])}，"
            "只有在办且逾期未作决定的审批任务才能超时默许（视为同意）",
        )
    if row["extension_days"]:
        raise FailedPrecondition(
            f"task {req.task_id} has an approved extension; it cannot be deemed approved",
            zh="该审批任务已批准延期，不能超时默许（视为同意）",
        )
    if row["special_procedure"]:
        raise FailedPrecondition(
            f"task {req.task_id} is in a {row['special_procedure']}, whose time is not counted; "
            "it cannot be deemed approved",
            zh=f"该审批任务正在进行{procedure_zh(row['special_procedure'])}，"
            "其时间不计入办理时限，不能超时默许（视为同意）",
        )
    by = common_pb2.Actor(username=req.by.username or MANAGEMENT_OFFICE, role=req.by.role or "supervisor")
    await _conclude_task(uow, ctx, row, status=model.DEEMED, by=by, reasons=[])
    uow.emit(
        ctx.event(
            events_pb2.TaskDeemedApproved(task_id=row["task_id"], department=row["department"]),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )
    await audit(
        uow, ctx, by, "deem_approve", row["case_number"], task_id=req.task_id, department=row["department"]
    )
    await _advance(uow, ctx, plan, rows)
    return dict(row)


async def _conclude_task(
    uow: UnitOfWork,
    ctx: ApprovalContext,
    row: dict[str, Any],
    *,
    status: int,
    by: common_pb2.Actor,
    reasons: list[str],
) -> None:
    outcome = {model.APPROVED: 1, model.REJECTED: 2, model.DEEMED: 3}[status]
    sealed = _sealed(
        ctx,
        case_number=row["case_number"],
        matter_code=row["matter_code"],
        task_id=row["task_id"],
        department=row["department"],
        outcome=common_pb2.Outcome.ValueType(outcome),
        reasons=reasons,
        by=by.username,
    )
    await audit(
        uow,
        ctx,
        by,
        "seal",
        row["case_number"],
        task_id=row["task_id"],
        key_id=sealed.seal.key_id,
        signature=sealed.seal.signature.hex(),
    )
    now = ctx.clock.now()
    row.update(
        status=common_pb2.TaskStatus.ValueType(status),
        decided_by=actor_json(by),
        reasons=reasons,
        decided_at=now,
    )
    repository.save_task(uow, row)
    repository.add_decision(
        uow,
        {
            "case_number": row["case_number"],
            "task_id": row["task_id"],
            "sealed": sealed.SerializeToString(),
            "at": now,
        },
    )
    uow.emit(
        ctx.event(
            events_pb2.TaskDecided(
                task_id=row["task_id"],
                department=row["department"],
                status=common_pb2.TaskStatus.ValueType(status),
                by=by,
                reasons=reasons,
                sealed=sealed,
            ),
            case_id=row["case_id"],
            case_number=row["case_number"],
        )
    )


async def _advance(
    uow: UnitOfWork, ctx: ApprovalContext, plan: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """After any change (rows hold the case's tasks as changed in memory): cancel what can never open,
    open what may, merge supplements, join."""
    if plan["state"] != "open":
        return
    case_id = plan["case_id"]
    by_id = {r["task_id"]: r for r in rows}
    views = [view(r) for r in rows]  # built again only after a rule changed a task
    if cancelled := model.blocked(views):
        for task_id in cancelled:
            by_id[task_id]["status"] = model.CANCELLED
            repository.save_task(uow, by_id[task_id])
        views = [view(r) for r in rows]
    if ready := model.ready_to_open(views):
        for task_id in ready:
            await _open(uow, ctx, by_id[task_id])
        views = [view(r) for r in rows]
    if model.round_complete(views):
        round_no = plan["supplement_round"] + 1
        plan["supplement_round"] = round_no
        repository.save_plan(uow, plan)
        body = events_pb2.SupplementRoundOpened(round=round_no)
        for r in rows:
            if r["status"] == model.SUPPLEMENT:
                for item in r["items"]:
                    body.items.add(**item)
        uow.emit(ctx.event(body, case_id=case_id, case_number=plan["case_number"]))
        return
    outcome = model.join(views)
    if outcome is None:
        return
    reasons = [
        f"{r['department']}: {reason}"
        for r in rows
        if r["status"] == model.REJECTED
        for reason in r["reasons"]
    ]
    sealed = _sealed(
        ctx,
        case_number=plan["case_number"],
        matter_code=plan["matter_code"],
        task_id="",
        department="",
        outcome=common_pb2.Outcome.ValueType(outcome),
        reasons=reasons,
        by=MANAGEMENT_OFFICE,
    )
    office = common_pb2.Actor(username=MANAGEMENT_OFFICE, role="system")
    await audit(
        uow,
        ctx,
        office,
        "seal",
        plan["case_number"],
        outcome=int(outcome),
        key_id=sealed.seal.key_id,
        signature=sealed.seal.signature.hex(),
    )
    now = ctx.clock.now()
    plan.update(state="concluded", outcome=common_pb2.Outcome.ValueType(outcome), updated_at=now)
    repository.save_plan(uow, plan)
    repository.add_decision(
        uow,
        {"case_number": plan["case_number"], "task_id": "", "sealed": sealed.SerializeToString(), "at": now},
    )
    uow.emit(
        ctx.event(
            events_pb2.CaseConcluded(
                outcome=common_pb2.Outcome.ValueType(outcome),
                reasons=reasons,
                sealed=sealed,
                preliminary_review=bool(plan.get("preliminary_review")),
            ),
            case_id=case_id,
            case_number=plan["case_number"],
        )
    )

"""Supervision's event handlers: facts from intake, routing and approval start, pause, move and stop clocks."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.clock import from_timestamp
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from services.common.events import kind
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.supervision import clocks, deem, evaluations, forwarded, model, repository, store
from services.supervision.clocks import SupervisionContext

log = get_logger(__name__)
DEFAULT_THRESHOLD_DAYS = 1


class NotReadyYet(RuntimeError):
    """An event arrived before the one it depends on; the consumer redelivers it later."""


def _at(env: events_pb2.Envelope) -> datetime:
    return from_timestamp(env.occurred_at)


async def on_case_accepted(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """Remember the case: accepted here (or uploaded from a child center), with its query code's digest."""
    body = env.case_accepted
    # The digest guards the applicant's evaluation; an event from before intake sent it carries none,
    # and then the first evaluation's digest is trusted (evaluations.py).
    digest = body.query_code_digest.strip().lower()
    case = await store.update_case(
        uow,
        case_id=env.case_id,
        now=ctx.clock.now(),
        advance_to="accepted",
        case_number=env.case_number,
        center=body.origin_center or env.center,
        matter_code=body.matter_code,
        accepted_at=_at(env),
        on_the_spot=body.on_the_spot,
        **({"query_code_digest": digest} if digest else {}),
    )
    if case["routed"]:
        # The routing overtook the acceptance (replicas share the consumer): give its clocks the center.
        # (Clocks exist only once the case is routed; the case's row lock orders us after that routing.)
        for row in await store.clocks_of(uow, env.case_id):
            if row["center"] == "":
                row["center"] = case["center"]
                store.save_clock(uow, row)


async def on_case_routed(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """The matter's limits are known: start the case's own clock from acceptance."""
    body = env.case_routed
    accepted_at = from_timestamp(body.accepted_at) if body.HasField("accepted_at") else _at(env)
    threshold = body.warning_threshold_days or DEFAULT_THRESHOLD_DAYS
    case = await store.update_case(
        uow,
        case_id=env.case_id,
        now=ctx.clock.now(),
        advance_to="routed",
        case_number=env.case_number,
        matter_code=body.matter_code,
        accepted_at=accepted_at,
        routed=True,
        on_the_spot=body.on_the_spot,
        promised_days=body.promised_limit_days,
        statutory_days=body.statutory_limit_days,
        threshold_days=threshold,
        deemed_allowed=body.deemed_approval_allowed,
    )
    if forwarded.decided_above(case):  # the deciding node runs the clocks
        return
    row = clocks.new_row(
        case,
        clock_id=repository.case_clock_id(env.case_id),
        task_id="",
        department="",
        window="",
        started_at=accepted_at,
        now=ctx.clock.now(),
    )
    await clocks.start(uow, ctx, row, event_id=env.event_id)
    if case["status"] in ("concluded", "withdrawn"):  # the conclusion overtook the routing
        await clocks.stop(
            uow,
            ctx,
            row,
            at=case["concluded_at"] or accepted_at,
            outcome=case["outcome"],
            cause=case["status"],
            event_id=env.event_id,
        )


async def on_task_opened(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """A department task opened: its clock starts now (a re-opening after a supplement changes nothing)."""
    task = env.task_opened.task
    case_id = store.case_id_of(env)
    case = await store.case_row(uow, case_id)
    if forwarded.decided_above(case):  # the deciding node runs the clocks
        return
    if case is None or not case["routed"]:  # (a task with a clock is of a routed case)
        raise NotReadyYet(f"task {task.task_id} opened before case {env.case_number} was routed")
    row = clocks.new_row(
        case,
        clock_id=repository.task_clock_id(task.task_id),
        task_id=task.task_id,
        department=task.department,
        window=task.window,
        started_at=_at(env),
        now=ctx.clock.now(),
    )
    if not await clocks.start(uow, ctx, row, event_id=env.event_id):
        return  # its clock exists: a re-opening after a supplement changes nothing
    if case["status"] in ("concluded", "withdrawn"):
        # The opening arrived late (it overtook the routing and waited to be redelivered): keep the
        # department's timing, stopped where the case's conclusion stopped its other tasks.
        await clocks.stop(
            uow,
            ctx,
            row,
            at=max(case["concluded_at"] or row["started_at"], row["started_at"]),
            outcome=0,
            cause=case["status"],
            event_id=env.event_id,
        )
        return
    case_clock = await store.clock_row(uow, repository.case_clock_id(case_id), case_id=case_id)
    if (
        case_clock
        and case_clock["paused"]
        and any(p["to"] is None and p["kind"] == model.SUPPLEMENT for p in case_clock["pauses"])
    ):
        # A task opening while the case waits for the applicant also waits.
        await clocks.save(
            uow,
            ctx,
            row,
            model.pause(repository.to_model(row), kind=model.SUPPLEMENT, at=_at(env)),
            cause="supplement_pause",
            at=_at(env),
            event_id=env.event_id,
        )


async def on_task_claimed(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """Remember who held the task (named in accountability records, R22)."""
    body = env.task_claimed
    row = await store.clock_row(uow, repository.task_clock_id(body.task_id), case_id=env.case_id)
    if row is None or not body.by.username or body.by.username in row["claimants"]:
        return
    row["claimants"] = [*row["claimants"], body.by.username]
    store.save_clock(uow, row)


async def _task_clock(uow: UnitOfWork, env: events_pb2.Envelope, task_id: str) -> dict[str, Any] | None:
    """The task's clock; None for an on-the-spot or closed case; NotReadyYet while the opening is unseen."""
    # Replicas share the consumer, so a decision can overtake the task's opening: it is redelivered later.
    row = await store.clock_row(uow, repository.task_clock_id(task_id), case_id=env.case_id)
    if row is not None:
        return row
    case = await store.case_row(uow, env.case_id)
    if case is not None and (case["on_the_spot"] or case["status"] in ("concluded", "withdrawn")):
        return None
    raise NotReadyYet(f"{kind(env)} for task {task_id} arrived before the task opened")


async def on_task_decided(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """A decision stops the task's clock; a supplement request pauses it until the applicant answers."""
    body = env.task_decided
    row = await _task_clock(uow, env, body.task_id)
    if row is None:
        return
    at, who = _at(env), body.by.username
    if body.status == common_pb2.TASK_STATUS_SUPPLEMENT_REQUESTED:
        # The department has spoken; waiting for the merged notice and the applicant is not its delay.
        if who and who not in row["claimants"]:
            row["claimants"] = [*row["claimants"], who]  # written with the pause below
        await clocks.save(
            uow,
            ctx,
            row,
            model.pause(repository.to_model(row), kind=model.SUPPLEMENT, at=at),
            cause="supplement_pause",
            at=at,
            detail="the department asked for a supplement",
            event_id=env.event_id,
        )
        return
    outcome = {
        common_pb2.TASK_STATUS_APPROVED: model.APPROVED,
        common_pb2.TASK_STATUS_REJECTED: model.REJECTED,
        common_pb2.TASK_STATUS_DEEMED_APPROVED: model.DEEMED_APPROVED,
    }.get(body.status)
    if outcome is None:
        return
    await clocks.stop(
        uow, ctx, row, at=at, outcome=outcome, decided_by=who, cause="decided", event_id=env.event_id
    )
    if outcome == model.DEEMED_APPROVED and row["deem_state"] == "pending":
        # Approval sealed it but our own record of the call was lost (e.g. a crash): finish it here.
        await deem.settle(uow, ctx, row, deemed=True, note="confirmed by task_decided", at=at)


async def _pause_case(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope, *, kind_: str, detail: str
) -> None:
    at = _at(env)
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        clock = repository.to_model(row)
        paused = model.pause(clock, kind=kind_, at=at)
        if paused != clock:
            await clocks.save(
                uow, ctx, row, paused, cause=f"{kind_}_pause", at=at, detail=detail, event_id=env.event_id
            )


async def _resume_case(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope, *, kind_: str, detail: str
) -> None:
    at = _at(env)
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        clock = repository.to_model(row)
        resumed = model.resume(clock, kind=kind_, at=at)
        if resumed != clock:
            await clocks.save(
                uow, ctx, row, resumed, cause=f"{kind_}_resume", at=at, detail=detail, event_id=env.event_id
            )


async def on_supplement_round_opened(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope
) -> None:
    """The merged supplement notice went out: every running clock of the case pauses (§8)."""
    await _pause_case(
        uow,
        ctx,
        env,
        kind_=model.SUPPLEMENT,
        detail=f"supplement notice round {env.supplement_round_opened.round}",
    )


async def on_supplement_requested(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """A pre-review notice starts no clock; one raised during review pauses them like a round."""
    if env.supplement_requested.during_review:
        await _pause_case(
            uow,
            ctx,
            env,
            kind_=model.SUPPLEMENT,
            detail=f"supplement notice round {env.supplement_requested.round}",
        )
        return
    await store.update_case(uow, case_id=env.case_id, now=ctx.clock.now())


async def on_case_supplemented(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """The applicant answered: the clocks restart the day after (the calendar's pause convention)."""
    await _resume_case(
        uow,
        ctx,
        env,
        kind_=model.SUPPLEMENT,
        detail=f"supplement round {env.case_supplemented.round} answered",
    )


def _procedure_clocks(rows: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The clocks a task's special procedure stops: the task's own and the case's."""
    return [row for row in rows if row["task_id"] in ("", task_id)]


async def _special_procedure(
    uow: UnitOfWork,
    ctx: SupervisionContext,
    env: events_pb2.Envelope,
    *,
    task_id: str,
    end: bool,
    detail: str,
) -> None:
    # One pause kind per task: two departments' procedures overlapping on the case's clock each close
    # their own pause (the calendar counts an overlap once).
    kind_ = f"{model.SPECIAL_PROCEDURE}:{task_id}"
    at = _at(env)
    for row in _procedure_clocks(await store.clocks_of(uow, env.case_id, open_only=True), task_id):
        clock = repository.to_model(row)
        changed = model.resume(clock, kind=kind_, at=at) if end else model.pause(clock, kind=kind_, at=at)
        if changed != clock:
            cause = f"{model.SPECIAL_PROCEDURE}_{'resume' if end else 'pause'}"
            await clocks.save(
                uow, ctx, row, changed, cause=cause, at=at, detail=detail, event_id=env.event_id
            )


async def pause_special_procedure(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """Hearings, testing, expert review ... are not counted (行政许可法 Art. 45): the task's clock and
    the case's stop while one runs."""
    body = env.special_procedure_started
    detail = f"{body.procedure} started at {body.department or 'the window'}: {body.reason}"
    await _special_procedure(uow, ctx, env, task_id=body.task_id, end=False, detail=detail)


async def resume_special_procedure(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope
) -> None:
    """The special procedure ended: the clocks run again, its days not counted."""
    body = env.special_procedure_ended
    detail = f"{body.procedure or 'special procedure'} ended at {body.department or 'the window'}"
    await _special_procedure(uow, ctx, env, task_id=body.task_id, end=True, detail=detail)


async def on_extension_decided(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """An approved extension moves the task's due date, and the case's by its longest extension."""
    body = env.extension_decided
    if not body.approved or body.days <= 0:
        return
    at = _at(env)
    row = await _task_clock(uow, env, body.task_id)
    if row is None or row["stopped_at"] is not None:
        return
    clock = repository.to_model(row)
    detail = f"extension {body.extension_id}: +{body.days} working days ({body.reason or 'approved'})"
    await clocks.save(
        uow,
        ctx,
        row,
        replace(clock, extension_days=clock.extension_days + body.days),
        cause="extension",
        at=at,
        detail=detail,
        event_id=env.event_id,
    )
    rows = await store.clocks_of(uow, row["case_id"])
    longest = max((r["extension_days"] for r in rows if r["task_id"]), default=0)
    for case_row in rows:
        if (
            not case_row["task_id"]
            and case_row["stopped_at"] is None
            and case_row["extension_days"] < longest
        ):
            case_clock = repository.to_model(case_row)
            await clocks.save(
                uow,
                ctx,
                case_row,
                replace(case_clock, extension_days=longest),
                cause="extension",
                at=at,
                detail=detail,
                event_id=env.event_id,
            )


async def on_key_project_designated(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope
) -> None:
    """A key project's public deadline caps every clock of the case; the tracker follows it (R1, R5)."""
    body = env.key_project_designated
    deadline = from_timestamp(body.promised_deadline) if body.HasField("promised_deadline") else None
    await store.update_case(
        uow,
        case_id=env.case_id,
        now=ctx.clock.now(),
        key_project=True,
        key_deadline=deadline,
        tracker=body.tracker or body.designated_by.username,
        **({"case_number": env.case_number} if env.case_number else {}),
    )
    at = _at(env)
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        clock = replace(repository.to_model(row), key_deadline=deadline)
        await clocks.save(
            uow,
            ctx,
            row,
            clock,
            cause="key_project",
            at=at,
            detail=f"key project, promised deadline {deadline.isoformat() if deadline else '-'}",
            event_id=env.event_id,
        )


async def _conclude(
    uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope, *, status: str, outcome: int
) -> None:
    at = _at(env)
    await store.update_case(
        uow, case_id=env.case_id, now=ctx.clock.now(), status=status, outcome=outcome, concluded_at=at
    )
    for row in await store.clocks_of(uow, env.case_id, open_only=True):
        # A task still open here was cancelled by the join or the withdrawal: no outcome of its own.
        await clocks.stop(
            uow,
            ctx,
            row,
            at=at,
            outcome=0 if row["task_id"] else outcome,
            cause=status,
            event_id=env.event_id,
        )


async def on_case_concluded(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """The case is decided: every clock of it stops (an approving preliminary review sends it up)."""
    case = await store.case_row(uow, env.case_id)
    if await forwarded.preliminary_concluded(uow, ctx, env, case):
        return
    await _conclude(uow, ctx, env, status="concluded", outcome=env.case_concluded.outcome)


async def on_case_withdrawn(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """The applicant withdrew: every clock stops without a decision."""
    await _conclude(uow, ctx, env, status="withdrawn", outcome=model.WITHDRAWN)


async def on_evaluation_forwarded(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """An applicant rated, at the child center, a case decided here: it counts for the windows here (R16).
    A rating this node cannot take (the case is not closed here, it was rated already, out of bounds)
    is logged and left: the child accepted it and keeps it."""
    body = env.evaluation_forwarded
    case = await store.case_row(uow, env.case_id)
    if case is None:
        log.warning(
            "forwarded evaluation of an unknown case left", case_id=env.case_id, child=body.child_center
        )
        return
    try:
        await evaluations.record_forwarded(uow, ctx, case, body)
    except (AlreadyExists, FailedPrecondition, InvalidArgument) as exc:
        log.warning(
            "forwarded evaluation not recorded",
            case_number=case["case_number"],
            child=body.child_center,
            reason=str(exc),
        )


EVENT_HANDLERS = {
    "case_accepted": on_case_accepted,
    "case_routed": on_case_routed,
    "task_opened": on_task_opened,
    "task_claimed": on_task_claimed,
    "task_decided": on_task_decided,
    "supplement_requested": on_supplement_requested,
    "supplement_round_opened": on_supplement_round_opened,
    "case_supplemented": on_case_supplemented,
    "extension_decided": on_extension_decided,
    "special_procedure_started": pause_special_procedure,
    "special_procedure_ended": resume_special_procedure,
    "key_project_designated": on_key_project_designated,
    "case_concluded": on_case_concluded,
    "case_withdrawn": on_case_withdrawn,
    "case_forwarded": forwarded.on_case_forwarded,
    "parent_result_received": forwarded.on_parent_result_received,
    "evaluation_forwarded": on_evaluation_forwarded,
}


async def on_event(uow: UnitOfWork, ctx: SupervisionContext, env: events_pb2.Envelope) -> None:
    """Dispatch a consumed event."""
    await EVENT_HANDLERS[kind(env)](uow, ctx, env)

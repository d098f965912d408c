"""Notification's event and command handlers: each runs in one unit of work."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from onestop.events.v1 import events_pb2
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.notification import audience, convert, orm, repository
from services.notification.live import LIVE_ONLY, CaseHub, after_commit, live_update
from services.notification.model import (
    DEFAULT_LANGUAGE,
    INBOX,
    NOTICE,
    PENDING,
    SENT,
    SKIPPED,
    Channels,
    Outgoing,
    Recipient,
    TaskInfo,
    mask_address,
)
from services.notification.templates import RenderError, Templates
from services.notification.worker import LOCAL_CHANNELS, render_local

log = get_logger(__name__)

EVENT_KINDS: tuple[str, ...] = (*audience.PLANNERS, *LIVE_ONLY)


@dataclass
class NotificationContext:
    """Notification's collaborators, wired in bootstrap."""

    clock: Clock
    channels: Channels
    hub: CaseHub
    wake: Callable[[], None]
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    # With templates, web inbox messages and written notices are written in the consumer's transaction
    # (they need no network); without, the delivery worker writes them like any other channel.
    templates: Templates | None = None


def _row(out: Outgoing, *, env: events_pb2.Envelope, ctx: NotificationContext, now: Any) -> dict[str, Any]:
    state = SKIPPED if out.skip_reason else PENDING
    return {
        "delivery_id": ctx.new_id(),
        "event_id": env.event_id,
        "kind": out.kind,
        "case_number": env.case_number,
        "channel": out.channel,
        "recipient": out.recipient,
        # A skipped delivery will never be sent: keep no raw address for it.
        "address": "" if out.skip_reason else out.address,
        "address_masked": mask_address(out.channel, out.address),
        "language": out.language,
        "context": out.context,
        "notice_kind": out.notice_kind,
        "notice_id": out.notice_id,
        "state": state,
        "attempts": 0,
        "last_error": out.skip_reason,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
    }


async def on_event(uow: UnitOfWork, ctx: NotificationContext, env: events_pb2.Envelope) -> None:
    """Plan every delivery an event causes, in the consumer's transaction; feed open pages after commit."""
    conn = uow.conn
    fact = convert.fact(env)
    now = ctx.clock.now()
    if fact.kind == "case_accepted" and env.case_number:
        await repository.save_recipient(conn, convert.recipient(env), now=now)
        for key in [k for k in uow.memo if k[0] == "recipient"]:
            del uow.memo[key]  # read again after the change
    if fact.kind == "task_opened":
        _save_task(uow, convert.task(env))
    recipient = await _recipient(uow, case_number=env.case_number, case_id=env.case_id)
    task = await _task(uow, str(audience.get(fact.data, "task_id")))
    planned = audience.plan(fact, recipient=recipient, task=task, channels=ctx.channels, new_id=ctx.new_id)
    rows = [_row(out, env=env, ctx=ctx, now=now) for out in planned]
    effects = _deliver_locally(ctx, rows, now=now)
    inserted = await repository.add_deliveries(conn, rows)
    for row in rows:
        effect = effects.get(row["delivery_id"])
        if effect is not None and row["delivery_id"] in inserted:
            _record_local(uow, row, effect, now=now)
    pending = sum(1 for r in rows if r["delivery_id"] in inserted and r["state"] == PENDING)
    skipped = [f"{o.channel}→{o.recipient}: {o.skip_reason}" for o in planned if o.skip_reason]
    if planned:
        log.info(
            "deliveries planned",
            event_id=env.event_id,
            case_number=env.case_number,
            kind=fact.kind,
            planned=len(planned),
            created=len(inserted),
            delivered=sum(1 for d in effects if d in inserted),
            skipped=skipped,
        )
    update = live_update(fact, language=recipient.language if recipient else DEFAULT_LANGUAGE)

    def after() -> None:
        if update is not None:
            ctx.hub.publish(update)
        if pending:
            ctx.wake()

    after_commit(uow, after)


async def _recipient(uow: UnitOfWork, *, case_number: str, case_id: str) -> Recipient | None:
    """The case's applicant, read once per transaction (a batch brings several events of a case)."""
    key = ("recipient", case_number, case_id)
    if key not in uow.memo:
        uow.memo[key] = await repository.get_recipient(uow.conn, case_number=case_number, case_id=case_id)
    return cast(Recipient | None, uow.memo[key])


def _save_task(uow: UnitOfWork, task: TaskInfo) -> None:
    """Remember a task's department and window (first sighting wins), written just before commit."""
    repository.save_task_later(uow, task)
    uow.memo.setdefault(("new task", task.task_id), task)


async def _task(uow: UnitOfWork, task_id: str) -> TaskInfo | None:
    """A task seen in task_opened: as stored (an earlier sighting), else as first seen in this transaction."""
    if not task_id:
        return None
    key = ("task", task_id)
    if key not in uow.memo:
        stored = await repository.get_task(uow.conn, task_id)
        if stored is None:
            return cast(TaskInfo | None, uow.memo.get(("new task", task_id)))
        uow.memo[key] = stored
    return cast(TaskInfo, uow.memo[key])


def _deliver_locally(
    ctx: NotificationContext, rows: list[dict[str, Any]], *, now: Any
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Render the pending inbox and notice deliveries and mark their rows sent (one attempt); the row each
    writes, by delivery id. A template that fails leaves its delivery pending: the worker records why."""
    if ctx.templates is None:
        return {}
    effects: dict[str, tuple[str, dict[str, Any]]] = {}
    for row in rows:
        if row["state"] != PENDING or row["channel"] not in LOCAL_CHANNELS:
            continue
        try:
            _, effect = render_local(ctx.templates, row | {"context": _plain(row["context"])})
        except RenderError:
            continue
        row.update(state=SENT, attempts=1, sent_at=now, address=row["address_masked"])
        effects[row["delivery_id"]] = effect
    return effects


def _plain(context: Any) -> Any:
    """The context as the worker reads it back from its JSON column."""
    return json.loads(json.dumps(context))


def _record_local(
    uow: UnitOfWork, row: dict[str, Any], effect: tuple[str, dict[str, Any]], *, now: Any
) -> None:
    """The attempt and the inbox message or notice of a delivery made in this transaction."""
    table, values = effect
    uow.insert_later(orm.inbox_messages if table == INBOX else orm.notices, values | {"created_at": now})
    uow.insert_later(
        orm.attempts,
        {
            "delivery_id": row["delivery_id"],
            "attempt": 1,
            "at": now,
            "outcome": "sent",
            "detail": "notice stored" if table == NOTICE else "inbox",
            "elapsed_ms": 0,
        },
        ignore=False,
    )


async def retry_dead_letter(uow: UnitOfWork, ctx: NotificationContext, delivery_id: str) -> dict[str, Any]:
    """Put a dead delivery back in the queue (after staff fixed the address, template or gateway)."""
    if not delivery_id:
        raise InvalidArgument("delivery_id is required", field="delivery_id")
    row = await repository.get_delivery(uow.conn, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    if not await repository.requeue(uow.conn, delivery_id, now=ctx.clock.now()):
        raise FailedPrecondition(
            f"delivery {delivery_id} is {row['state']}, not dead; only dead letters are retried"
        )
    log.info("dead letter re-queued", delivery_id=delivery_id, case_number=row["case_number"])
    after_commit(uow, ctx.wake)
    fresh = await repository.get_delivery(uow.conn, delivery_id)
    assert fresh is not None
    return fresh

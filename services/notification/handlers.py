"""Notification's event and command handlers: each runs in one unit of work."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.events.v1 import events_pb2
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.notification import audience, convert, orm, repository
from services.notification.live import LIVE_ONLY, CaseHub, LiveUpdate, after_commit, live_update
from services.notification.model import (
    DEAD,
    DEFAULT_LANGUAGE,
    FAILED,
    INBOX,
    NOTICE,
    PENDING,
    SENT,
    SKIPPED,
    Channels,
    Fact,
    Outgoing,
    mask_address,
    new_id,
)
from services.notification.templates import RenderError, Templates
from services.notification.worker import LOCAL_CHANNELS, render_local

log = get_logger(__name__)

EVENT_KINDS: tuple[str, ...] = (*audience.PLANNERS, *LIVE_ONLY)
_DELIVERIES = "notification deliveries"  # uow.memo key: the transaction's planned deliveries

# A delivery's state, as retry_dead_letter's refusal reads it ("该投递记录" + this).
_STATE_ZH = {
    PENDING: "正在等待发送",
    FAILED: "发送失败，正在等待重试",
    SENT: "已发送",
    SKIPPED: "已跳过",
    DEAD: "已停止重试",
}


@dataclass
class NotificationContext:
    """Notification's collaborators, wired in bootstrap."""

    clock: Clock
    channels: Channels
    hub: CaseHub
    wake: Callable[[], None]
    new_id: Callable[[], str] = new_id
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


async def prefetch(uow: UnitOfWork, envelopes: Sequence[events_pb2.Envelope]) -> None:
    """Before a batch's handlers: its facts, and the applicants and tasks they refer to, read in one
    statement per table (instead of one read per event)."""
    facts = [convert.fact(env) for env in envelopes]
    for fact in facts:
        uow.memo[("fact", fact.event_id)] = fact
    await repository.preload(
        uow,
        case_numbers=[env.case_number for env in envelopes],
        task_ids=[
            str(audience.get(f.data, "task_id") or audience.get(f.data, "task", "task_id")) for f in facts
        ],
    )


async def on_event(uow: UnitOfWork, ctx: NotificationContext, env: events_pb2.Envelope) -> None:
    """Plan every delivery an event causes, in the consumer's transaction; feed open pages after commit."""
    fact = uow.memo.pop(("fact", env.event_id), None) or convert.fact(env)
    now = ctx.clock.now()
    if fact.kind == "case_accepted" and env.case_number:
        repository.save_recipient_later(uow, convert.recipient(env), now=now)
    if fact.kind == "task_opened":
        await repository.save_task_later(uow, convert.task(env))
    recipient = await repository.recipient(uow, case_number=env.case_number, case_id=env.case_id)
    task = await repository.task(uow, str(audience.get(fact.data, "task_id")))
    planned = audience.plan(fact, recipient=recipient, task=task, channels=ctx.channels, new_id=ctx.new_id)
    rows = [_row(out, env=env, ctx=ctx, now=now) for out in planned]
    effects = _deliver_locally(ctx, rows, now=now)
    _add_deliveries_later(uow, ctx, _Planned(fact, planned, rows, effects, now))
    update = live_update(fact, language=recipient.language if recipient else DEFAULT_LANGUAGE)
    if update is not None:
        after_commit(uow, partial(_publish, ctx.hub, update))


def _publish(hub: CaseHub, update: LiveUpdate) -> None:
    hub.publish(update)


@dataclass
class _Planned:
    """What one event planned, waiting for the batch's deliveries to be written."""

    fact: Fact
    planned: list[Outgoing]
    rows: list[dict[str, Any]]
    effects: dict[str, tuple[str, dict[str, Any]]]
    now: Any


def _add_deliveries_later(uow: UnitOfWork, ctx: NotificationContext, planned: _Planned) -> None:
    """Queue an event's deliveries; the first event of a transaction arranges to write them all at once."""
    batch: list[_Planned] | None = uow.memo.get(_DELIVERIES)
    if batch is None:
        batch = uow.memo[_DELIVERIES] = []
        uow.before_commit(partial(_write_deliveries, uow, ctx, batch))
    batch.append(planned)


async def _write_deliveries(
    uow: UnitOfWork, ctx: NotificationContext, batch: list[_Planned], conn: AsyncConnection
) -> None:
    """Insert the planned deliveries of every event in one statement; record the local deliveries (inbox
    messages, notices) of those that did not exist yet; wake the worker after commit for the pending."""
    inserted = await repository.add_deliveries(conn, [row for p in batch for row in p.rows])
    pending = False
    for p in batch:
        for row in p.rows:
            if row["delivery_id"] not in inserted:
                continue
            pending = pending or row["state"] == PENDING
            effect = p.effects.get(row["delivery_id"])
            if effect is not None:
                _record_local(uow, row, effect, now=p.now)
        if p.planned:
            log.info(
                "deliveries planned",
                event_id=p.fact.event_id,
                case_number=p.fact.case_number,
                kind=p.fact.kind,
                planned=len(p.planned),
                created=sum(1 for r in p.rows if r["delivery_id"] in inserted),
                delivered=sum(1 for d in p.effects if d in inserted),
                skipped=[f"{o.channel}→{o.recipient}: {o.skip_reason}" for o in p.planned if o.skip_reason],
            )
    if pending:
        after_commit(uow, ctx.wake)


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
        raise InvalidArgument(
            "delivery_id is required", field="delivery_id", zh="缺少投递记录编号 (delivery_id)"
        )
    row = await repository.get_delivery(uow.conn, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", zh="未找到该投递记录")
    if not await repository.requeue(uow.conn, delivery_id, now=ctx.clock.now()):
        raise FailedPrecondition(
            f"delivery {delivery_id} is {row['state']}, not dead; only dead letters are retried",
            zh=f"该投递记录{_STATE_ZH.get(row['state'], '处于状态 ' + row['state'])}，"
            "只有已停止重试的投递（死信）才能重新投递",
        )
    log.info("dead letter re-queued", delivery_id=delivery_id, case_number=row["case_number"])
    after_commit(uow, ctx.wake)
    fresh = await repository.get_delivery(uow.conn, delivery_id)
    assert fresh is not None
    return fresh

"""JetStream setup and the idempotent event consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.errors import DomainError
from services.common.events import (
    BATCH_HEADER,
    DEAD_LETTER_PREFIX,
    SUBJECT_PREFIX,
    MalformedEvent,
    kind,
    subject_for,
    unpack,
)
from services.common.logging import get_logger
from services.common.outbox import Outbox, UnitOfWork

log = get_logger(__name__)

Handler = Callable[[UnitOfWork, events_pb2.Envelope], Awaitable[None]]
# Runs before the handlers of a batch, with the events about to be applied (see UnitOfWork.preload).
Prefetch = Callable[[UnitOfWork, Sequence[events_pb2.Envelope]], Awaitable[None]]
# Deliveries after which an event that keeps failing is treated as poison.
MAX_DELIVERIES = 8
DUPLICATE_WINDOW_S = 120.0
# When a fetch brings less than a full batch, the consumer waits this long and takes what arrived
# meanwhile, so that a moderately busy stream is applied in batches of several events rather than one
# transaction per event (each costs a BEGIN, an inbox insert, reads, writes, a COMMIT and its fsync):
# at 72 cases/s open loop the consumers' CPU per case fell by a third to a half, the node left
# saturation and p99 went from ~1.0 s to ~0.45 s (docs/PERFORMANCE.md). It adds at most this much to
# each hop; a full batch does not wait.
LINGER_S = 0.02
# At most this many events in one consumer transaction (a fetch of 128 messages may carry tens of
# thousands when a consumer is behind): bounds its memory and how long its locks are held.
MAX_EVENTS_PER_TX = 512
# A fetch asks for about this many events at most: it asks for fewer messages when the last ones carried
# many events each (the relay packs up to 256 in one), so that a consumer that is behind does not hold
# 128 messages of 256 events each (32 MB of payload, 32,000 events) at once. With one event per
# message it still asks for a whole batch of messages.
FETCH_EVENTS = 2048


def _count(msg: Any) -> int:
    """How many events a message says it carries (a bad header counts as one: it is found out later)."""
    value = (msg.headers or {}).get(BATCH_HEADER, "1")
    return int(value) if value.isdigit() else 1


def _chunks(msgs: list[Any], limit: int) -> list[list[Any]]:
    """Consecutive runs of messages carrying at most `limit` events together (a message carrying more
    is a run of its own)."""
    out: list[list[Any]] = []
    size = limit
    for msg in msgs:
        n = _count(msg)
        if size + n > limit:
            out.append([])
            size = 0
        out[-1].append(msg)
        size += n
    return out


async def connect(url: str, *, name: str) -> NATS:
    """Connect to NATS, retrying forever in the background after the first success."""
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
    )


async def ensure_streams(js: Any, *, name: str, replicas: int = 1) -> None:
    """Create (or update) the node's event stream and its dead-letter stream."""
    for stream, subjects in ((name, [SUBJECT_PREFIX + ">"]), (f"{name}_DLQ", [DEAD_LETTER_PREFIX + ">"])):
        config = StreamConfig(
            name=stream,
            subjects=subjects,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await js.stream_info(stream)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)


class EventConsumer:
    """A durable pull consumer whose handlers run in one transaction with the inbox row.

    Ack after commit; nak with a growing delay on transient errors; poison messages (not an
    envelope, unknown body, a DomainError, or failing MAX_DELIVERIES times) go to the dead-letter
    subject and are terminated so they never block the stream.
    """

    def __init__(
        self,
        *,
        name: str,
        js: Any,
        stream: str,
        engine: AsyncEngine,
        outbox: Outbox,
        inbox: Table,
        handlers: Mapping[str, Handler],
        batch: int = 128,
        linger: float = LINGER_S,
        prefetch: Prefetch | None = None,
    ) -> None:
        self.name = name
        self._js = js
        self._stream = stream
        self._engine = engine
        self._outbox = outbox
        self._inbox = inbox
        self._handlers = dict(handlers)
        self._batch = batch
        self._linger = linger
        self._prefetch = prefetch
        self.processed = 0
        self.dead_lettered = 0
        self._per_message = 1.0  # events per message in the last fetch

    def _want(self) -> int:
        """How many messages the next fetch asks for (see FETCH_EVENTS)."""
        return max(1, min(self._batch, int(FETCH_EVENTS / self._per_message)))

    async def _subscribe(self) -> Any:
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_ack_pending=10_000,
            filter_subjects=sorted(subject_for(k) for k in self._handlers),
        )
        try:
            await self._js.add_consumer(self._stream, config)
        except Exception as exc:  # noqa: BLE001 - an existing consumer with other filters
            log.info("consumer exists; updating", consumer=self.name, detail=str(exc))
            await self._js.delete_consumer(self._stream, self.name)
            await self._js.add_consumer(self._stream, config)
        return await self._js.pull_subscribe_bind(durable=self.name, stream=self._stream)

    async def _fetch(self, sub: Any) -> list[Any]:
        """The next batch: wait (up to a second) for messages; when fewer than asked for came, wait
        `linger` seconds (LINGER_S) and take what arrived meanwhile. It asks for up to `batch` messages,
        fewer when the last ones carried many events each (FETCH_EVENTS)."""
        want = self._want()
        msgs = await sub.fetch(want, timeout=1.0)
        if self._linger > 0 and len(msgs) < want:
            await asyncio.sleep(self._linger)
            try:
                msgs += await sub.fetch(want - len(msgs), timeout=0.005)
            except (NatsTimeout, TimeoutError):
                pass
        self._per_message = max(1.0, sum(_count(m) for m in msgs) / len(msgs)) if msgs else 1.0
        return msgs

    async def run(self) -> None:
        """Fetch and apply events forever."""
        sub = await self._subscribe()
        while True:
            try:
                msgs = await self._fetch(sub)
            except (NatsTimeout, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - connection trouble: wait and refetch
                log.warning("fetch failed", consumer=self.name, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for chunk in _chunks(msgs, MAX_EVENTS_PER_TX):
                await self.handle_batch(chunk)

    def _envelopes(self, msg: Any) -> list[tuple[events_pb2.Envelope, Handler] | MalformedEvent]:
        """The events of a message with their handlers, in order (MalformedEvent for one that is not
        valid or that this consumer has no handler for); MalformedEvent raised when the message does
        not parse at all."""
        out: list[tuple[events_pb2.Envelope, Handler] | MalformedEvent] = []
        for env in unpack(msg.data, msg.headers):
            if isinstance(env, MalformedEvent):
                out.append(env)
                continue
            handler = self._handlers.get(kind(env))
            if handler is None:
                out.append(MalformedEvent(f"consumer {self.name} has no handler for {kind(env)}"))
            else:
                out.append((env, handler))
        return out

    async def handle_batch(self, msgs: list[Any]) -> None:
        """Apply a fetched batch in one transaction (one commit, one fsync); on any failure fall back to
        one message at a time so a bad message cannot hold the others back."""
        if len(msgs) == 1 and not (msgs[0].headers and BATCH_HEADER in msgs[0].headers):
            await self.handle(msgs[0])
            return
        good: list[Any] = []
        todo_all: list[tuple[events_pb2.Envelope, Handler]] = []
        for msg in msgs:
            try:
                items = self._envelopes(msg)
            except MalformedEvent as exc:
                await self._dead_letter(msg, str(exc))
                await msg.term()
                continue
            if any(isinstance(item, MalformedEvent) for item in items):
                await self.handle(msg)  # dead-letters the bad events alone, applies the others
                continue
            good.append(msg)
            todo_all.extend(item for item in items if not isinstance(item, MalformedEvent))
        if not good:
            return
        try:
            async with UnitOfWork(self._engine, self._outbox) as uow:
                fresh = await uow.mark_many_processed(
                    self._inbox, consumer=self.name, event_ids=[env.event_id for env, _ in todo_all]
                )
                todo = []
                for env, handler in todo_all:
                    if env.event_id in fresh:
                        fresh.discard(env.event_id)  # a redelivered copy in the same batch is applied once
                        todo.append((env, handler))
                if self._prefetch is not None and todo:
                    await self._prefetch(uow, [env for env, _ in todo])
                for env, handler in todo:
                    await handler(uow, env)
                await uow.commit()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - retried one by one, where each failure is classified
            for msg in good:
                await self.handle(msg)
            return
        for msg in good:
            await msg.ack()
        self.processed += len(todo_all)

    async def handle(self, msg: Any) -> None:
        """Apply each event of one message exactly once (by its event id), each in its own transaction,
        and settle the message: nak'd (with a growing delay) at the first event that failed for a
        reason that may pass, else acked, or terminated when its only event was dead-lettered. A poison
        event of a batch goes to the dead-letter subject alone; the others are applied."""
        try:
            items = self._envelopes(msg)
        except MalformedEvent as exc:
            await self._dead_letter(msg, str(exc))
            await msg.term()
            return
        batch = bool(msg.headers and BATCH_HEADER in msg.headers)
        dead = False
        for item in items:
            if isinstance(item, MalformedEvent):
                await self._dead_letter(msg, str(item), data=item.data if batch else None)
                dead = True
                continue
            env, handler = item
            outcome = await self._apply_one(msg, env, handler, batch=batch)
            if outcome == "retry":
                return
            dead = dead or outcome == "dead"
        if dead and not batch:
            await msg.term()
        else:
            await msg.ack()

    async def _apply_one(self, msg: Any, env: events_pb2.Envelope, handler: Handler, *, batch: bool) -> str:
        """Apply one event in its own transaction: "done", "dead" (dead-lettered) or "retry" (the
        message was nak'd)."""
        data = env.SerializeToString() if batch else None
        try:
            async with UnitOfWork(self._engine, self._outbox) as uow:
                if await uow.mark_processed(self._inbox, consumer=self.name, event_id=env.event_id):
                    if self._prefetch is not None:
                        await self._prefetch(uow, [env])
                    await handler(uow, env)
                await uow.commit()
        except DomainError as exc:
            await self._dead_letter(msg, f"{exc.reason}: {exc.message}", env, data=data)
            await self._settle_dead(env, batch=batch)
            return "dead"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - transient until proven poison
            delivered = getattr(msg.metadata, "num_delivered", 1) or 1
            if delivered >= MAX_DELIVERIES:
                await self._dead_letter(msg, f"failed {delivered} times: {exc!r}", env, data=data)
                await self._settle_dead(env, batch=batch)
                return "dead"
            log.warning(
                "event failed; will redeliver",
                consumer=self.name,
                event_id=env.event_id,
                case_number=env.case_number,
                error=repr(exc),
            )
            await msg.nak(delay=min(0.2 * 2**delivered, 30.0))
            return "retry"
        self.processed += 1
        return "done"

    async def _settle_dead(self, env: events_pb2.Envelope, *, batch: bool) -> None:
        """Record a dead-lettered event of a batch in the inbox, so that a redelivery of its message (nak'd
        for another of its events) skips it instead of dead-lettering it again. (A message of one event
        is terminated instead: it is never delivered again.)"""
        if not batch:
            return
        async with UnitOfWork(self._engine, self._outbox) as uow:
            await uow.mark_processed(self._inbox, consumer=self.name, event_id=env.event_id)
            await uow.commit()

    async def _dead_letter(
        self,
        msg: Any,
        reason: str,
        env: events_pb2.Envelope | None = None,
        *,
        data: bytes | None = None,
    ) -> None:
        """Publish a poison event (`data`, else the whole message) to the dead-letter subject; the
        caller settles the message."""
        log.warning(
            "poison event dead-lettered",
            consumer=self.name,
            reason=reason,
            event_id=env.event_id if env else "",
            subject=msg.subject,
        )
        await self._js.publish(
            f"{DEAD_LETTER_PREFIX}{self.name}",
            msg.data if data is None else data,
            headers={"Onestop-Reason": reason[:500], "Onestop-Subject": msg.subject},
        )
        self.dead_lettered += 1

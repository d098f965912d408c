"""The supervision tick: warnings, urges and deemed approvals for the clocks whose next action is due.

No timer per clock and no scan: each clock keeps ``next_action_at`` (indexed); a tick locks the earliest
due rows with ``FOR UPDATE SKIP LOCKED`` (so replicas share the work and never take the same clock),
writes what they need in one transaction (warnings, urges and deemed-approval claims are unique per
clock/task, so even a lost lock could not double them), moves each clock's ``next_action_at`` on, commits,
and only then calls approval for the deemed approvals it claimed.

Speed (bench/bench_supervision_tick.py): a thousand due clocks are read, planned and written back with
set-based statements (services/supervision/bulk.py), and their events go to the outbox in one array
insert (repository.add_events writes the same rows as Outbox.add, whose row-by-row executemany alone
took a fifth of the budget), after which the relay is woken as a commit with events would. The events
themselves are built in bulk (``_events``: ids drawn at once, one timestamp per instant), which halved
their share of the tick.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from onestop.events.v1 import events_pb2
from services.common.calendar import CalendarMissing
from services.common.events import new_ids
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.supervision import bulk, deem, model, orm, repository
from services.supervision.clocks import SupervisionContext, raise_calendar_missing

log = get_logger(__name__)
CALENDAR_CHECK_S = 60.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TickResult:
    """What one tick did."""

    now: datetime
    processed: int
    warned: int
    urged: int
    deemed: int


@dataclass
class _Batch:
    warnings: list[dict[str, Any]]
    urges: list[dict[str, Any]]
    deems: list[dict[str, Any]]
    retries: list[dict[str, Any]]
    missing: dict[int, str]


def _ts(instant: datetime) -> Timestamp:
    """A protobuf Timestamp (what events.timestamp builds, without its slower calendar arithmetic)."""
    delta = instant - EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def _plan(ctx: SupervisionContext, row: dict[str, Any], now: datetime, batch: _Batch) -> None:
    """Decide what this clock needs now and move its next_action_at on (in ``row``)."""
    clock = repository.to_model(row)
    if clock.deem_state == "pending":  # claimed earlier but approval did not answer: ask again
        batch.retries.append(row)
        row["next_action_at"] = now + model.DEEM_RETRY
        return
    try:
        todo = model.actions(clock, now, ctx.calendar, center=ctx.center)
        after = model.apply(clock, todo, now)
        next_at = (
            now + model.DEEM_RETRY
            if todo.deem
            else model.next_action_at(after, ctx.calendar, center=ctx.center)
        )
    except CalendarMissing as exc:
        batch.missing.setdefault(exc.year, row["clock_id"])
        todo, after, next_at = model.Actions(), clock, None
    if next_at is not None and next_at <= now and not todo:
        log.error(
            "clock would be due again at once; parked", clock_id=row["clock_id"], next_action_at=next_at
        )
        next_at = None
    for level in todo.levels:
        batch.warnings.append({"clock_id": row["clock_id"], "level": level})
    if todo.urge:
        batch.urges.append({"task_id": row["task_id"], "clock_id": row["clock_id"], "due_at": row["due_at"]})
    if todo.deem:
        batch.deems.append(
            {
                "task_id": row["task_id"],
                "clock_id": row["clock_id"],
                "due_at": row["due_at"],
                "urged_at": after.urged_at,
                "claimed_at": now,
                "state": "pending",
                "attempts": 0,
                "note": "",
                "deemed_at": None,
            }
        )
    row.update(
        warned_level=after.warned_level,
        urged_at=after.urged_at,
        deem_state=after.deem_state,
        next_action_at=next_at,
    )


def _events(
    ctx: SupervisionContext,
    now: datetime,
    by_id: dict[str, dict[str, Any]],
    batch: _Batch,
    warned: set[tuple[Any, ...]],
    urged: set[tuple[Any, ...]],
) -> list[events_pb2.Envelope]:
    """clock_warned and task_urged for what this tick actually recorded.

    The envelopes events.new_event would build, made in bulk (a tick may write thousands): one
    timestamp for all, the ids drawn at once, each clock's due instant converted once for both events.
    """
    bodies: list[tuple[dict[str, Any], dict[str, Any]]] = []
    due: dict[str, Timestamp] = {}

    def due_of(row: dict[str, Any]) -> Timestamp:
        ts = due.get(row["clock_id"])
        if ts is None:
            ts = due[row["clock_id"]] = _ts(row["due_at"])
        return ts

    for w in batch.warnings:
        if (w["clock_id"], w["level"]) in warned:
            row = by_id[w["clock_id"]]
            warning = events_pb2.ClockWarned(
                task_id=row["task_id"], department=row["department"], level=w["level"], due_at=due_of(row)
            )
            bodies.append((row, {"clock_warned": warning}))
    for u in batch.urges:
        if (u["task_id"],) in urged:
            row = by_id[u["clock_id"]]
            urge = events_pb2.TaskUrged(
                task_id=row["task_id"], department=row["department"], due_at=due_of(row)
            )
            bodies.append((row, {"task_urged": urge}))
    occurred = _ts(now)
    return [
        events_pb2.Envelope(
            event_id=event_id,
            center=ctx.center,
            producer="supervision",
            case_id=row["case_id"],
            case_number=row["case_number"],
            occurred_at=occurred,
            **body,
        )
        for event_id, (row, body) in zip(new_ids(len(bodies)), bodies, strict=True)
    ]


async def tick(
    ctx: SupervisionContext, uow: Callable[[], UnitOfWork], *, limit: int | None = None
) -> TickResult:
    """Process the clocks whose next action is due now, earliest first (at most ``limit``)."""
    now = ctx.clock.now()
    batch = _Batch([], [], [], [], {})
    async with uow() as work:
        rows = await repository.claim_due(work.conn, now=now, limit=limit or ctx.tick_batch)
        by_id = {r["clock_id"]: r for r in rows}
        for row in rows:
            _plan(ctx, row, now, batch)
        warned = await bulk.insert_ignore(work.conn, orm.warnings, batch.warnings, same={"raised_at": now})
        urged = await bulk.insert_ignore(work.conn, orm.urges, batch.urges, same={"urged_at": now})
        claimed = await bulk.insert_ignore(work.conn, orm.deemed, batch.deems)
        events = _events(ctx, now, by_id, batch, warned, urged)
        await repository.add_events(work.conn, events, now=now)
        for year, clock_id in batch.missing.items():
            await raise_calendar_missing(work, ctx, year, detail=f"clock {clock_id} (tick)")
        await repository.update_ticked(work.conn, rows, now=now)
        await work.commit()
    if events and ctx.outbox is not None:
        ctx.outbox.wake()
    calls = [by_id[d["clock_id"]] for d in batch.deems if (d["task_id"],) in claimed] + batch.retries
    deemed = await deem.call_approval(ctx, uow, calls)
    if rows:
        log.info("tick", processed=len(rows), warned=len(warned), urged=len(urged), deemed=deemed)
    return TickResult(now=now, processed=len(rows), warned=len(warned), urged=len(urged), deemed=deemed)


async def run_forever(
    ctx: SupervisionContext,
    uow: Callable[[], UnitOfWork],
    *,
    interval_s: float,
    ticking: bool = True,
    calendar_check: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Tick every ``interval_s`` seconds (at once again while batches come back full); never returns."""
    backoff = interval_s
    checked = -math.inf
    while True:
        try:
            if calendar_check is not None and time.monotonic() - checked >= CALENDAR_CHECK_S:
                await calendar_check()
                checked = time.monotonic()
            if ticking:
                result = await tick(ctx, uow)
                if result.processed >= ctx.tick_batch:
                    continue
            backoff = interval_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database may be away for a while; try again later
            log.warning("tick failed; will retry", error=repr(exc), retry_in=backoff)
            backoff = min(backoff * 2, 60.0)
        await asyncio.sleep(backoff)

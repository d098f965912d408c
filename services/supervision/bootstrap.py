"""Wires supervision: the calendar, the approval client, event handlers, the servicer and the ticker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from onestop.events.v1 import events_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.calendar import WorkingCalendar, default_calendar
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime, ServiceParts
from services.common.settings import seconds
from services.supervision import deem, handlers, orm, recompute, store, ticker
from services.supervision.clocks import DeemApprover, SupervisionContext
from services.supervision.grpc_api import SupervisionApi

TICK_ENV = "ONESTOP_SUPERVISION_TICK_S"
DEFAULT_TICK_S = 5.0
CONSUMED = tuple(handlers.EVENT_HANDLERS)


def tick_interval(env: Mapping[str, str] | None = None) -> float:
    """Seconds between background ticks from $ONESTOP_SUPERVISION_TICK_S (0 turns the ticker off)."""
    return seconds(TICK_ENV, DEFAULT_TICK_S, env)


async def build(
    runtime: Runtime, *, approval: DeemApprover | None = None, calendar: WorkingCalendar | None = None
) -> ServiceParts:
    """Supervision's servicer, event handlers and background ticker (fakes may be passed in tests)."""
    settings = runtime.settings
    interval = tick_interval()
    ctx = SupervisionContext(
        center=settings.center,
        clock=runtime.clock,
        calendar=calendar or default_calendar(),
        approval=approval or deem.GrpcApproval(settings.peer("approval")),
        outbox=runtime.outbox,
    )

    async def supervision_ticker() -> None:
        # It also recomputes the open clocks whenever the calendar differs from the one they used;
        # with the ticker off (tests tick over gRPC) only that check runs.
        await ticker.run_forever(
            ctx,
            runtime.uow,
            interval_s=interval or ticker.CALENDAR_CHECK_S,
            ticking=interval > 0,
            calendar_check=partial(recompute.sync_calendar, ctx, runtime.uow),
        )

    return ServiceParts(
        servicers=[
            (
                SupervisionApi(runtime=runtime, ctx=ctx),
                supervision_pb2.DESCRIPTOR.services_by_name["SupervisionService"],
            )
        ],
        handlers=dict.fromkeys(CONSUMED, partial(_on_event, ctx)),
        prefetch=partial(prefetch, ctx),
        background=[supervision_ticker],
    )


async def prefetch(ctx: SupervisionContext, uow: UnitOfWork, envs: Sequence[events_pb2.Envelope]) -> None:
    """Read a consumer batch's cases and clocks ahead, in a few statements (see store.py)."""
    await store.prefetch(uow, envs, now=ctx.clock.now())


async def _on_event(ctx: SupervisionContext, uow: UnitOfWork, env: events_pb2.Envelope) -> None:
    await handlers.on_event(uow, ctx, env)


TABLES = (orm.outbox, orm.inbox)

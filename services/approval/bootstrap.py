"""Wires approval: the seal key, the calendar (with the years loaded at supervision), handlers, servicer
and consumer."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from onestop.approval.v1 import approval_pb2
from onestop.events.v1 import events_pb2
from services.approval import calendar_years, consumers, handlers, orm
from services.approval.grpc_api import ApprovalApi
from services.common.calendar import default_calendar
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime, ServiceParts
from services.common.seal import load_or_create_key


async def build(runtime: Runtime) -> ServiceParts:
    """Approval's servicer and event handlers."""
    settings = runtime.settings
    key_file = (
        Path(settings.seal_key_file) if settings.seal_key_file else settings.data_dir / "seal" / "ed25519.pem"
    )
    ctx = handlers.ApprovalContext(
        center=settings.center,
        clock=runtime.clock,
        key=load_or_create_key(key_file),
        calendar=default_calendar(),
    )
    async with runtime.engine.connect() as conn:
        await calendar_years.load_stored_years(conn, ctx)
    return ServiceParts(
        servicers=[
            (
                ApprovalApi(runtime=runtime, ctx=ctx),
                approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"],
            )
        ],
        handlers=dict.fromkeys(consumers.EVENT_HANDLERS, partial(_on_event, ctx)),
        prefetch=consumers.prefetch,
    )


async def _on_event(ctx: handlers.ApprovalContext, uow: UnitOfWork, env: events_pb2.Envelope) -> None:
    await consumers.on_event(uow, ctx, env)


TABLES = (orm.outbox, orm.inbox)

"""Wires routing: organisation and catalogue files, versions in the database, servicer, consumer."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from onestop.events.v1 import events_pb2
from onestop.routing.v1 import routing_pb2
from services.common.outbox import UnitOfWork
from services.common.runtime import Runtime, ServiceParts
from services.routing import handlers, orm
from services.routing.grpc_api import RoutingApi
from services.routing.org import load_org

DATA = Path(__file__).resolve().parent / "data"


async def build(runtime: Runtime) -> ServiceParts:
    """Load the organisation and the catalogue versions; import the initial catalogue if none."""
    org = load_org(os.environ.get("ONESTOP_ORG_FILE") or DATA / "demo_org.yaml")
    ctx = handlers.RoutingContext(
        center=runtime.settings.center,
        clock=runtime.clock,
        org=org,
        has_parent=bool(runtime.settings.parent_addr),
    )
    async with runtime.engine.connect() as conn:
        await handlers.load_versions(conn, ctx)
    if not ctx.versions:
        path = Path(os.environ.get("ONESTOP_CATALOGUE_FILE") or DATA / "demo_catalogue.yaml")
        async with runtime.uow() as uow:
            new, _ = await handlers.import_catalogue(
                uow,
                ctx,
                content=path.read_text(encoding="utf-8"),
                source=path.name,
                changed_by="system:initial-import",
            )
            await uow.commit()
        ctx.versions[new.version] = new
    return ServiceParts(
        servicers=[
            (RoutingApi(runtime=runtime, ctx=ctx), routing_pb2.DESCRIPTOR.services_by_name["RoutingService"])
        ],
        handlers={"case_accepted": partial(_on_accepted, ctx)},
        prefetch=partial(handlers.prefetch_routes, ctx),
    )


async def _on_accepted(ctx: handlers.RoutingContext, uow: UnitOfWork, env: events_pb2.Envelope) -> None:
    await handlers.on_case_accepted(uow, ctx, env)


TABLES = (orm.outbox, orm.inbox)

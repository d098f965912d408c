"""Routing applies a batch of accepted cases with their routes written in one statement: each case is
routed once, whatever the batch holds, exactly as one insert per case did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.events import new_event
from services.common.outbox import Outbox, UnitOfWork
from services.routing import handlers, orm
from services.routing.bootstrap import DATA
from services.routing.org import load_org

NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'routing.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    yield engine
    await engine.dispose()


async def _context(engine: AsyncEngine, outbox: Outbox) -> handlers.RoutingContext:
    ctx = handlers.RoutingContext(
        center="210200", clock=ManualClock(NOW), org=load_org(DATA / "demo_org.yaml")
    )
    async with UnitOfWork(engine, outbox) as uow:
        catalogue, _ = await handlers.import_catalogue(
            uow,
            ctx,
            content=(DATA / "demo_catalogue.yaml").read_text(encoding="utf-8"),
            source="demo_catalogue.yaml",
            changed_by="test",
        )
        await uow.commit()
    ctx.versions[catalogue.version] = catalogue
    return ctx


def _accepted(ctx: handlers.RoutingContext, case: str, matter: str = "TR-001") -> events_pb2.Envelope:
    return new_event(
        center="210200",
        producer="intake",
        at=NOW,
        case_id=case,
        case_number=f"N-{case}",
        body=events_pb2.CaseAccepted(matter_code=matter, matter_version=ctx.current.version),
    )


async def _apply(
    engine: AsyncEngine, outbox: Outbox, ctx: handlers.RoutingContext, envs: list[events_pb2.Envelope]
) -> list[events_pb2.Envelope]:
    """What the consumer does with a fetched batch: prefetch, then each event's handler, one commit."""
    async with UnitOfWork(engine, outbox) as uow:
        await handlers.prefetch_routes(ctx, uow, envs)
        for env in envs:
            await handlers.on_case_accepted(uow, ctx, env)
        await uow.commit()
        return list(uow.events)


async def test_a_batch_routes_each_case_once_and_leaves_cases_routed_before_alone(
    engine: AsyncEngine,
) -> None:
    outbox = Outbox(orm.outbox)
    ctx = await _context(engine, outbox)
    first = await _apply(engine, outbox, ctx, [_accepted(ctx, "c1")])
    assert [e.WhichOneof("body") for e in first] == ["case_routed"]
    # c1 again (another event of a case routed before), c2 twice in the batch, c3 once.
    batch = [_accepted(ctx, "c1"), _accepted(ctx, "c2"), _accepted(ctx, "c3"), _accepted(ctx, "c2")]
    emitted = await _apply(engine, outbox, ctx, batch)
    assert [(e.WhichOneof("body"), e.case_id) for e in emitted] == [
        ("case_routed", "c2"),
        ("case_routed", "c3"),
    ]
    assert all(len(e.case_routed.tasks) == 4 and e.occurred_at.ToDatetime(UTC) == NOW for e in emitted)
    async with engine.connect() as conn:
        routes = (await conn.execute(select(orm.routes).order_by(orm.routes.c.case_id))).mappings().all()
    # (SQLite keeps the UTC wall clock without its zone.)
    at = [r["routed_at"] if r["routed_at"].tzinfo else r["routed_at"].replace(tzinfo=UTC) for r in routes]
    assert [(r["case_id"], r["matter_code"], r["forwarded"], a) for r, a in zip(routes, at, strict=True)] == [
        (c, "TR-001", False, NOW) for c in ("c1", "c2", "c3")
    ]


async def test_an_unknown_matter_fails_its_batch_and_writes_no_route(engine: AsyncEngine) -> None:
    outbox = Outbox(orm.outbox)
    ctx = await _context(engine, outbox)
    with pytest.raises(handlers.NotFound):
        await _apply(engine, outbox, ctx, [_accepted(ctx, "c1"), _accepted(ctx, "c2", matter="NOPE")])
    async with engine.connect() as conn:
        assert (await conn.execute(select(orm.routes))).all() == []

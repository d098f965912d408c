"""Routing's handlers: the catalogue versions, and deciding where each accepted case goes."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from onestop.events.v1 import events_pb2
from services.common.clock import Clock, aware
from services.common.db import insert_ignore, unnest_insert, unnest_params
from services.common.errors import InvalidArgument, NotFound
from services.common.events import new_event
from services.common.outbox import UnitOfWork
from services.routing import orm
from services.routing.catalogue import Catalogue, CatalogueError, apply, diff, parse_catalogue, plan_tasks
from services.routing.catalogue_fields import Where, read_yaml_text
from services.routing.forwarding import place
from services.routing.org import Organisation

TASK_NAMESPACE = uuid.UUID("6f1c4c2e-8d1b-4f5e-9a57-0c1d2e3f4a5b")


@dataclass
class RoutingContext:
    """Routing's state: the organisation and every catalogue version, newest last."""

    center: str
    clock: Clock
    org: Organisation
    versions: dict[int, Catalogue] = field(default_factory=dict)
    has_parent: bool = False  # this node has a parent node to forward cases to

    @property
    def current(self) -> Catalogue:
        """The catalogue version in force."""
        if not self.versions:
            raise NotFound("no catalogue has been imported", zh="尚未导入事项目录")
        return self.versions[max(self.versions)]

    def catalogue(self, version: int) -> Catalogue:
        """A given version (0 = current)."""
        if not version:
            return self.current
        try:
            return self.versions[version]
        except KeyError:
            raise NotFound(
                f"no catalogue version {version}", field="version", zh=f"未找到第 {version} 版事项目录"
            ) from None


def _parse(
    ctx: RoutingContext, content: str, *, source: str, version: int, by: str, at: datetime
) -> Catalogue:
    where = Where(source=source, entry=None, error=CatalogueError)
    return parse_catalogue(
        read_yaml_text(content, where=where),
        source=source,
        departments=set(ctx.org.departments),
        version=version,
        changed_by=by,
        changed_at=at,
    )


async def load_versions(conn: AsyncConnection, ctx: RoutingContext) -> None:
    """Read every stored catalogue version into memory."""
    rows = (
        await conn.execute(select(orm.catalogue_versions).order_by(orm.catalogue_versions.c.version))
    ).mappings()
    for row in rows:
        ctx.versions[row["version"]] = _parse(
            ctx,
            row["content"],
            source=row["source"],
            version=row["version"],
            by=row["changed_by"],
            at=aware(row["changed_at"]) or ctx.clock.now(),
        )


async def import_catalogue(
    uow: UnitOfWork, ctx: RoutingContext, *, content: str, source: str, changed_by: str
) -> tuple[Catalogue, Any]:
    """Validate a catalogue file into the next version; on any error the current one stays."""
    if not changed_by.strip():
        raise InvalidArgument("changed_by is required", field="changed_by", zh="请填写事项目录的修改人")
    now = ctx.clock.now()
    if ctx.versions:
        new = apply(
            ctx.current,
            candidate=content,
            changed_by=changed_by,
            at=now,
            departments=set(ctx.org.departments),
            source=source,
        )
        change = diff(old=ctx.current, new=new)
    else:
        new = _parse(ctx, content, source=source, version=1, by=changed_by, at=now)
        change = diff(old=Catalogue(version=0, matters={}, changed_by="", changed_at=now), new=new)
    await uow.conn.execute(
        orm.catalogue_versions.insert().values(
            version=new.version,
            content=content,
            source=source,
            changed_by=changed_by,
            changed_at=now,
            added=list(change.added),
            removed=list(change.removed),
            changed=list(change.changed),
        )
    )
    return new, change


def task_id(case_id: str, department: str) -> str:
    """Deterministic task ids: a replayed routing yields the same tasks."""
    return str(uuid.uuid5(TASK_NAMESPACE, f"{case_id}/{department}"))


def _route(ctx: RoutingContext, env: events_pb2.Envelope, now: datetime) -> tuple[Any, Any, dict[str, Any]]:
    """The matter of an accepted case, where it is decided, and its route row."""
    body = env.case_accepted
    try:
        matter = ctx.catalogue(body.matter_version).matter(body.matter_code)
    except KeyError:
        raise NotFound(
            f"case {env.case_number}: matter {body.matter_code} v{body.matter_version} unknown",
            zh=f"报件 {env.case_number} 的事项 {body.matter_code}（第 {body.matter_version} 版目录）不存在",
        ) from None
    placement = place(org=ctx.org, center=ctx.center, matter=matter, has_parent=ctx.has_parent)
    row = {
        "case_id": env.case_id,
        "case_number": env.case_number,
        "matter_code": matter.code,
        "matter_version": body.matter_version,
        "decided_at_center": placement.parent_center if placement.forwarded else ctx.center,
        "forwarded": placement.forwarded,
        "forward_state": placement.forward_state,
        "routed_at": now,
    }
    return matter, placement, row


_ROUTE_COLUMNS = (
    "case_id",
    "case_number",
    "matter_code",
    "matter_version",
    "decided_at_center",
    "forwarded",
    "forward_state",
    "routed_at",
)
# uow.memo key: {case id: (route inserted by this transaction, routed_at)} for the batch's accepted cases.
_BATCH_ROUTES = "routing.batch_routes"


@functools.cache
def _insert_routes() -> Any:
    stmt = unnest_insert(orm.routes, _ROUTE_COLUMNS, "ignore")
    assert stmt is not None
    return stmt.returning(orm.routes.c.case_id)


async def prefetch_routes(ctx: RoutingContext, uow: UnitOfWork, envs: Sequence[events_pb2.Envelope]) -> None:
    """Insert the routes of a batch's accepted cases in one statement (PostgreSQL), before the handlers
    run: a case's handler then only learns whether its route was new. A route that exists already
    (the case was routed before) is left alone, as by `insert_ignore`; so is a case whose matter is
    unknown (its handler raises)."""
    if uow.conn.dialect.name != "postgresql":
        return  # SQLite: one insert per case in the handler
    now = ctx.clock.now()
    rows: dict[str, dict[str, Any]] = {}
    for env in envs:
        if env.WhichOneof("body") != "case_accepted" or env.case_id in rows:
            continue
        try:
            rows[env.case_id] = _route(ctx, env, now)[2]
        except NotFound:
            continue
    if len(rows) < 2:
        return  # one case: the handler's own insert is as cheap
    result = await uow.conn.execute(
        _insert_routes(), unnest_params(orm.routes, _ROUTE_COLUMNS, list(rows.values()))
    )
    inserted = {r[0] for r in result}
    uow.memo[_BATCH_ROUTES] = {case_id: (case_id in inserted, now) for case_id in rows}


async def on_case_accepted(uow: UnitOfWork, ctx: RoutingContext, env: events_pb2.Envelope) -> None:
    """Turn the matter's workflow into department tasks here (R4, R8, R11)."""
    body = env.case_accepted
    batch = uow.memo.get(_BATCH_ROUTES, {})
    if env.case_id in batch:  # the batch's prefetch wrote the route; a second event of the case finds it
        inserted, now = batch.pop(env.case_id)
        matter, placement, _ = _route(ctx, env, now)
    else:
        now = ctx.clock.now()
        matter, placement, row = _route(ctx, env, now)
        inserted = await insert_ignore(uow.conn, orm.routes, row)
    if not inserted:
        return
    if placement.forwarded:  # decided above: intake uploads it (after the preliminary review, if any)
        uow.emit(
            new_event(
                center=ctx.center,
                producer="routing",
                at=now,
                case_id=env.case_id,
                case_number=env.case_number,
                body=events_pb2.CaseForwarded(parent_center=placement.parent_center, reason=placement.reason),
            )
        )
        if not placement.preliminary:
            return
    days = matter.preliminary_review_days if placement.preliminary else 0
    routed = events_pb2.CaseRouted(
        matter_code=matter.code,
        promised_limit_days=days or matter.promised_limit_days,
        statutory_limit_days=days or matter.statutory_limit_days,
        deemed_approval_allowed=matter.deemed_approval_allowed,
        warning_threshold_days=min(matter.warning_threshold_days, days)
        if days
        else matter.warning_threshold_days,
        on_the_spot=matter.on_the_spot,
        accepted_by=body.accepted_by,
        preliminary_review=bool(placement.preliminary),
        special_procedures=[str(p) for p in matter.special_procedures],
    )
    routed.accepted_at.CopyFrom(env.occurred_at)
    for planned in placement.preliminary or plan_tasks(matter):
        window = ctx.org.window(center=ctx.center, department=planned.department)
        routed.tasks.add(
            task_id=task_id(env.case_id, planned.department),
            department=planned.department,
            window=window.code if window else f"{ctx.center}-{planned.department}",
            group=planned.group,
            prerequisites=list(planned.prerequisites),
            lead=planned.lead,
        )
    uow.emit(
        new_event(
            center=ctx.center,
            producer="routing",
            at=now,
            body=routed,
            case_id=env.case_id,
            case_number=env.case_number,
        )
    )


async def get_route(conn: AsyncConnection, case_id: str) -> dict[str, Any]:
    """Where a case is decided."""
    row = (await conn.execute(select(orm.routes).where(orm.routes.c.case_id == case_id))).mappings().first()
    if row is None:
        raise NotFound(f"case {case_id} has not been routed", zh="该报件尚未分办")
    return dict(row)

"""Calendar years an administrator loads at supervision reach approval's due dates.

Supervision keeps the working-day calendar's loaded years and emits CalendarYearLoaded with each one.
Approval keeps its own copy (it never reads supervision's tables), adds the year to its calendar, and
recomputes the due instant of every open task: a task accepted late in a year whose period runs into a
year nobody had loaded yet has no due instant until then (the queue shows it last, supervision raises the
visible alarm), and gets one here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from onestop.events.v1 import events_pb2
from services.approval import model, orm, special_procedures
from services.approval.handlers import ApprovalContext
from services.common.calendar import CalendarError, YearData
from services.common.clock import aware
from services.common.db import insert_ignore, update_many
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork

log = get_logger(__name__)


async def on_calendar_year_loaded(uow: UnitOfWork, ctx: ApprovalContext, env: events_pb2.Envelope) -> None:
    """Keep the year, add it to the calendar, and give every open task its due instant again."""
    body = env.calendar_year_loaded
    data = YearData.build(
        body.year, holidays=dict(body.holidays), workdays=list(body.workdays), source=body.source
    )
    row = {
        "year": body.year,
        "holidays": dict(body.holidays),
        "workdays": sorted(body.workdays),
        "source": body.source,
        "loaded_at": ctx.clock.now(),
    }
    if not await insert_ignore(uow.conn, orm.calendar_years, row):
        await uow.conn.execute(
            update(orm.calendar_years).where(orm.calendar_years.c.year == body.year).values(row)
        )
    ctx.calendar.add_year(data)
    moved = await _recompute_open_tasks(uow, ctx)
    log.info("calendar year loaded", year=body.year, source=body.source, tasks_moved=moved)


async def load_stored_years(conn: Any, ctx: ApprovalContext) -> list[int]:
    """At start: the years loaded earlier (kept in approval's table) into this process's calendar."""
    rows = (await conn.execute(select(orm.calendar_years))).mappings().all()
    for r in rows:
        ctx.calendar.add_year_if_changed(
            YearData.build(r["year"], holidays=r["holidays"], workdays=r["workdays"], source=r["source"])
        )
    return [r["year"] for r in rows]


async def _recompute_open_tasks(uow: UnitOfWork, ctx: ApprovalContext) -> int:
    t, p, sp = orm.tasks, orm.plans, orm.special_procedures
    stmt = (
        select(
            t.c.task_id, t.c.case_id, t.c.due_at, t.c.extension_days, p.c.accepted_at, p.c.promised_limit_days
        )
        .join(p, p.c.case_id == t.c.case_id)
        .where(p.c.state == "open", t.c.status.not_in(sorted(model.DONE)))
    )
    tasks = (await uow.conn.execute(stmt)).mappings().all()
    if not tasks:
        return 0
    pauses: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    ended = select(sp.c.task_id, sp.c.started_at, sp.c.ended_at).where(sp.c.state == special_procedures.ENDED)
    for task_id, start, end in (await uow.conn.execute(ended)).all():
        if (a := aware(start)) and (b := aware(end)):
            pauses[task_id].append((a, b))
    changed: dict[str, datetime | None] = {}
    for task in tasks:
        accepted = aware(task["accepted_at"])
        if accepted is None:
            continue
        try:
            due = ctx.calendar.due_instant(
                accepted, task["promised_limit_days"] + task["extension_days"], pauses[task["task_id"]]
            )
        except CalendarError:
            due = None
        if due != aware(task["due_at"]):
            changed[task["task_id"]] = due
    await update_many(
        uow.conn, t, "task_id", ("due_at",), [{"task_id": k, "due_at": v} for k, v in changed.items()]
    )
    # Rows this transaction already read (a case event earlier in the batch) carry the new instant too,
    # or their write at commit would put the old one back.
    for key, case in uow.memo.items():
        if isinstance(key, tuple) and key and key[0] == "case" and case:
            for row in case[1]:
                if row["task_id"] in changed:
                    row["due_at"] = changed[row["task_id"]]
    return len(changed)

"""Recomputing open clocks when the working-day calendar gains or changes a year (§5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import Table, select, update

from onestop.events.v1 import events_pb2
from services.common.calendar import WorkingCalendar, YearData
from services.common.db import insert_ignore
from services.common.logging import get_logger
from services.common.outbox import UnitOfWork
from services.supervision import clocks, orm, repository
from services.supervision.clocks import SupervisionContext

log = get_logger(__name__)
STATE_NAME = "calendar"


def fingerprint(cal: WorkingCalendar) -> str:
    """A digest of every loaded year's holidays and adjusted workdays."""
    data = []
    for year in cal.years():
        y = cal.year_data(year)
        data.append(
            [year, sorted(d.isoformat() for d in y.holidays), sorted(d.isoformat() for d in y.workdays)]
        )
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


async def recompute_all(
    ctx: SupervisionContext,
    uow: Callable[[], UnitOfWork],
    *,
    batch: int = 1000,
    detail: str = "calendar data changed",
) -> int:
    """Recompute every open clock in pages of ``batch``; record those whose due moved. How many moved."""
    after, moved = "", 0
    years = [str(y) for y in ctx.calendar.years()]
    while True:
        async with uow() as work:
            rows = await repository.open_clocks_after(work.conn, after=after, limit=batch)
            for row in rows:
                clock = repository.to_model(row)
                done = clocks.compute(ctx, clock)
                if (
                    done.clock.due_at == row["due_at"]
                    and done.missing_year == row["calendar_missing"]
                    and (done.next_action_at == row["next_action_at"] or clock.deem_state)
                ):
                    continue
                moved += done.clock.due_at != row["due_at"]
                await clocks.save(
                    work, ctx, row, clock, cause="calendar", at=ctx.clock.now(), detail=detail, always=False
                )
            if not rows:
                # Alarms for years that now have data are cleared (once every clock has been recomputed).
                await work.conn.execute(
                    update(orm.alarms)
                    .where(
                        orm.alarms.c.kind == "calendar_missing",
                        orm.alarms.c.key.in_(years),
                        orm.alarms.c.cleared_at.is_(None),
                    )
                    .values(cleared_at=ctx.clock.now())
                )
            await work.commit()
        if not rows:
            break
        after = rows[-1]["clock_id"]
    log.info("open clocks recomputed", moved=moved, detail=detail)
    return moved


async def load_stored_years(ctx: SupervisionContext, uow: Callable[[], UnitOfWork]) -> list[int]:
    """Bring years another replica (or an earlier run) loaded into this process's calendar; those added."""
    async with uow() as work:
        rows = (await work.conn.execute(select(orm.calendar_years))).mappings().all()
    added = []
    for r in rows:
        data = YearData.build(r["year"], holidays=r["holidays"], workdays=r["workdays"], source=r["source"])
        if ctx.calendar.add_year_if_changed(data):
            added.append(data.year)
    return added


async def sync_calendar(ctx: SupervisionContext, uow: Callable[[], UnitOfWork]) -> int | None:
    """Recompute the open clocks when the calendar differs from the one they were computed with."""
    await load_stored_years(ctx, uow)
    current = fingerprint(ctx.calendar)
    async with uow() as work:
        stored = (
            await work.conn.execute(
                select(orm.calendar_state.c.fingerprint).where(orm.calendar_state.c.name == STATE_NAME)
            )
        ).scalar()
    if stored == current:
        return None
    moved = await recompute_all(ctx, uow, detail="calendar data changed")
    async with uow() as work:
        await _upsert(
            work,
            orm.calendar_state,
            {"name": STATE_NAME, "fingerprint": current, "updated_at": ctx.clock.now()},
        )
        await work.commit()
    return moved


async def _upsert(work: UnitOfWork, table: Table, row: dict[str, Any]) -> None:
    if not await insert_ignore(work.conn, table, row):
        key = next(iter(table.primary_key.columns))
        await work.conn.execute(update(table).where(key == row[key.name]).values(row))


async def load_year(
    ctx: SupervisionContext,
    uow: Callable[[], UnitOfWork],
    *,
    year: int,
    holidays: Iterable[date | str] | Mapping[date | str, str],
    workdays: Iterable[date | str],
    source: str = "admin",
) -> int:
    """Admin: load (or replace) one calendar year for every replica, then recompute the open clocks."""
    data = YearData.build(year, holidays=holidays, workdays=workdays, source=source)
    async with uow() as work:
        await _upsert(
            work,
            orm.calendar_years,
            {
                "year": year,
                "holidays": {d.isoformat(): name for d, name in data.holidays.items()},
                "workdays": sorted(d.isoformat() for d in data.workdays),
                "source": source,
                "loaded_at": ctx.clock.now(),
            },
        )
        # With the year, in its transaction: approval (and any other service that computes due dates)
        # takes the year from this fact.
        work.emit(
            ctx.event(
                events_pb2.CalendarYearLoaded(
                    year=year,
                    holidays={d.isoformat(): name for d, name in data.holidays.items()},
                    workdays=sorted(d.isoformat() for d in data.workdays),
                    source=source,
                )
            )
        )
        await work.commit()
    ctx.calendar.add_year(data)
    log.info("calendar year loaded", year=year, source=source)
    return await sync_calendar(ctx, uow) or 0


async def status(
    ctx: SupervisionContext, uow: Callable[[], UnitOfWork]
) -> tuple[list[int], list[dict[str, Any]]]:
    """The years open clocks need but no data covers (open alarms), and the years loaded here."""
    async with uow() as work:
        missing = (
            await work.conn.execute(
                select(orm.alarms.c.key).where(
                    orm.alarms.c.kind == "calendar_missing", orm.alarms.c.cleared_at.is_(None)
                )
            )
        ).scalars()
        years = sorted(int(k) for k in missing if str(k).isdigit() and int(k) not in ctx.calendar.years())
        loaded = [dict(r) for r in (await work.conn.execute(select(orm.calendar_years))).mappings()]
    return years, sorted(loaded, key=lambda r: r["year"])

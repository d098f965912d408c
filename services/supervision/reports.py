"""Loading the facts behind statistics and assessments from supervision's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.supervision import orm, ranking, stats


def _staff(row: Any) -> tuple[str, ...]:
    return (row["decided_by"],) if row["decided_by"] else tuple(row["claimants"] or ())


def _fact(row: Any) -> stats.ClockFact:
    return stats.ClockFact(
        case_id=row["case_id"],
        task_id=row["task_id"],
        center=row["center"],
        matter_code=row["matter_code"],
        department=row["department"],
        window=row["window"],
        staff=_staff(row),
        started_at=row["started_at"],
        due_at=row["due_at"],
        stopped_at=row["stopped_at"],
        outcome=row["outcome"],
        working_days=row["working_days"],
    )


async def statistics(
    conn: AsyncConnection, *, group_by: str, start: datetime, end: datetime
) -> list[stats.Row]:
    """Figures per group for [start, end) (see stats.py for the definitions)."""
    if group_by not in stats.GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(stats.GROUPS)}")
    c = orm.clocks
    level = c.c.task_id == "" if group_by in stats.CASE_GROUPS else c.c.task_id != ""
    cols = (
        c.c.case_id,
        c.c.task_id,
        c.c.center,
        c.c.matter_code,
        c.c.department,
        c.c.window,
        c.c.decided_by,
        c.c.claimants,
        c.c.started_at,
        c.c.due_at,
        c.c.stopped_at,
        c.c.outcome,
        c.c.working_days,
    )
    rows = (
        await conn.execute(
            select(*cols).where(
                level, c.c.started_at < end, (c.c.stopped_at.is_(None)) | (c.c.stopped_at >= start)
            )
        )
    ).mappings()
    facts = [_fact(r) for r in rows]
    marks: dict[str, list[stats.Mark]] = {}
    for table, at_col, extra in (
        (orm.urges, orm.urges.c.urged_at, None),
        (orm.deemed, orm.deemed.c.deemed_at, orm.deemed.c.state == "deemed"),
    ):
        # An urge or a deemed approval is counted under its clock's center, matter, department, window, staff.
        stmt = (
            select(
                at_col.label("at"),
                c.c.center,
                c.c.matter_code,
                c.c.department,
                c.c.window,
                c.c.decided_by,
                c.c.claimants,
            )
            .join(c, c.c.clock_id == table.c.clock_id)
            .where(at_col >= start, at_col < end)
        )
        if extra is not None:
            stmt = stmt.where(extra)
        marks[table.name] = [
            stats.Mark(
                center=r["center"],
                matter_code=r["matter_code"],
                department=r["department"],
                window=r["window"],
                staff=_staff(r),
                at=r["at"],
            )
            for r in (await conn.execute(stmt)).mappings()
        ]
    e = orm.evaluations
    ratings = [
        stats.Rating(
            case_id=r["case_id"],
            center=r["center"],
            matter_code=r["matter_code"],
            rating=r["rating"],
            at=r["submitted_at"],
        )
        for r in (
            await conn.execute(select(e).where(e.c.submitted_at >= start, e.c.submitted_at < end))
        ).mappings()
    ]
    case_tasks: dict[str, list[stats.ClockFact]] = {}
    if ratings and group_by not in stats.CASE_GROUPS:
        rated = sorted({r.case_id for r in ratings})
        for r in (
            await conn.execute(select(*cols).where(c.c.task_id != "", c.c.case_id.in_(rated)))
        ).mappings():
            case_tasks.setdefault(r["case_id"], []).append(_fact(r))
    return stats.statistics(
        group_by=group_by,
        start=start,
        end=end,
        clocks=facts,
        urges=marks[orm.urges.name],
        deemed=marks[orm.deemed.name],
        ratings=ratings,
        case_tasks=case_tasks,
        forwarded=await _forwarded(conn, start=start, end=end) if group_by in stats.CASE_GROUPS else (),
    )


async def _forwarded(conn: AsyncConnection, *, start: datetime, end: datetime) -> list[stats.Forwarded]:
    """The cases sent up to the parent before `end` and not closed before `start`."""
    k = orm.cases.c
    stmt = select(k.center, k.matter_code, k.forwarded_at, k.status, k.concluded_at, k.outcome).where(
        k.forwarded_at.is_not(None),
        k.forwarded_at < end,
        or_(k.concluded_at.is_(None), k.concluded_at >= start),
    )
    return [
        stats.Forwarded(
            center=r["center"],
            matter_code=r["matter_code"],
            forwarded_at=r["forwarded_at"],
            closed_at=r["concluded_at"] if r["status"] in ("concluded", "withdrawn") else None,
            outcome=r["outcome"],
        )
        for r in (await conn.execute(stmt)).mappings()
    ]


async def assess_windows(
    conn: AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    rules: ranking.RankingRules = ranking.DEFAULT_RULES,
) -> list[ranking.Assessment]:
    """Every window's score, grade and veto for a period (a quarter, for the quarterly grade)."""
    return ranking.assess(await statistics(conn, group_by="window", start=start, end=end), rules)


async def red_flag_windows(
    conn: AsyncConnection, *, year: int, rules: ranking.RankingRules = ranking.DEFAULT_RULES
) -> list[ranking.Assessment]:
    """The year's red-flag windows."""
    start, end = ranking.year(year)
    return ranking.red_flag_windows(await statistics(conn, group_by="window", start=start, end=end), rules)

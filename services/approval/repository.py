"""Approval's data access (SQLAlchemy Core on the unit of work's connection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.approval import orm
from services.common.errors import NotFound
from services.common.outbox import UnitOfWork


async def get_plan(
    conn: AsyncConnection, *, case_id: str = "", case_number: str = ""
) -> dict[str, Any] | None:
    """A case plan by id or number."""
    cond = orm.plans.c.case_id == case_id if case_id else orm.plans.c.case_number == case_number
    row = (await conn.execute(select(orm.plans).where(cond))).mappings().first()
    return dict(row) if row else None


async def lock_case(conn: AsyncConnection, case_id: str) -> dict[str, Any] | None:
    """Lock a case's plan row: the one mutex every change to a case's tasks takes first."""
    stmt = select(orm.plans).where(orm.plans.c.case_id == case_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def lock_case_of_task(
    conn: AsyncConnection, task_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Lock the case a task belongs to and load its plan and every task: two round trips."""
    stmt = _LOCK_PLAN_OF_TASK if conn.dialect.name == "postgresql" else _PLAN_OF_TASK
    plan = (await conn.execute(stmt, {"task_id": task_id})).mappings().first()
    if plan is None:
        raise NotFound(f"no task {task_id}")
    return dict(plan), await case_tasks(conn, plan["case_id"])


# The decision path's reads, built once (values as parameters).
_PLAN_OF_TASK = select(orm.plans).where(
    orm.plans.c.case_id
    == select(orm.tasks.c.case_id).where(orm.tasks.c.task_id == bindparam("task_id")).scalar_subquery()
)
_LOCK_PLAN_OF_TASK = _PLAN_OF_TASK.with_for_update()
_CASE_TASKS = (
    select(orm.tasks)
    .where(orm.tasks.c.case_id == bindparam("case_id"))
    .order_by(orm.tasks.c.grp, orm.tasks.c.department)
)


async def lock_cases_of_tasks(conn: AsyncConnection, task_ids: Sequence[str]) -> None:
    """Lock the cases of several tasks in one statement, in case id order (so two batches of decisions
    cannot deadlock on each other)."""
    if not task_ids or conn.dialect.name != "postgresql":  # SQLite: one writer at a time anyway
        return
    owners = select(orm.tasks.c.case_id).where(orm.tasks.c.task_id.in_(task_ids))
    stmt = (
        select(orm.plans.c.case_id)
        .where(orm.plans.c.case_id.in_(owners))
        .order_by(orm.plans.c.case_id)
        .with_for_update()
    )
    await conn.execute(stmt)


async def insert_plan(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Insert a case plan."""
    await conn.execute(orm.plans.insert().values(**row))


async def update_plan(conn: AsyncConnection, case_id: str, **values: Any) -> None:
    """Update a case plan."""
    await conn.execute(update(orm.plans).where(orm.plans.c.case_id == case_id).values(**values))


async def insert_tasks(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert the tasks of a plan."""
    if rows:
        await conn.execute(orm.tasks.insert(), rows)


async def get_task(conn: AsyncConnection, task_id: str, *, lock: bool = False) -> dict[str, Any]:
    """One task, or NOT_FOUND; with lock=True its case is locked first (see lock_case)."""
    stmt = select(orm.tasks).where(orm.tasks.c.task_id == task_id)
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    if lock:
        await lock_case(conn, row["case_id"])
        row = (await conn.execute(stmt)).mappings().first()
        assert row is not None
    return dict(row)


async def case_tasks(conn: AsyncConnection, case_id: str, *, lock: bool = False) -> list[dict[str, Any]]:
    """Every task of a case, in plan order; with lock=True the case is locked first."""
    if lock:
        await lock_case(conn, case_id)
    return [dict(r) for r in (await conn.execute(_CASE_TASKS, {"case_id": case_id})).mappings()]


async def update_task(conn: AsyncConnection, task_id: str, **values: Any) -> None:
    """Update one task."""
    await conn.execute(update(orm.tasks).where(orm.tasks.c.task_id == task_id).values(**values))


async def queue(
    conn: AsyncConnection, *, department: str, statuses: tuple[int, ...], limit: int
) -> list[dict[str, Any]]:
    """A window's queue: priority first, then the nearest due time."""
    stmt = select(orm.tasks).where(orm.tasks.c.status.in_(statuses))
    if department:
        stmt = stmt.where(orm.tasks.c.department == department)
    stmt = stmt.order_by(orm.tasks.c.priority.desc(), orm.tasks.c.due_at, orm.tasks.c.created_at).limit(limit)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def add_opinion(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Record an opinion (the shared discussion record of a joint review)."""
    await conn.execute(orm.opinions.insert().values(**row))


async def insert_extension(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Record an extension request."""
    await conn.execute(orm.extensions.insert().values(**row))


async def get_extension(conn: AsyncConnection, extension_id: str) -> dict[str, Any]:
    """One extension, or NOT_FOUND."""
    row = (
        (await conn.execute(select(orm.extensions).where(orm.extensions.c.extension_id == extension_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no extension request {extension_id}")
    return dict(row)


async def update_extension(conn: AsyncConnection, extension_id: str, **values: Any) -> None:
    """Update an extension request."""
    await conn.execute(
        update(orm.extensions).where(orm.extensions.c.extension_id == extension_id).values(**values)
    )


async def extensions(
    conn: AsyncConnection, *, department: str = "", state: str = "", task_id: str = ""
) -> list[dict[str, Any]]:
    """Extension requests, oldest first."""
    stmt = select(orm.extensions)
    if department:
        stmt = stmt.where(orm.extensions.c.department == department)
    if state:
        stmt = stmt.where(orm.extensions.c.state == state)
    if task_id:
        stmt = stmt.where(orm.extensions.c.task_id == task_id)
    return [dict(r) for r in (await conn.execute(stmt.order_by(orm.extensions.c.requested_at))).mappings()]


def add_decision(uow: UnitOfWork, row: dict[str, Any]) -> None:
    """Keep a sealed decision (written with the unit of work's other decisions just before it commits)."""
    uow.insert_later(orm.decisions, row, ignore=False)


async def case_decision(conn: AsyncConnection, case_number: str) -> bytes | None:
    """The sealed joined decision of a case."""
    row = (
        await conn.execute(
            select(orm.decisions.c.sealed).where(
                orm.decisions.c.case_number == case_number, orm.decisions.c.task_id == ""
            )
        )
    ).first()
    return bytes(row[0]) if row else None


async def opinions(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    """A case's opinions in the order they were given."""
    stmt = (
        select(orm.opinions, orm.tasks.c.department)
        .join(orm.tasks, orm.tasks.c.task_id == orm.opinions.c.task_id)
        .where(orm.opinions.c.case_id == case_id)
        .order_by(orm.opinions.c.at, orm.opinions.c.id)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]

"""Approval's data access (SQLAlchemy Core on the unit of work's connection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Result, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.approval import orm
from services.common.db import one_of
from services.common.errors import NotFound
from services.common.outbox import UnitOfWork


async def get_plan(
    conn: AsyncConnection, *, case_id: str = "", case_number: str = ""
) -> dict[str, Any] | None:
    """A case plan by id or number."""
    cond = orm.plans.c.case_id == case_id if case_id else orm.plans.c.case_number == case_number
    row = (await conn.execute(select(orm.plans).where(cond))).mappings().first()
    return dict(row) if row else None


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    # Rows as plain dicts (cheaper than RowMapping, which looks each key up): hot reads take many.
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


# A case (its plan and every task, in plan order) as the handlers of one transaction see it: read once,
# locked, kept in `uow.memo` and changed there in place; written back whole with `save_plan`/`save_task`.
Case = tuple[dict[str, Any], list[dict[str, Any]]]


def _plans_in(*, postgresql: bool) -> Any:
    return select(orm.plans).where(one_of(orm.plans.c.case_id, "case_ids", postgresql=postgresql))


def _plans_of_tasks(*, postgresql: bool) -> Any:
    owners = select(orm.tasks.c.case_id).where(one_of(orm.tasks.c.task_id, "task_ids", postgresql=postgresql))
    return select(orm.plans).where(orm.plans.c.case_id.in_(owners))


def _tasks_of_cases(*, postgresql: bool) -> Any:
    return (
        select(orm.tasks)
        .where(one_of(orm.tasks.c.case_id, "case_ids", postgresql=postgresql))
        .order_by(orm.tasks.c.case_id, orm.tasks.c.grp, orm.tasks.c.department)
    )


# Built once (values as parameters), by dialect. The plans are locked in case id order, so two
# transactions that lock several cases cannot deadlock on each other; the tasks are read after the lock is
# held, so they are the committed state of a locked case. SQLite has one writer at a time anyway.
_PLANS = {
    True: {
        "case_ids": _plans_in(postgresql=True).order_by(orm.plans.c.case_id).with_for_update(),
        "task_ids": _plans_of_tasks(postgresql=True).order_by(orm.plans.c.case_id).with_for_update(),
    },
    False: {"case_ids": _plans_in(postgresql=False), "task_ids": _plans_of_tasks(postgresql=False)},
}
_TASKS_OF_CASES = {True: _tasks_of_cases(postgresql=True), False: _tasks_of_cases(postgresql=False)}
_CASE_TASKS = (
    select(orm.tasks)
    .where(orm.tasks.c.case_id == bindparam("case_id"))
    .order_by(orm.tasks.c.grp, orm.tasks.c.department)
)


async def load_cases(uow: UnitOfWork, *, case_ids: Sequence[str] = (), task_ids: Sequence[str] = ()) -> None:
    """Lock the cases named (or owning the tasks named) and read their plans and tasks into `uow.memo`,
    in two statements: what the handlers of a batch then read with `locked_case`/`case_of_task`."""
    by, keys = ("task_ids", list(task_ids)) if task_ids else ("case_ids", list(case_ids))
    if not keys:
        return
    postgresql = uow.conn.dialect.name == "postgresql"
    plans = {r["case_id"]: r for r in _dicts(await uow.conn.execute(_PLANS[postgresql][by], {by: keys}))}
    tasks: dict[str, list[dict[str, Any]]] = {case_id: [] for case_id in plans}
    if plans:
        for r in _dicts(await uow.conn.execute(_TASKS_OF_CASES[postgresql], {"case_ids": list(plans)})):
            tasks[r["case_id"]].append(r)
    for case_id, plan in plans.items():
        if ("case", case_id) not in uow.memo:  # what this transaction changed stays as it is
            remember_case(uow, plan, tasks[case_id])
    if by == "case_ids":
        for case_id in keys:
            uow.memo.setdefault(("case", case_id), None)  # known absent


def remember_case(uow: UnitOfWork, plan: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
    """Keep a case (read or just created) for the rest of the transaction."""
    uow.memo[("case", plan["case_id"])] = (plan, tasks)
    for task in tasks:
        uow.memo[("task", task["task_id"])] = plan["case_id"]


async def locked_case(uow: UnitOfWork, case_id: str) -> Case | None:
    """A case, locked for the rest of the transaction (read once); None when approval has no plan."""
    if ("case", case_id) not in uow.memo:
        await load_cases(uow, case_ids=[case_id])
    return cast("Case | None", uow.memo[("case", case_id)])


async def case_of_task(uow: UnitOfWork, task_id: str) -> Case:
    """The case a task belongs to, locked (see `locked_case`), or NOT_FOUND."""
    if ("task", task_id) not in uow.memo:
        await load_cases(uow, task_ids=[task_id])
    case_id = uow.memo.get(("task", task_id))
    if case_id is None:
        raise NotFound(f"no task {task_id}", zh="未找到该审批任务")
    return cast(Case, uow.memo[("case", case_id)])


def task_in(case: Case, task_id: str) -> dict[str, Any]:
    """One task of a case."""
    return next(t for t in case[1] if t["task_id"] == task_id)


def save_plan(uow: UnitOfWork, plan: dict[str, Any]) -> None:
    """Write a (whole) plan row at commit, with the transaction's other plans in one statement."""
    uow.upsert_later(orm.plans, plan)


def save_task(uow: UnitOfWork, task: dict[str, Any]) -> None:
    """Write a (whole) task row at commit, with the transaction's other tasks in one statement."""
    uow.upsert_later(orm.tasks, task)


_TASK = select(orm.tasks).where(orm.tasks.c.task_id == bindparam("task_id"))


async def get_task(conn: AsyncConnection, task_id: str) -> dict[str, Any]:
    """One task, or NOT_FOUND (a read outside a unit of work that changes tasks)."""
    row = (await conn.execute(_TASK, {"task_id": task_id})).mappings().first()
    if row is None:
        raise NotFound(f"no task {task_id}", zh="未找到该审批任务")
    return dict(row)


async def case_tasks(conn: AsyncConnection, case_id: str) -> list[dict[str, Any]]:
    """Every task of a case, in plan order."""
    return _dicts(await conn.execute(_CASE_TASKS, {"case_id": case_id}))


def _queue(*, by_department: bool, postgresql: bool) -> Any:
    stmt = select(orm.tasks).where(one_of(orm.tasks.c.status, "statuses", postgresql=postgresql))
    if by_department:
        stmt = stmt.where(orm.tasks.c.department == bindparam("department"))
    return stmt.order_by(orm.tasks.c.priority.desc(), orm.tasks.c.due_at, orm.tasks.c.created_at).limit(
        bindparam("limit")
    )


_QUEUE = {(d, pg): _queue(by_department=d, postgresql=pg) for d in (True, False) for pg in (True, False)}


async def queue(
    conn: AsyncConnection, *, department: str, statuses: tuple[int, ...], limit: int
) -> list[dict[str, Any]]:
    """A window's queue (or every department's): priority first, then the nearest due time."""
    params = {"statuses": list(statuses), "department": department, "limit": limit}
    stmt = _QUEUE[bool(department), conn.dialect.name == "postgresql"]
    return _dicts(await conn.execute(stmt, params))


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
        raise NotFound(f"no extension request {extension_id}", zh="未找到该延期申请")
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

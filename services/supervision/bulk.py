"""Set-based writes for the tick: a thousand rows in one statement.

On PostgreSQL every varying column travels as one array parameter and values shared by every row as
one scalar (``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``): one round trip and
one plan instead of a thousand bound rows.  SQLite (one process, small data) uses plain executemany.
Table and column names come from the metadata, never from input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def _q(conn: AsyncConnection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def _type(conn: AsyncConnection, table: Table, name: str) -> str:
    return str(table.c[name].type.compile(dialect=conn.dialect))


def _source(
    conn: AsyncConnection, table: Table, names: Sequence[str], same: Sequence[str]
) -> tuple[str, str]:
    """The ``unnest(...) AS u(...)`` clause and the select list (array columns, then shared scalars)."""
    arrays = ", ".join(f"CAST(:a{i} AS {_type(conn, table, n)}[])" for i, n in enumerate(names))
    alias = f"unnest({arrays}) AS u({', '.join(_q(conn, n) for n in names)})"
    scalars = [f"CAST(:s{i} AS {_type(conn, table, n)})" for i, n in enumerate(same)]
    return alias, ", ".join([*(f"u.{_q(conn, n)}" for n in names), *scalars])


def _params(
    names: Sequence[str], rows: Sequence[Mapping[str, Any]], same: Mapping[str, Any]
) -> dict[str, Any]:
    params: dict[str, Any] = {f"a{i}": [r[n] for r in rows] for i, n in enumerate(names)}
    params.update({f"s{i}": v for i, v in enumerate(same.values())})
    return params


async def insert_ignore(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    same: Mapping[str, Any] | None = None,
    returning: bool = True,
) -> set[tuple[Any, ...]]:
    """Insert rows (plus ``same`` in each), skipping existing keys; the primary keys actually inserted."""
    if not rows:
        return set()
    same = same or {}
    keys = [c.name for c in table.primary_key.columns]
    if conn.dialect.name != "postgresql":
        stmt = sqlite.insert(table).on_conflict_do_nothing().returning(*(table.c[k] for k in keys))
        result = await conn.execute(stmt, [dict(r) | dict(same) for r in rows])
        return {tuple(r) for r in result.all()}
    names = list(rows[0])
    alias, select_list = _source(conn, table, names, list(same))
    sql = (
        f"INSERT INTO {table.name} ({', '.join(_q(conn, n) for n in [*names, *same])}) "
        f"SELECT {select_list} FROM {alias} ON CONFLICT DO NOTHING"
    )
    if not returning:
        await conn.execute(text(sql), _params(names, rows, same))
        return set()
    # The inserted keys come back as one row of arrays: a thousand result rows cost more than the insert.
    aggregated = ", ".join(f"array_agg({_q(conn, k)})" for k in keys)
    sql = f"WITH ins AS ({sql} RETURNING {', '.join(_q(conn, k) for k in keys)}) SELECT {aggregated} FROM ins"
    arrays = (await conn.execute(text(sql), _params(names, rows, same))).one()
    return set(zip(*arrays, strict=True)) if arrays[0] is not None else set()


async def update_by_key(
    conn: AsyncConnection,
    table: Table,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str],
    same: Mapping[str, Any] | None = None,
) -> None:
    """Set ``columns`` (from each row) and ``same`` (for all) on the rows matching ``key``."""
    if not rows:
        return
    same = same or {}
    if conn.dialect.name != "postgresql":
        values = {n: bindparam(f"b_{n}") for n in columns} | dict(same)
        stmt = update(table).where(table.c[key] == bindparam("b_key")).values(values)
        await conn.execute(stmt, [{"b_key": r[key], **{f"b_{n}": r[n] for n in columns}} for r in rows])
        return
    names = [key, *columns]
    alias, _ = _source(conn, table, names, [])
    sets = [f"{_q(conn, n)} = u.{_q(conn, n)}" for n in columns]
    sets += [f"{_q(conn, n)} = CAST(:s{i} AS {_type(conn, table, n)})" for i, n in enumerate(same)]
    sql = f"UPDATE {table.name} AS t SET {', '.join(sets)} FROM {alias} WHERE t.{_q(conn, key)} = u.{_q(conn, key)}"
    await conn.execute(text(sql), _params(names, rows, same))

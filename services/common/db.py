"""Async database access for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    all_,
    any_,
    bindparam,
    cast,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

_PG_ARRAY = postgresql.ARRAY  # (`one_of` has a parameter of that name)


def create_engine(url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and one connection per process."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            connect_args={"timeout": 30},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # A node's five services share one PostgreSQL server: keep each pool small (ONESTOP_DB_POOL_SIZE).
    size = pool_size or int(os.environ.get("ONESTOP_DB_POOL_SIZE", "5"))
    # No pre-ping (a round trip per checkout): a connection lost to a restart invalidates the pool and
    # the call fails once as UNAVAILABLE (grpc_server), which callers retry; consumers redeliver.
    return create_async_engine(url, pool_size=size, max_overflow=size)


@functools.cache
def _insert_ignore_stmt(table: Table, dialect_name: str) -> Any:
    # Built once per table: the values go as parameters, so SQLAlchemy neither builds a statement nor
    # computes its cache key on every call (a wide row cost ~0.1 ms of CPU that way).
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def insert_ignore(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its key exists; True when the row was inserted."""
    result = await conn.execute(_insert_ignore_stmt(table, conn.dialect.name), values)
    return bool(result.rowcount)


# Column types whose values PostgreSQL takes as an array parameter unchanged (not ARRAY: unnest would
# flatten it). JSON goes as an array of its text, cast back: a JSON list in an ARRAY parameter would be
# taken for one more dimension of the array.
_ARRAY_SAFE = (String, Integer, Boolean, Date, DateTime, Float, Numeric, LargeBinary)


def _kind(column: Any) -> Any:
    return column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type


def _array_safe(column: Any) -> bool:
    kind = _kind(column)
    if isinstance(kind, JSON):
        return not isinstance(column.type, TypeDecorator)  # a decorator may process the value first
    return isinstance(kind, _ARRAY_SAFE) and not isinstance(kind, postgresql.ARRAY)


def _unnested(column: Any) -> Any:
    if isinstance(column.type, JSON):
        return cast(func.unnest(bindparam(f"a_{column.name}", type_=postgresql.ARRAY(Text))), column.type)
    return func.unnest(bindparam(f"a_{column.name}", type_=postgresql.ARRAY(column.type)))


def one_of(column: Any, name: str, *, postgresql: bool, negate: bool = False) -> Any:
    """`column` is (with `negate`: is not) one of the list parameter `name`. PostgreSQL gets the list as one
    array parameter (`= ANY`, `!= ALL`): one statement text, prepared once, for every list length, where an
    expanded IN would be a new statement (and a new prepared statement) for every length. Elsewhere
    (SQLite) an expanding IN."""
    if postgresql:
        array = bindparam(name, type_=_PG_ARRAY(column.type))
        return column != all_(array) if negate else column == any_(array)
    listed: Any = bindparam(name, expanding=True)
    return column.not_in(listed) if negate else column.in_(listed)


def _json_text(value: Any, none_as_null: bool) -> str | None:
    # What SQLAlchemy's JSON type sends for a value (None is JSON null unless none_as_null).
    if value is None and none_as_null:
        return None
    return json.dumps(value)


@functools.cache
def unnest_insert(table: Table, columns: tuple[str, ...], conflict: str = "error") -> Any | None:
    """PostgreSQL: an INSERT of many rows given as one array per column (bind names ``a_<column>``),
    ``INSERT .. SELECT unnest(:a_x), unnest(:a_y) ..``, executed once for any number of rows, rows in
    array order. An executemany is one execution per row on the server (bind, executor start and end,
    constraint checks); this is one. `conflict`: "error", "ignore" (ON CONFLICT DO NOTHING) or "update"
    (on the primary key, set the given non-key columns). None when a column's type cannot go through an
    array, or an omitted column has a Python-side default that is not a constant: use executemany."""
    cols = [table.c[name] for name in columns]
    omitted = [c for c in table.c if c.name not in columns]
    if not all(_array_safe(c) for c in cols) or any(
        c.default is not None and not c.default.is_scalar for c in omitted
    ):
        return None
    rows = select(*[_unnested(c) for c in cols])
    stmt = postgresql.insert(table).from_select(list(columns), rows)
    if conflict == "ignore":
        return stmt.on_conflict_do_nothing()
    if conflict == "update":
        keys = [c.name for c in table.primary_key.columns]
        updates = {name: stmt.excluded[name] for name in columns if name not in keys}
        return (
            stmt.on_conflict_do_update(index_elements=keys, set_=updates)
            if updates
            else stmt.on_conflict_do_nothing()
        )
    return stmt


def unnest_params(table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The array parameters of `unnest_insert` for `rows` (each with exactly `columns`)."""
    params = {}
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            params[f"a_{name}"] = [_json_text(row[name], column_type.none_as_null) for row in rows]
        else:
            params[f"a_{name}"] = [row[name] for row in rows]
    return params


async def insert_many(
    conn: AsyncConnection,
    table: Table,
    columns: tuple[str, ...],
    rows: list[dict[str, Any]],
    conflict: str = "error",
) -> None:
    """Insert rows that have exactly `columns` (`conflict` as for `unnest_insert`): one statement execution
    on PostgreSQL (arrays through unnest) where the columns allow it, else an executemany (which on
    PostgreSQL is one execution per row: bind, executor start and end, constraint checks)."""
    name = conn.dialect.name
    fast = unnest_insert(table, columns, conflict) if name == "postgresql" and len(rows) > 1 else None
    if fast is not None:
        await conn.execute(fast, unnest_params(table, columns, rows))
    elif conflict == "update":
        await conn.execute(_upsert_stmt(table, columns, name), rows)
    else:
        dialect: Any = postgresql if name == "postgresql" else sqlite
        stmt = dialect.insert(table).on_conflict_do_nothing() if conflict == "ignore" else table.insert()
        await conn.execute(stmt, rows)


@functools.cache
def _upsert_stmt(table: Table, columns: tuple[str, ...], dialect_name: str) -> Any:
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect.insert(table)
    updates = {c: stmt.excluded[c] for c in columns if c not in keys}
    if not updates:
        return stmt.on_conflict_do_nothing()
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


@functools.cache
def unnest_update(table: Table, key: str, columns: tuple[str, ...]) -> Any | None:
    """PostgreSQL: an UPDATE of many rows, each found by its `key` column and given new `columns`, all
    given as one array per column (bind names ``a_<column>``, the key's among them):
    ``UPDATE t SET x = v.x .. FROM (SELECT unnest(:a_key) AS key, unnest(:a_x) AS x ..) v WHERE t.key =
    v.key``, executed once for any number of rows. None when a column's type cannot go through an array."""
    cols = [table.c[name] for name in (key, *columns)]
    if not all(_array_safe(c) for c in cols):
        return None
    values = select(*[_unnested(c).label(c.name) for c in cols]).subquery("v")
    return (
        update(table).where(table.c[key] == values.c[key]).values({name: values.c[name] for name in columns})
    )


async def update_many(
    conn: AsyncConnection, table: Table, key: str, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Set `columns` of the rows whose `key` column is each row's (each row has `key` and exactly
    `columns`; a key given twice gets its last row's values): one statement execution on PostgreSQL,
    else an executemany."""
    if not rows:
        return
    rows = list({row[key]: row for row in rows}.values())  # a key given twice: its last values, as in turn
    fast = unnest_update(table, key, columns) if conn.dialect.name == "postgresql" and len(rows) > 1 else None
    if fast is not None:
        await conn.execute(fast, unnest_params(table, (key, *columns), rows))
    else:
        params = [{f"k_{key}": row[key], **{f"v_{c}": row[c] for c in columns}} for row in rows]
        await conn.execute(_update_by_key(table, key, columns), params)


@functools.cache
def _update_by_key(table: Table, key: str, columns: tuple[str, ...]) -> Any:
    c = table.c
    return (
        update(table)
        .where(c[key] == bindparam(f"k_{key}"))
        .values({name: bindparam(f"v_{name}", type_=c[name].type) for name in columns})
    )


class Instant(TypeDecorator[datetime]):
    """A timezone-aware instant stored as UTC.

    PostgreSQL's timestamptz needs nothing, but SQLite keeps the wall-clock text and drops the zone,
    so the calendar's Asia/Shanghai instants must become UTC first. Migrations render it as
    ``sa.DateTime(timezone=True)``: the column is the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        """Aware instants go in as UTC; naive ones are taken to be UTC already."""
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value  # type: ignore[no-any-return]

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        """Instants come back aware (UTC)."""
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value  # type: ignore[no-any-return]

    def bind_processor(self, dialect: Any) -> Any:
        """No conversion on PostgreSQL (asyncpg sends aware instants as they are)."""
        return None if dialect.name == "postgresql" else super().bind_processor(dialect)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """No conversion on PostgreSQL (timestamptz comes back aware): hot paths read thousands."""
        return None if dialect.name == "postgresql" else super().result_processor(dialect, coltype)

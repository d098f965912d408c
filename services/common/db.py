"""Async database access for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator


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

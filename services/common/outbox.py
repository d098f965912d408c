"""Transactional outbox, idempotent inbox and the unit of work that ties them to state changes.

A handler changes its tables and records events in one transaction (`UnitOfWork`); the relay
publishes the events afterwards with Nats-Msg-Id = event id and marks them sent only after the
server's ack, so a crash between commit and publish replays instead of losing the event; an ack that
never comes (the broker died holding the message) times out and the batch is published again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.audit import AuditBuffer
from services.common.db import Instant, insert_ignore
from services.common.events import kind, subject_for
from services.common.logging import get_logger

log = get_logger(__name__)


def outbox_table(metadata: MetaData, prefix: str) -> Table:
    """The service's outbox: events waiting to be (or already) published."""
    name = f"{prefix}_outbox"
    table = Table(
        name,
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("subject", String(128), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", Instant, nullable=False),
        Column("sent_at", Instant, nullable=True),
    )
    Index(
        f"ix_{name}_unsent",
        table.c.seq,
        postgresql_where=table.c.sent_at.is_(None),
        sqlite_where=table.c.sent_at.is_(None),
    )
    return table


def inbox_table(metadata: MetaData, prefix: str) -> Table:
    """The service's inbox: (consumer, event id) pairs already applied."""
    return Table(
        f"{prefix}_inbox",
        metadata,
        Column("consumer", String(64), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", Instant, nullable=False),
    )


class Outbox:
    """The outbox table of one service plus a way to wake its relay after a commit."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Tell the relay that new rows are committed."""
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Wait until woken or `timeout` seconds pass."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    async def add(self, conn: AsyncConnection, events: Sequence[events_pb2.Envelope]) -> None:
        """Insert events in the caller's transaction."""
        if not events:
            return
        now = datetime.now(UTC)
        await conn.execute(
            self.table.insert(),
            [
                {
                    "event_id": env.event_id,
                    "subject": subject_for(kind(env)),
                    "payload": env.SerializeToString(),
                    "created_at": now,
                }
                for env in events
            ],
        )


class UnitOfWork:
    """One transaction: state changes plus the outbox rows of the events they record."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self._engine = engine
        self._outbox = outbox
        self.events: list[events_pb2.Envelope] = []
        self._conn: AsyncConnection | None = None
        self._committed = False
        self._on_commit: list[Callable[[], None]] = []
        self._before_commit: list[Callable[[AsyncConnection], Awaitable[None]]] = []
        self._audit: dict[str, AuditBuffer] = {}
        self._later: dict[tuple[Table, bool], list[dict[str, Any]]] = {}
        # Rows read ahead for a batch (`preload`) and rows to be written back at commit (`upsert_later`),
        # by table and key: a batch of events about the same cases reads and writes each row once.
        self._rows: dict[Table, dict[Any, dict[str, Any] | None]] = {}
        self._dirty: dict[Table, dict[Any, dict[str, Any]]] = {}
        # What handlers read or wrote in this transaction, kept so that the next event of a batch about
        # the same case need not read it again (gone with the transaction).
        self.memo: dict[Any, Any] = {}

    @property
    def conn(self) -> AsyncConnection:
        """The open connection (inside `async with`)."""
        if self._conn is None:
            raise RuntimeError("UnitOfWork used outside 'async with'")
        return self._conn

    async def __aenter__(self) -> UnitOfWork:
        self._conn = await self._engine.connect()
        await self._conn.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if not self._committed:
                await self._conn.rollback()
        finally:
            await self._conn.close()
            self._conn = None

    def emit(self, *events: events_pb2.Envelope) -> None:
        """Record events to be written with this transaction."""
        self.events.extend(events)

    async def mark_processed(self, inbox: Table, *, consumer: str, event_id: str) -> bool:
        """Record that `consumer` applied `event_id`; False when it already had."""
        return await insert_ignore(
            self.conn,
            inbox,
            {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)},
        )

    async def mark_many_processed(self, inbox: Table, *, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record that `consumer` applied these events, in one statement; the ids it had not applied yet."""
        if not event_ids:
            return set()
        now = datetime.now(UTC)
        rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in dict.fromkeys(event_ids)]
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)
        return {row[0] for row in await self.conn.execute(stmt, rows)}  # one multi-row INSERT, cached

    def insert_later(self, table: Table, row: dict[str, Any], *, ignore: bool = True) -> None:
        """Insert `row` (``ignore``: unless its key exists) just before commit, batched with the other
        rows of its table in one round trip. Only for rows nothing reads back in this transaction."""
        self._later.setdefault((table, ignore), []).append(row)

    async def preload(self, table: Table, keys: Iterable[Any]) -> None:
        """Read the rows of `table` (single-column primary key) whose key is in `keys`, in one statement,
        for `cached` to answer; a key with no row is remembered as absent."""
        column = _single_key(table).name
        rows = self._rows.setdefault(table, {})
        wanted = [k for k in dict.fromkeys(keys) if k not in rows]
        for k in wanted:
            rows[k] = None
        for start in range(0, len(wanted), 1000):
            result = await self.conn.execute(
                _select_in(table, column), {"keys": wanted[start : start + 1000]}
            )
            for row in result.mappings():
                rows[row[column]] = dict(row)

    def cached(self, table: Table, key: Any) -> tuple[bool, dict[str, Any] | None]:
        """(True, the row or None when absent) if `key` was preloaded, remembered or written in this
        transaction; (False, None) if this transaction does not know it (read it, then `remember`).
        A composite primary key is the tuple of its columns' values, in the table's order."""
        rows = self._rows.get(table)
        if rows is None or key not in rows:
            return False, None
        return True, rows[key]

    def remember(self, table: Table, key: Any, row: dict[str, Any] | None) -> None:
        """Keep a row read outside `preload` (None: known absent) for the rest of the transaction."""
        self._rows.setdefault(table, {})[key] = row

    def upsert_later(self, table: Table, row: dict[str, Any]) -> dict[str, Any]:
        """Write `row` (insert it, or set the given columns where its primary key exists) just before
        commit, batched per table and column set; `cached` answers the merged row at once, which is
        returned. A table written this way must be read through `cached` in this transaction: a direct
        query would not see the pending write."""
        key = _key_of(table, row)
        merged = {**(self._rows.get(table, {}).get(key) or {}), **row}
        self._rows.setdefault(table, {})[key] = merged
        pending = self._dirty.setdefault(table, {})
        pending[key] = {**pending.get(key, {}), **row}
        return merged

    async def _flush_upserts(self) -> None:
        for table, pending in self._dirty.items():
            by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in pending.values():
                by_columns.setdefault(tuple(sorted(row)), []).append(row)
            for columns, rows in by_columns.items():
                await self.conn.execute(_upsert(table, columns, self.conn.dialect.name), rows)
        self._dirty.clear()

    async def _flush_later(self) -> None:
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        for (table, ignore), rows in self._later.items():
            stmt = dialect.insert(table).on_conflict_do_nothing() if ignore else table.insert()
            await self.conn.execute(stmt, rows)
        self._later.clear()

    def audit(self, tables: tuple[Table, Table], **fields: Any) -> None:
        """Record an action in a hash-chained audit log; chained and written just before commit."""
        key = tables[0].name
        if key not in self._audit:
            self._audit[key] = AuditBuffer(tables)
            self.before_commit(self._audit[key].flush)
        self._audit[key].add(**fields)

    def before_commit(self, callback: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        """Run `callback(conn)` inside the transaction just before it commits (e.g. flush a buffer)."""
        self._before_commit.append(callback)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` after this unit of work commits (never on rollback)."""
        self._on_commit.append(callback)

    async def commit(self) -> None:
        """Write the outbox rows and commit, then wake the relay and run the after-commit callbacks."""
        for flush in self._before_commit:
            await flush(self.conn)
        if self._dirty:
            await self._flush_upserts()  # before insert_later: those rows may refer to these
        if self._later:
            await self._flush_later()
        await self._outbox.add(self.conn, self.events)
        await self.conn.commit()
        self._committed = True
        if self.events:
            self._outbox.wake()
        for callback in self._on_commit:
            callback()


def _single_key(table: Table) -> Any:
    keys = list(table.primary_key.columns)
    if len(keys) != 1:
        raise ValueError(f"{table.name} has no single-column primary key")
    return keys[0]


def _key_of(table: Table, row: dict[str, Any]) -> Any:
    names = [c.name for c in table.primary_key.columns]
    return row[names[0]] if len(names) == 1 else tuple(row[n] for n in names)


@functools.cache
def _select_in(table: Table, column: str) -> Any:
    return select(table).where(table.c[column].in_(bindparam("keys", expanding=True)))


@functools.cache
def _upsert(table: Table, columns: tuple[str, ...], dialect_name: str) -> Any:
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect.insert(table)
    updates = {c: stmt.excluded[c] for c in columns if c not in keys}
    if not updates:
        return stmt.on_conflict_do_nothing()
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return code in RETRYABLE_SQLSTATES or "deadlock detected" in str(exc)


async def transact(
    make_uow: Callable[[], UnitOfWork], fn: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 4
) -> T:
    """Run `fn` in a unit of work and commit; a deadlock or serialization failure is retried whole."""
    for attempt in range(1, attempts + 1):
        try:
            async with make_uow() as uow:
                result = await fn(uow)
                await uow.commit()
            return result
        except DBAPIError as exc:
            if attempt == attempts or not _retryable(exc):
                raise
            await asyncio.sleep(0.005 * 2**attempt)
    raise AssertionError("unreachable")


class OutboxRelay:
    """Publishes committed outbox rows to JetStream in batches, marking them sent after the ack."""

    def __init__(
        self, *, engine: AsyncEngine, outbox: Outbox, js: Any, batch: int = 500, ack_timeout: float = 15.0
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._js = js
        self._batch = batch
        self.ack_timeout = ack_timeout
        self.published = 0

    async def run_once(self) -> int:
        """Publish one batch; the number of events published."""
        table = self._outbox.table
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(table.c.seq, table.c.event_id, table.c.subject, table.c.payload)
                    .where(table.c.sent_at.is_(None))
                    .order_by(table.c.seq)
                    .limit(self._batch)
                )
            ).all()
            await conn.rollback()
        if not rows:
            return 0
        futures = [
            await self._js.publish_async(row.subject, row.payload, headers={"Nats-Msg-Id": row.event_id})
            for row in rows
        ]
        try:
            # An ack future has no deadline of its own: when the broker dies between taking a message
            # and acking it, the future never resolves and the relay would wait forever.
            await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout)
        except TimeoutError:
            for future in futures:
                future.cancel()  # frees the client's pending-publish slots; the rows stay unsent
            raise TimeoutError(
                f"JetStream did not ack {sum(not f.done() or f.cancelled() for f in futures)} of "
                f"{len(rows)} events within {self.ack_timeout} s"
            ) from None
        async with self._engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.seq.in_([row.seq for row in rows]))
                .values(sent_at=datetime.now(UTC))
            )
        self.published += len(rows)
        return len(rows)

    async def run(self, *, poll_interval: float = 1.0) -> None:
        """Relay forever; on errors, back off and retry (the rows stay unsent)."""
        backoff = 0.2
        while True:
            try:
                sent = await self.run_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure is retried; the rows are safe
                log.warning("outbox relay failed; will retry", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if sent < self._batch:
                await self._outbox.wait(poll_interval)

"""Transactional outbox, idempotent inbox and the unit of work that ties them to state changes.

A handler changes its tables and records events in one transaction (`UnitOfWork`); the relay
publishes the events afterwards with Nats-Msg-Id = event id and marks them sent only after the
server's ack, so a crash between commit and publish replays instead of losing the event; an ack that
never comes (the broker died holding the message) times out and the batch is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
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
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onestop.events.v1 import events_pb2
from services.common.audit import AuditBuffer
from services.common.db import Instant, insert_ignore, insert_many, one_of
from services.common.events import BATCH_HEADER, kind, pack, subject_for
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


# An outbox row as the relay handles it: (event id, subject, payload, case id).
Row = tuple[str, str, bytes, str]

# Committed events held in memory for the relay beyond this many are dropped, and the relay reads them
# from the table instead (a process that commits events but runs no relay, or a relay that is stuck).
FRESH_LIMIT = 50_000


class Outbox:
    """The outbox table of one service, plus the events this process committed that its relay has not
    published yet (so the relay need not read back what it just wrote) and a way to wake the relay."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._wake = asyncio.Event()
        self._fresh: list[Row] = []  # in commit order
        # Set until a relay has read the table once, and again whenever it must (events were dropped
        # from memory, or a publish failed): the table, not memory, is the source of truth.
        self.needs_scan = True

    def wake(self) -> None:
        """Tell the relay that rows were committed to the table by other means than a `UnitOfWork`
        (e.g. a bulk insert): it reads them from the table."""
        self.needs_scan = True
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Wait until woken or `timeout` seconds pass."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    def committed(self, rows: list[Row]) -> None:
        """Hand events just committed to the relay and wake it."""
        self._fresh.extend(rows)
        if len(self._fresh) > FRESH_LIMIT:
            self._fresh.clear()
            self.needs_scan = True
        self._wake.set()

    def take_fresh(self, limit: int) -> list[Row]:
        """Up to `limit` committed events not yet taken, oldest first."""
        taken, self._fresh = self._fresh[:limit], self._fresh[limit:]
        return taken

    def forget_fresh(self) -> None:
        """Drop the events held in memory: a scan of the table is about to publish them."""
        self._fresh.clear()

    async def add(self, conn: AsyncConnection, events: Sequence[events_pb2.Envelope]) -> list[Row]:
        """Insert events in the caller's transaction; their rows for the relay."""
        if not events:
            return []
        now = datetime.now(UTC)
        rows = [
            (env.event_id, subject_for(kind(env)), env.SerializeToString(), env.case_id) for env in events
        ]
        if conn.dialect.name == "postgresql":
            # One execution whatever the number of events (an executemany is one per row on the server);
            # the rows go in array order, so `seq` keeps the order the events were recorded in.
            ids, subjects, payloads = ([r[i] for r in rows] for i in range(3))
            await conn.execute(
                _add_unnest(self.table), {"ids": ids, "subjects": subjects, "payloads": payloads, "now": now}
            )
        else:
            await conn.execute(
                self.table.insert(),
                [{"event_id": e, "subject": s, "payload": p, "created_at": now} for e, s, p, _ in rows],
            )
        return rows


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
        ids = list(dict.fromkeys(event_ids))
        stmt = _mark_processed(inbox, self.conn.dialect.name)
        if self.conn.dialect.name == "postgresql":  # one statement text for every batch size
            result = await self.conn.execute(stmt, {"consumer": consumer, "ids": ids, "now": now})
        else:
            rows = [{"consumer": consumer, "event_id": e, "processed_at": now} for e in ids]
            result = await self.conn.execute(stmt, rows)  # one multi-row INSERT
        return {row[0] for row in result}

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
                _select_in(table, column, self.conn.dialect.name), {"keys": wanted[start : start + 1000]}
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
        query would not see the pending write. Write whole rows (every NOT NULL column): the statement
        is an INSERT first, and PostgreSQL checks NOT NULL before it looks for the conflict."""
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
                await insert_many(self.conn, table, columns, rows, "update")
        self._dirty.clear()

    async def _flush_later(self) -> None:
        for (table, ignore), rows in self._later.items():
            # Runs of rows with the same columns, in the order they were added (a serial key keeps it).
            start = 0
            while start < len(rows):
                columns = tuple(rows[start])
                end = start + 1
                while end < len(rows) and tuple(rows[end]) == columns:
                    end += 1
                await insert_many(self.conn, table, columns, rows[start:end], "ignore" if ignore else "error")
                start = end
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
        rows = await self._outbox.add(self.conn, self.events)
        await self.conn.commit()
        self._committed = True
        if rows:
            self._outbox.committed(rows)
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
def _select_in(table: Table, column: str, dialect_name: str) -> Any:
    """Rows whose `column` is in the list parameter "keys". PostgreSQL gets the list as one array
    parameter, so one prepared statement serves every list length."""
    return select(table).where(one_of(table.c[column], "keys", postgresql=dialect_name == "postgresql"))


@functools.cache
def _mark_processed(inbox: Table, dialect_name: str) -> Any:
    """The inbox's multi-row insert that skips ids already there and returns the new ones, built once.

    On PostgreSQL the ids go as one array parameter (``INSERT .. SELECT unnest(:ids)``): a multi-row
    VALUES list has a different text for every batch size, so the server parsed and planned it afresh
    (and the client prepared it again) for nearly every batch."""
    if dialect_name == "postgresql":
        c = inbox.c
        rows = select(
            bindparam("consumer", type_=c.consumer.type),
            func.unnest(bindparam("ids", type_=postgresql.ARRAY(c.event_id.type))),
            bindparam("now", type_=c.processed_at.type),
        )
        return (
            postgresql.insert(inbox)
            .from_select(["consumer", "event_id", "processed_at"], rows)
            .on_conflict_do_nothing()
            .returning(c.event_id)
        )
    return sqlite.insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)


@functools.cache
def _add_unnest(table: Table) -> Any:
    """PostgreSQL: insert outbox rows given as one array per column, in array order, in one execution."""
    c = table.c
    rows = select(
        func.unnest(bindparam("ids", type_=postgresql.ARRAY(c.event_id.type))),
        func.unnest(bindparam("subjects", type_=postgresql.ARRAY(c.subject.type))),
        func.unnest(bindparam("payloads", type_=postgresql.ARRAY(c.payload.type))),
        bindparam("now", type_=c.created_at.type),
    )
    return table.insert().from_select(["event_id", "subject", "payload", "created_at"], rows)


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


@functools.cache
def _unsent(table: Table) -> Any:
    return (
        select(table.c.seq, table.c.event_id, table.c.subject, table.c.payload)
        .where(table.c.sent_at.is_(None))
        .order_by(table.c.seq)
        .limit(bindparam("limit"))
    )


@functools.cache
def _mark_sent(table: Table, dialect_name: str) -> Any:
    where = one_of(table.c.event_id, "ids", postgresql=dialect_name == "postgresql")
    return update(table).where(where).values(sent_at=bindparam("now"))


def _case_of(payload: bytes) -> str:
    """The case id of an encoded envelope ("" when it has none or does not parse)."""
    try:
        return events_pb2.Envelope.FromString(payload).case_id
    except DecodeError:
        return ""


# A message's bytes stay well under NATS's default max_payload (1 MB).
BUNDLE_MAX_BYTES = 256 * 1024


def bundle(rows: Sequence[Row], *, limit: int = 256) -> list[tuple[str, bytes, dict[str, str]]]:
    """The JetStream messages (subject, payload, headers) that carry `rows`, oldest first.

    Events of one subject go together in one EnvelopeBatch (header BATCH_HEADER) where that keeps the
    order of every case's events: an event joins the newest message of its subject if that message
    comes after every message holding an earlier event of its case, and starts a new message
    otherwise. An event with no case orders against everything (nothing before it moves after it,
    nothing after it moves before it). So each consumer sees each case's events in the order they were
    recorded, as it did with one message per event; only events of different cases may pass each other
    within what one relay batch publishes. A message of one event is that envelope alone, with its
    event id as Nats-Msg-Id (the broker drops a republished copy); a batch's Nats-Msg-Id is a digest
    of its event ids, so a republish that groups the rows differently is a new message, which the
    consumers' inboxes make harmless, and never taken for an older message that held fewer events."""
    groups: list[tuple[str, list[Row]]] = []
    sizes: list[int] = []
    newest_of_subject: dict[str, int] = {}
    after_for_case: dict[str, int] = {}  # the index of the message holding the case's latest event
    floor = 0  # set by an event without a case: nothing after it goes into an earlier message
    for row in rows:
        _, subject, payload, case = row
        lower = max(floor, after_for_case.get(case, 0)) if case else len(groups) - 1
        index = newest_of_subject.get(subject, -1)
        if (
            index < 0
            or index < lower
            or len(groups[index][1]) >= limit
            or sizes[index] + len(payload) > BUNDLE_MAX_BYTES
        ):
            index = len(groups)
            groups.append((subject, []))
            sizes.append(0)
            newest_of_subject[subject] = index
        groups[index][1].append(row)
        sizes[index] += len(payload) + 8
        if case:
            after_for_case[case] = index
        else:
            floor = index
    messages = []
    for subject, members in groups:
        if len(members) == 1:
            event_id, _, payload, _ = members[0]
            messages.append((subject, payload, {"Nats-Msg-Id": event_id}))
        else:
            digest = hashlib.blake2b("|".join(m[0] for m in members).encode(), digest_size=16).hexdigest()
            headers = {"Nats-Msg-Id": f"batch-{digest}", BATCH_HEADER: str(len(members))}
            messages.append((subject, pack([m[2] for m in members]), headers))
    return messages


class OutboxRelay:
    """Publishes committed outbox rows to JetStream in batches, marking them sent after the ack.

    Events this process commits are handed over in memory (`Outbox.committed`), so in the steady state
    the relay only publishes; the rows it published are marked sent together, in one UPDATE, at most
    `mark_every` seconds after the first of them was acked (or once `batch` of them wait), and always
    before the table is read, so a busy or trickling service pays one transaction per interval rather
    than one per batch. The table is read (in `seq` order) when the relay starts, after any failure,
    when memory overflowed, and every `sweep_s` seconds, so rows committed by a process that died before
    publishing them (or whose commit raised after it took effect) go out too; an event published twice
    that way, or because the process died with published rows not yet marked, is dropped by JetStream's
    de-duplication on its id and by every consumer's inbox.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        outbox: Outbox,
        js: Any,
        batch: int = 500,
        ack_timeout: float = 15.0,
        sweep_s: float = 5.0,
        mark_every: float = 0.5,
        bundle_limit: int = 256,
    ) -> None:
        self._engine = engine
        self.bundle_limit = bundle_limit
        self._outbox = outbox
        self._js = js
        self._batch = batch
        self.ack_timeout = ack_timeout
        self.sweep_s = sweep_s
        self.mark_every = mark_every
        self.published = 0
        # Event ids published and acked by JetStream whose rows are not marked sent yet, and since when.
        self._unmarked: list[str] = []
        self._unmarked_since = 0.0
        self._scanning = True  # the first batch reads the table
        self._swept_at = 0.0

    async def run_once(self) -> int:
        """Publish one batch; the number of events published."""
        if self._scanning or self._outbox.needs_scan:
            return await self._scan_once()
        rows = self._outbox.take_fresh(self._batch)
        if rows:
            try:
                await self._publish(rows)
            except BaseException:
                self._scanning = (
                    True  # the rows are still unsent in the table: the next batch reads them there
                )
                raise
            if not self._unmarked:
                self._unmarked_since = time.monotonic()
            self._unmarked.extend(r[0] for r in rows)
            self.published += len(rows)
        if self._unmarked and (len(self._unmarked) >= self._batch or self.mark_due() <= 0):
            await self.mark_sent()
        return len(rows)

    def mark_due(self) -> float:
        """Seconds until the published rows waiting to be marked sent must be marked (inf: none wait)."""
        if not self._unmarked:
            return float("inf")
        return self._unmarked_since + self.mark_every - time.monotonic()

    async def mark_sent(self) -> None:
        """Mark the published rows sent, in one transaction (they stay waiting if it fails)."""
        if not self._unmarked:
            return
        ids = list(self._unmarked)
        async with self._engine.begin() as conn:
            await conn.execute(
                _mark_sent(self._outbox.table, conn.dialect.name), {"ids": ids, "now": datetime.now(UTC)}
            )
        del self._unmarked[: len(ids)]

    async def _scan_once(self) -> int:
        # Rows published but not yet marked would be read below as unsent and published again.
        await self.mark_sent()
        self._scanning = True
        self._outbox.needs_scan = False
        # Forget what memory holds before reading: anything committed before this point is in the table
        # (and is read below); anything committed after it is handed over in memory again.
        self._outbox.forget_fresh()
        table = self._outbox.table
        async with self._engine.connect() as conn:
            found = (await conn.execute(_unsent(table), {"limit": self._batch})).all()
            await conn.rollback()
        if found:
            await self._publish([(r.event_id, r.subject, r.payload, _case_of(r.payload)) for r in found])
            async with self._engine.begin() as conn:
                await conn.execute(
                    _mark_sent(table, conn.dialect.name),
                    {"ids": [r.event_id for r in found], "now": datetime.now(UTC)},
                )
            self.published += len(found)
        if len(found) < self._batch:
            self._scanning = False  # caught up with the table
            self._swept_at = time.monotonic()
        return len(found)

    async def _publish(self, rows: list[Row]) -> None:
        messages = bundle(rows, limit=self.bundle_limit)
        futures = [
            await self._js.publish_async(subject, payload, headers=headers)
            for subject, payload, headers in messages
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
                f"{len(messages)} messages ({len(rows)} events) within {self.ack_timeout} s"
            ) from None

    async def run(self, *, poll_interval: float = 1.0) -> None:
        """Relay forever; on errors, back off and retry (the rows stay unsent)."""
        try:
            await self._run(poll_interval)
        except asyncio.CancelledError:
            # Stopping: mark what was published, if the database answers at once; otherwise those
            # events go again at the next start and the broker and the inboxes drop them.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mark_sent(), 2.0)
            raise

    async def _run(self, poll_interval: float) -> None:
        backoff = 0.2
        while True:
            if time.monotonic() - self._swept_at > self.sweep_s:
                self._scanning = True
            try:
                sent = await self.run_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure is retried; the rows are safe
                self._scanning = True
                log.warning("outbox relay failed; will retry", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if sent < self._batch and not self._scanning:
                await self._outbox.wait(max(0.0, min(poll_interval, self.mark_due())))

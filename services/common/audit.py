"""An append-only, hash-chained audit log: every staff action, node-to-node call, decision and seal.

Each service keeps its own chain (its own tables); a node's audit log is the set of its services'
chains. Row n stores hash_n = SHA-256(hash_{n-1} || canonical JSON of row n); a one-row head table
holds the last sequence and hash, and is locked by each append, so concurrent writers cannot fork
the chain. `verify` recomputes every hash and names the first edited, deleted or missing record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Instant, create_engine, insert_ignore, insert_many

GENESIS = "0" * 64
_COLUMNS = ("seq", "at", "actor", "role", "action", "subject", "detail", "prev_hash", "hash")


def audit_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table]:
    """The service's audit log and its head (last sequence and hash)."""
    log = Table(
        f"{prefix}_audit",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("at", Instant, nullable=False),
        Column("actor", String(128), nullable=False),
        Column("role", String(64), nullable=False),
        Column("action", String(64), nullable=False),
        Column("subject", String(128), nullable=False),
        Column("detail", JSON, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    head = Table(
        f"{prefix}_audit_head",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
    )
    return log, head


# The canonical form of a record: sorted keys, no spaces, UTF-8 as is. One encoder, built once (`json.dumps`
# with these options builds a new encoder on every call); the text is exactly what `json.dumps` gives.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def record_hash(
    prev_hash: str, *, seq: int, at: datetime, actor: str, role: str, action: str, subject: str, detail: Any
) -> str:
    """The chained hash of one record."""
    body = _CANONICAL.encode(
        {
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "role": role,
            "action": action,
            "subject": subject,
            "detail": detail,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One record before it is chained."""

    at: datetime
    actor: str
    role: str
    action: str
    subject: str
    detail: dict[str, Any]


def entry(
    *, at: datetime, actor: str, role: str, action: str, subject: str, detail: dict[str, Any] | None = None
) -> Entry:
    """A record, normalised: UTC instant, JSON-plain detail (a copy, so later changes to the caller's
    values do not reach the record)."""
    plain = _plain_copy(detail or {})
    if plain is _NOT_PLAIN:  # e.g. datetimes, tuples, non-string keys: made plain as JSON would store them
        plain = json.loads(json.dumps(detail or {}, default=str))
    return Entry(at.astimezone(UTC), actor, role, action, subject, plain)


_NOT_PLAIN: Any = object()


def _plain_copy(value: Any) -> Any:
    """A copy of `value` if it is already what JSON decodes to (str, int, finite float, bool, None, lists,
    dicts with string keys), i.e. what a JSON round trip would return unchanged; else `_NOT_PLAIN`.
    Exact types only: a subclass (an IntEnum, a str subclass) takes the round trip."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else _NOT_PLAIN
    if kind is list:
        out = [_plain_copy(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in out) else out
    if kind is dict:
        copied = {}
        for k, v in value.items():
            if type(k) is not str:
                return _NOT_PLAIN
            c = _plain_copy(v)
            if c is _NOT_PLAIN:
                return _NOT_PLAIN
            copied[k] = c
        return copied
    return _NOT_PLAIN


async def append_many(conn: AsyncConnection, tables: tuple[Table, Table], entries: list[Entry]) -> int:
    """Chain and insert records in the caller's transaction, locking the head once; the last sequence."""
    log, head = tables
    if not entries:
        return 0
    stmt = _read_head(head, conn.dialect.name == "postgresql")
    last = (await conn.execute(stmt)).first()
    if last is None:
        await insert_ignore(conn, head, {"id": 1, "seq": 0, "hash": GENESIS})
        last = (await conn.execute(stmt)).one()
    seq, prev = int(last.seq), str(last.hash)
    rows = []
    for e in entries:
        seq += 1
        digest = record_hash(
            prev,
            seq=seq,
            at=e.at,
            actor=e.actor,
            role=e.role,
            action=e.action,
            subject=e.subject,
            detail=e.detail,
        )
        rows.append(
            {
                "seq": seq,
                "at": e.at,
                "actor": e.actor,
                "role": e.role,
                "action": e.action,
                "subject": e.subject,
                "detail": e.detail,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    # (One statement with the records in a CTE saved a round trip but was compiled anew on every call:
    # ~17% of approval's CPU. These are compiled once; the records go as arrays, one execution.)
    await insert_many(conn, log, _COLUMNS, rows)
    await conn.execute(_move_head(head), {"new_seq": seq, "new_hash": prev})
    return seq


@functools.cache
def _read_head(head: Table, lock: bool) -> Any:
    """The head's read (locked on PostgreSQL, where writers run concurrently), built once per table."""
    stmt = select(head.c.seq, head.c.hash).where(head.c.id == 1)
    return stmt.with_for_update() if lock else stmt


@functools.cache
def _move_head(head: Table) -> Any:
    """The head's update, built once per table (values as parameters)."""
    new_seq, new_hash = bindparam("new_seq", type_=BigInteger), bindparam("new_hash", type_=String)
    return update(head).where(head.c.id == 1).values(seq=new_seq, hash=new_hash)


async def append(
    conn: AsyncConnection,
    tables: tuple[Table, Table],
    *,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one record in the caller's transaction; its sequence number."""
    return await append_many(
        conn, tables, [entry(at=at, actor=actor, role=role, action=action, subject=subject, detail=detail)]
    )


class AuditBuffer:
    """Collects a unit of work's records and chains them once, just before it commits."""

    def __init__(self, tables: tuple[Table, Table]) -> None:
        self.tables = tables
        self.entries: list[Entry] = []

    def add(self, **fields: Any) -> None:
        """Buffer one record (see `entry`)."""
        self.entries.append(entry(**fields))

    async def flush(self, conn: AsyncConnection) -> None:
        """Write the buffered records (the before-commit hook)."""
        await append_many(conn, self.tables, self.entries)
        self.entries.clear()


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one chain."""

    records: int
    ok: bool
    problem: str = ""
    first_bad_seq: int | None = None


async def verify(conn: AsyncConnection, tables: tuple[Table, Table]) -> Verdict:
    """Recompute the chain; the first record that was edited, deleted or cut off."""
    log, head = tables
    prev, expected_seq, count = GENESIS, 1, 0
    result = await conn.stream(select(log).order_by(log.c.seq))
    async for row in result.mappings():
        if row["seq"] != expected_seq:
            return Verdict(count, False, f"record {expected_seq} is missing (deleted)", expected_seq)
        if row["prev_hash"] != prev:
            return Verdict(
                count, False, f"record {row['seq']} does not follow record {row['seq'] - 1}", row["seq"]
            )
        digest = record_hash(
            prev,
            seq=row["seq"],
            at=row["at"].astimezone(UTC),
            actor=row["actor"],
            role=row["role"],
            action=row["action"],
            subject=row["subject"],
            detail=row["detail"],
        )
        if digest != row["hash"]:
            return Verdict(count, False, f"record {row['seq']} was edited after it was written", row["seq"])
        prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1
    last = (await conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1))).first()
    if last is not None and (last.seq != count or last.hash != prev):
        return Verdict(
            count, False, f"records after {count} are missing (the head says {last.seq})", count + 1
        )
    return Verdict(count, True)


async def verify_database(url: str, tables: tuple[Table, Table]) -> Verdict:
    """Open the database at `url` and verify the chain kept in `tables` there."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await verify(conn, tables)
    finally:
        await engine.dispose()

"""The parent's durable result feed: per child center, a gap-free sequence of updates (the cursor)."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onestop.interconnect.v1 import interconnect_pb2
from services.common.db import insert_many
from services.common.errors import InvalidArgument
from services.common.outbox import UnitOfWork
from services.intake import orm


class Bell:
    """Wakes waiters when something was committed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring_after(self, uow: UnitOfWork) -> None:
        """Ring when `uow` commits (once however often it is asked; never if it rolls back). Waiters are
        woken once per commit, when what they will read is there, and a writer that fails wakes nobody."""
        key = ("bell", id(self))
        if key not in uow.memo:
            uow.memo[key] = True
            uow.on_commit(self.ring_now)

    def ring_now(self) -> None:
        """Something new is committed: wake waiters."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Wait for a ring or `timeout` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._event.clear()


class Bells:
    """One bell per child center's feed, and one for the forwarding outbox."""

    def __init__(self) -> None:
        self.uploads = Bell()
        self._feeds: dict[str, Bell] = {}

    def feed(self, child_center: str) -> Bell:
        """The bell of one child's feed."""
        return self._feeds.setdefault(child_center, Bell())


@functools.cache
def _draw_cursors(dialect_name: str) -> Any:
    # One statement whether or not the child has a head yet; its row lock is held to commit, so cursors
    # become visible in order, without gaps.
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    head = orm.feed_heads.c
    insert = dialect.insert(orm.feed_heads).values(
        child_center=bindparam("child"), last_seq=bindparam("count"), acked_seq=0, acked_at=None
    )
    return insert.on_conflict_do_update(
        index_elements=[head.child_center], set_={"last_seq": head.last_seq + insert.excluded.last_seq}
    ).returning(head.last_seq)


_FEED_COLUMNS = ("child_center", "seq", "child_case_id", "kind", "payload", "created_at")


async def _write(
    conn: AsyncConnection, child_center: str, updates: list[interconnect_pb2.ResultUpdate]
) -> int:
    top = int(
        (
            await conn.execute(
                _draw_cursors(conn.dialect.name), {"child": child_center, "count": len(updates)}
            )
        ).scalar_one()
    )
    now = datetime.now(UTC)
    first = top - len(updates) + 1
    await insert_many(
        conn,
        orm.result_feed,
        _FEED_COLUMNS,
        [
            {
                "child_center": child_center,
                "seq": first + i,
                "child_case_id": u.child_case_id,
                "kind": u.kind,
                "payload": u.SerializeToString(),
                "created_at": now,
            }
            for i, u in enumerate(updates)
        ],
    )
    return top


async def append(
    conn: AsyncConnection, *, child_center: str, update_msg: interconnect_pb2.ResultUpdate
) -> int:
    """Add an update for `child_center` in the caller's transaction now; its cursor."""
    return await _write(conn, child_center, [update_msg])


_LATER = "intake.feed"  # uow.memo: child center -> updates to append at commit


def append_later(uow: UnitOfWork, *, child_center: str, update_msg: interconnect_pb2.ResultUpdate) -> None:
    """Add an update for `child_center` just before the unit of work commits, with the transaction's other
    updates: per child, one statement draws their cursors (in the order they were added) and one writes
    them. The head rows are locked in child order and only from then to commit."""
    pending: dict[str, list[interconnect_pb2.ResultUpdate]] | None = uow.memo.get(_LATER)
    if pending is None:
        pending = uow.memo[_LATER] = {}
        uow.before_commit(functools.partial(_flush, uow))
    pending.setdefault(child_center, []).append(update_msg)


async def _flush(uow: UnitOfWork, conn: AsyncConnection) -> None:
    pending: dict[str, list[interconnect_pb2.ResultUpdate]] = uow.memo.pop(_LATER, {})
    for child_center in sorted(pending):
        await _write(conn, child_center, pending[child_center])


# Built once (a child's stream reads after every ring of its bell).
_READ = (
    select(orm.result_feed.c.seq, orm.result_feed.c.payload)
    .where(orm.result_feed.c.child_center == bindparam("child"), orm.result_feed.c.seq > bindparam("after"))
    .order_by(orm.result_feed.c.seq)
    .limit(bindparam("limit"))
)


async def read(
    engine: AsyncEngine, *, child_center: str, after: int, limit: int
) -> list[interconnect_pb2.ResultUpdate]:
    """Updates for `child_center` after cursor `after`, in order."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_READ, {"child": child_center, "after": after, "limit": limit})).all()
        await conn.rollback()
    out = []
    for seq, payload in rows:
        msg = interconnect_pb2.ResultUpdate.FromString(payload)
        msg.cursor = int(seq)
        out.append(msg)
    return out


async def ack(engine: AsyncEngine, *, child_center: str, cursor: int) -> int:
    """Record that the child applied everything up to `cursor`; the acknowledged cursor."""
    async with engine.begin() as conn:
        head: Any = (
            (
                await conn.execute(
                    select(orm.feed_heads)
                    .where(orm.feed_heads.c.child_center == child_center)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        last = int(head["last_seq"]) if head else 0
        if cursor > last:
            raise InvalidArgument(
                f"cursor {cursor} is beyond the last update {last}",
                field="cursor",
                zh=f"确认位置 (cursor) {cursor} 超出了最新一条结果更新（第 {last} 条）",
            )
        acked = max(int(head["acked_seq"]) if head else 0, cursor)
        if head:
            await conn.execute(
                update(orm.feed_heads)
                .where(orm.feed_heads.c.child_center == child_center)
                .values(acked_seq=acked, acked_at=datetime.now(UTC))
            )
    return acked

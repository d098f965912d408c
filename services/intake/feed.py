"""The parent's durable result feed: per child center, a gap-free sequence of updates (the cursor)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from onestop.interconnect.v1 import interconnect_pb2
from services.common.db import insert_ignore
from services.common.errors import InvalidArgument
from services.intake import orm

# Writers ring inside their transaction, before it commits: echo the ring as the commit lands.
ECHOES_S = (0.005, 0.03, 0.15, 0.6)  # a consumer batch may take a while to commit


class Bell:
    """Wakes waiters when something was written (now, and a few echoes later for the commit)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._echoes: list[asyncio.TimerHandle | None] = [None] * len(ECHOES_S)

    def ring(self) -> None:
        """Something new is on its way (rung inside the writer's transaction)."""
        self._event.set()
        loop = asyncio.get_running_loop()
        for i, delay in enumerate(ECHOES_S):
            pending = self._echoes[i]
            if pending is None or pending.cancelled() or pending.when() <= loop.time():
                self._echoes[i] = loop.call_later(delay, self._event.set)

    def ring_now(self) -> None:
        """Something new is committed: wake waiters, no echoes needed."""
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


async def append(
    conn: AsyncConnection, *, child_center: str, update_msg: interconnect_pb2.ResultUpdate
) -> int:
    """Add an update for `child_center` in the caller's transaction; its cursor."""
    # The row lock taken here is held to commit, so cursors become visible in order, without gaps.
    bump = (
        update(orm.feed_heads)
        .where(orm.feed_heads.c.child_center == child_center)
        .values(last_seq=orm.feed_heads.c.last_seq + 1)
        .returning(orm.feed_heads.c.last_seq)
    )
    seq = (await conn.execute(bump)).scalar()
    if seq is None:  # this child's first update
        await insert_ignore(
            conn,
            orm.feed_heads,
            {"child_center": child_center, "last_seq": 0, "acked_seq": 0, "acked_at": None},
        )
        seq = (await conn.execute(bump)).scalar_one()
    await conn.execute(
        orm.result_feed.insert().values(
            child_center=child_center,
            seq=seq,
            child_case_id=update_msg.child_case_id,
            kind=update_msg.kind,
            payload=update_msg.SerializeToString(),
            created_at=datetime.now(UTC),
        )
    )
    return int(seq)


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
            raise InvalidArgument(f"cursor {cursor} is beyond the last update {last}", field="cursor")
        acked = max(int(head["acked_seq"]) if head else 0, cursor)
        if head:
            await conn.execute(
                update(orm.feed_heads)
                .where(orm.feed_heads.c.child_center == child_center)
                .values(acked_seq=acked, acked_at=datetime.now(UTC))
            )
    return acked

"""Pruning the parent's result feed: rows a child acknowledged, once older than the retention, go.

A child acknowledges a cursor only after it applied and committed every update up to it, and it resumes
its stream from its own applied cursor, which is never below what it acknowledged; so an acknowledged row
is never asked for again by a child that keeps its database. Only such rows are deleted: at or below the
child's `acked_seq` and created more than the retention ago, oldest first, a bounded range of cursors per
transaction (by primary key, so a batch never scans the feed). The head rows stay, so cursors go on from
where they were. A child that asks for updates from before what was pruned (its database restored from
an old backup) gets FAILED_PRECONDITION from WatchResults rather than a silent gap
(`interconnect_api.py`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.logging import get_logger
from services.common.settings import seconds
from services.intake import orm

log = get_logger(__name__)
RETENTION_ENV = "ONESTOP_FEED_RETENTION_S"
DEFAULT_RETENTION_S = 7 * 24 * 3600.0
BATCH = 1000  # cursors per transaction at most
INTERVAL_S = 600.0  # between rounds (with jitter, so replicas drift apart)
MAX_BACKOFF_S = 3600.0

_feed = orm.result_feed.c
_held = orm.result_feed.alias("held").c  # the subquery's own table, never correlated with the DELETE's
_ACKED = select(orm.feed_heads.c.child_center, orm.feed_heads.c.acked_seq).where(
    orm.feed_heads.c.acked_seq > 0
)
# One child's oldest `batch` cursors, as far as acknowledged and old enough. The range starts at the
# lowest cursor still held, so each statement reads at most `batch` rows of the primary key.
_DELETE = delete(orm.result_feed).where(
    _feed.child_center == bindparam("child"),
    _feed.seq <= bindparam("acked"),
    _feed.seq
    < select(func.min(_held.seq)).where(_held.child_center == bindparam("child")).scalar_subquery()
    + bindparam("batch"),
    _feed.created_at < bindparam("cutoff"),
)


def retention(env: Mapping[str, str] | None = None) -> timedelta:
    """How long acknowledged feed rows are kept, from $ONESTOP_FEED_RETENTION_S (default 7 days)."""
    return timedelta(seconds=seconds(RETENTION_ENV, DEFAULT_RETENTION_S, env))


async def prune(
    engine: AsyncEngine, *, keep: timedelta, now: datetime | None = None, batch: int = BATCH
) -> int:
    """Delete acknowledged feed rows created before `now - keep`, in transactions of at most `batch`
    cursors; how many were deleted."""
    cutoff = ((now or datetime.now(UTC)) - keep).astimezone(UTC)  # as created_at is written
    async with engine.connect() as conn:
        heads = (await conn.execute(_ACKED)).all()
        await conn.rollback()
    deleted = 0
    # An acknowledgement only ever grows, so the one read here stays safe while rows are deleted.
    for child, acked in sorted(heads):
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    _DELETE, {"child": child, "acked": int(acked), "batch": batch, "cutoff": cutoff}
                )
            n = int(result.rowcount or 0)
            deleted += n
            if n == 0:
                break
            await asyncio.sleep(0)  # let the node's other work in between batches
    return deleted


class FeedPruner:
    """Prunes the result feed every few minutes; database trouble is waited out, never fatal."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        keep: timedelta,
        interval_s: float = INTERVAL_S,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._engine = engine
        self._keep = keep
        self._interval = interval_s
        self._jitter = jitter

    async def run(self) -> None:
        """Prune forever."""
        wait = self._interval
        while True:
            await asyncio.sleep(wait * (0.5 + self._jitter()))
            try:
                deleted = await prune(self._engine, keep=self._keep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the rows wait for the next round
                wait = min(wait * 2, MAX_BACKOFF_S)
                log.warning("result feed pruning failed; will retry", error=repr(exc), retry_in=wait)
                continue
            wait = self._interval
            if deleted:
                log.info("result feed pruned", deleted=deleted, retention_s=self._keep.total_seconds())

"""Pruning the parent's result feed, on SQLite and PostgreSQL: rows a child acknowledged and that are older
than the retention go, in bounded batches; unacknowledged and recent rows stay; a child resuming from its
acknowledged cursor still gets everything after it, and cursors go on without a gap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.interconnect.v1 import interconnect_pb2
from services.cli import certs_cmd
from services.common import migrate
from services.common.clock import ManualClock
from services.common.db import create_engine
from services.common.errors import FailedPrecondition
from services.common.outbox import Outbox
from services.common.runtime import Runtime
from services.common.settings import SettingsError
from services.intake import feed, feed_pruning, handlers, orm
from services.intake.interconnect_api import InterconnectApi

CITY, DISTRICT, OTHER = "210200", "210211", "210212"
NOW = datetime.now(UTC)
WEEK = timedelta(days=7)
OLD = NOW - timedelta(days=8)


class Children:
    """The city's child centers (routing's organisation, faked)."""

    async def get(self) -> frozenset[str]:
        return frozenset({DISTRICT, OTHER})


class Caller:
    """A streaming call's servicer context whose verified client certificate names a center."""

    def __init__(self, pem: bytes) -> None:
        self._auth = {"transport_security_type": [b"ssl"], "x509_pem_cert": [pem]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    async def send_initial_metadata(self, _: Any) -> None:
        return None


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="intake", database_url=db_url)
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Caller:
    ca = tmp_path_factory.mktemp("ca")
    certs_cmd.init_ca(ca)
    return Caller(certs_cmd.issue(ca, center=DISTRICT, out=ca / DISTRICT).cert.read_bytes())


def _api(engine: AsyncEngine) -> InterconnectApi:
    runtime = Runtime(
        settings=cast(Any, None), engine=engine, outbox=Outbox(orm.outbox), clock=ManualClock(NOW)
    )
    ctx = handlers.IntakeContext(center=CITY, matters=cast(Any, None), clock=ManualClock(NOW))
    return InterconnectApi(runtime=runtime, ctx=ctx, received=cast(Any, None), children=cast(Any, Children()))


async def _append(engine: AsyncEngine, child: str, count: int, *, created_at: datetime | None = None) -> int:
    """`count` updates for `child`, one transaction each (as the parent's changes write them); the last cursor."""
    cursor = 0
    for i in range(count):
        async with engine.begin() as conn:
            upd = interconnect_pb2.ResultUpdate(
                child_case_id=f"case-{i}", kind="accepted", summary_en=f"u{i}"
            )
            cursor = await feed.append(conn, child_center=child, update_msg=upd)
            if created_at is not None:
                await conn.execute(
                    update(orm.result_feed)
                    .where(orm.result_feed.c.child_center == child, orm.result_feed.c.seq == cursor)
                    .values(created_at=created_at)
                )
    return cursor


async def _held(engine: AsyncEngine, child: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(orm.result_feed.c.seq)
            .where(orm.result_feed.c.child_center == child)
            .order_by(orm.result_feed.c.seq)
        )
        return [int(s) for (s,) in rows]


async def _watch(api: InterconnectApi, caller: Caller, after: int, count: int) -> list[int]:
    """The cursors the first `count` updates of a WatchResults stream from `after` carry."""
    stream = api.WatchResults(interconnect_pb2.WatchResultsRequest(after_cursor=after), caller)
    try:
        return [(await asyncio.wait_for(anext(stream), 5)).cursor for _ in range(count)]
    finally:
        await cast(Any, stream).aclose()


class Deletes:
    """Counts the DELETE statements an engine sends."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.count += statement.lstrip().upper().startswith("DELETE")


async def test_acknowledged_old_rows_go_in_batches_and_a_resuming_child_gets_everything_after_its_cursor(
    engine: AsyncEngine, district: Caller
) -> None:
    api = _api(engine)
    await _append(engine, DISTRICT, 8, created_at=OLD)  # cursors 1-8, eight days old
    await _append(engine, DISTRICT, 2)  # 9-10, just now
    await _append(engine, OTHER, 3, created_at=OLD)  # another child's, never acknowledged
    assert await feed.ack(engine, child_center=DISTRICT, cursor=6) == 6

    deletes = Deletes(engine)
    assert await feed_pruning.prune(engine, keep=WEEK, batch=4) == 6
    assert deletes.count == 3  # 1-4, 5-6, then nothing left to delete
    assert await _held(engine, DISTRICT) == [7, 8, 9, 10]  # old but unacknowledged, and recent
    assert await _held(engine, OTHER) == [1, 2, 3]
    assert await feed_pruning.prune(engine, keep=WEEK) == 0

    # The child restarts and resumes from what it acknowledged: nothing is missing, new updates follow.
    assert await _watch(api, district, 6, 4) == [7, 8, 9, 10]
    assert await _append(engine, DISTRICT, 1) == 11  # the head stays: cursors go on
    assert await _watch(api, district, 6, 5) == [7, 8, 9, 10, 11]
    # Acknowledged but recent rows stay until they are older than the retention.
    assert await feed.ack(engine, child_center=DISTRICT, cursor=10) == 10
    assert await feed_pruning.prune(engine, keep=WEEK) == 2  # 7 and 8
    assert await _held(engine, DISTRICT) == [9, 10, 11]
    assert await feed_pruning.prune(engine, keep=WEEK, now=NOW + timedelta(days=8)) == 2  # 9, 10; not 11
    assert await _held(engine, DISTRICT) == [11]
    assert await _watch(api, district, 10, 1) == [11]

    # A child asking for what was pruned (its database restored from an old backup) is told so, with no gap.
    with pytest.raises(FailedPrecondition, match="pruned"):
        await _watch(api, district, 3, 1)


async def test_the_background_pruner_prunes_and_survives_a_failed_round(engine: AsyncEngine) -> None:
    await _append(engine, DISTRICT, 3, created_at=OLD)
    await feed.ack(engine, child_center=DISTRICT, cursor=3)
    rounds = 0
    real_prune = feed_pruning.prune

    async def flaky(*args: Any, **kwargs: Any) -> int:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise ConnectionError("the database is away")
        return await real_prune(*args, **kwargs)

    pruner = feed_pruning.FeedPruner(engine=engine, keep=WEEK, interval_s=0.01, jitter=lambda: 0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(feed_pruning, "prune", flaky)
        task = asyncio.create_task(pruner.run())
        try:
            for _ in range(200):
                if not await _held(engine, DISTRICT):
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert rounds >= 2 and await _held(engine, DISTRICT) == []


def test_the_retention_is_a_setting_of_seven_days_by_default() -> None:
    assert feed_pruning.retention({}) == timedelta(days=7)
    assert feed_pruning.retention({"ONESTOP_FEED_RETENTION_S": "3600"}) == timedelta(hours=1)
    for bad in ("soon", "-1"):
        with pytest.raises(SettingsError, match="ONESTOP_FEED_RETENTION_S"):
            feed_pruning.retention({"ONESTOP_FEED_RETENTION_S": bad})

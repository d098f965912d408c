"""Fixtures of supervision's unit tests: one replica on a SQLite file, a manual clock, a fake approval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.clock import ManualClock
from tests.unit.supervision.harness import FakeApproval, Supervision, at, fresh_calendar, sqlite_engine


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[Supervision]:
    """A supervision replica on a fresh SQLite database, its clock at Monday 22 September 2025, 09:00."""
    engine = await sqlite_engine(str(tmp_path / "supervision.sqlite"))
    try:
        yield Supervision(
            engine, clock=ManualClock(at(2025, 9, 22, 9)), calendar=fresh_calendar(), approval=FakeApproval()
        )
    finally:
        await engine.dispose()

"""Supervision's migration that records when a case went up, on SQLite and PostgreSQL: the cases forwarded
before it get the instant from what the database already holds, so the statistics count them too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import migrate
from services.common.db import create_engine
from services.supervision import orm, reports
from tests.unit.supervision.harness import at

BEFORE = "2026_11_26_0001"  # the revision without supervision_cases.forwarded_at


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'supervision.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await asyncio.to_thread(migrate.upgrade, service="supervision", database_url=db_url, revision=BEFORE)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def _case(case_id: str, *, status: str, reason: str, accepted_at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "case_number": f"210211-{case_id}",
        "center": "210211",
        "matter_code": "PL-CITY",
        "status": status,
        "accepted_at": accepted_at,
        "forwarded_to": "210200" if reason else "",
        "forward_reason": reason,
        "updated_at": accepted_at,
        **extra,
    }


def _case_clock(case_id: str, *, started_at: datetime, stopped_at: datetime, outcome: int) -> dict[str, Any]:
    return {
        "clock_id": f"case/{case_id}",
        "case_id": case_id,
        "case_number": f"210211-{case_id}",
        "task_id": "",
        "center": "210211",
        "matter_code": "PL-PROV",
        "accepted_at": started_at,
        "started_at": started_at,
        "limit_days": 7,
        "pauses": [],
        "claimants": [],
        "stopped_at": stopped_at,
        "outcome": outcome,
        "updated_at": stopped_at,
    }


async def test_cases_forwarded_before_the_migration_get_when_they_went_up(
    db_url: str, engine: AsyncEngine
) -> None:
    old_cases = [c for c in orm.cases.c if c.name != "forwarded_at"]
    rows = [
        _case("above", status="forwarded", reason="decided_above", accepted_at=at(2025, 9, 22)),
        _case(
            "above-done",
            status="concluded",
            reason="decided_above",
            accepted_at=at(2025, 9, 23),
            outcome=1,
            concluded_at=at(2025, 10, 20),
        ),
        _case("passed", status="forwarded", reason="preliminary_review", accepted_at=at(2025, 9, 22)),
        _case(
            "refused",
            status="concluded",
            reason="preliminary_review",
            accepted_at=at(2025, 9, 22),
            outcome=2,
            concluded_at=at(2025, 9, 25),
        ),
        _case("local", status="routed", reason="", accepted_at=at(2025, 9, 22)),
    ]
    async with engine.begin() as conn:
        for row in rows:
            await conn.execute(
                orm.cases.insert().values({k: v for k, v in row.items() if k in {c.name for c in old_cases}})
            )
        await conn.execute(
            orm.clocks.insert(),
            [
                _case_clock("passed", started_at=at(2025, 9, 22), stopped_at=at(2025, 9, 24, 11), outcome=1),
                _case_clock("refused", started_at=at(2025, 9, 22), stopped_at=at(2025, 9, 25), outcome=2),
            ],
        )

    await asyncio.to_thread(migrate.upgrade, service="supervision", database_url=db_url)
    async with engine.connect() as conn:
        went_up = dict((await conn.execute(select(orm.cases.c.case_id, orm.cases.c.forwarded_at))).all())
        figures = await reports.statistics(conn, group_by="center", start=at(2025, 9, 1), end=at(2025, 11, 1))
    assert went_up == {
        "above": at(2025, 9, 22),
        "above-done": at(2025, 9, 23),
        "passed": at(2025, 9, 24, 11),
        "refused": None,
        "local": None,
    }
    [row] = figures
    assert (row.forwarded, row.forwarded_waiting, row.forwarded_approved) == (3, 2, 1)

"""The audit log: decisions and seals are chained; an edited or deleted record is caught and named."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from sqlalchemy import text

from onestop.common.v1 import common_pb2
from services.common.db import create_engine
from tests.harness import NodeClients

pytestmark = pytest.mark.e2e


def _verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "audit",
            "verify",
            "--database",
            url,
            "--service",
            "approval",
        ],
        capture_output=True,
        text=True,
    )


def _sql(url: str, statement: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text(statement))
        await engine.dispose()

    asyncio.run(run())


def test_every_decision_and_seal_is_chained_and_tampering_is_pinpointed(node_factory) -> None:
    node = node_factory(services=("routing", "intake", "approval"))
    c = NodeClients.of(node)
    for _ in range(2):
        number = c.submit("TR-001").case.case_number
        for task in c.wait_tasks(number, count=4):
            c.decide(task)
        c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED)
    url = node.database_url("approval")
    ok = _verify(url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "approval: 18 records, chain intact" in ok.stdout  # 2 × (4 decisions + 4 task seals + 1 case seal)

    _sql(url, "UPDATE approval_audit SET detail = '{\"reasons\": []}', actor = 'someone.else' WHERE seq = 5")
    edited = _verify(url)
    assert edited.returncode == 1
    assert "record 5 was edited" in edited.stdout

    _sql(url, "DELETE FROM approval_audit WHERE seq IN (5, 6)")
    deleted = _verify(url)
    assert deleted.returncode == 1
    assert "record 5 is missing" in deleted.stdout

"""The audit chain's canonical form does not move: records chained by the earlier code (a JSON round trip
of every detail, `json.dumps` per hash) still verify, and new records hash exactly as that code would
have hashed them, whatever their detail holds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.db import create_engine

AT = datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))


class Verdict(IntEnum):
    APPROVE = 1


DETAILS: list[dict[str, Any]] = [
    {},
    {"task_id": "t-1", "key_id": "abcd1234", "signature": "ab" * 64},
    {"task_id": "t-2", "department": "公安", "reasons": [], "items": ["M-01", "M-02"]},
    {"nested": {"b": [1, 2.5, None, True, {"z": "é", "a": "\u2028"}], "a": -0.0}, "n": 10**20},
    {"when": AT, "tuple": (1, "x"), 3: "int key", "enum": Verdict.APPROVE, "money": Decimal("1.10")},
    {"set_as_str": {1}, "bytes": b"\x00", "object": object.__name__},
]
# Not JSON PostgreSQL would store, but a record's hash must not change either.
HASH_ONLY: list[dict[str, Any]] = [{"nan": float("nan"), "inf": [float("inf")]}]


def old_entry(detail: dict[str, Any]) -> Any:
    """The detail as the earlier code normalised it."""
    return json.loads(json.dumps(detail, default=str))


def old_hash(
    prev: str, *, seq: int, at: datetime, actor: str, role: str, action: str, subject: str, detail: Any
) -> str:
    """The earlier code's record hash, verbatim."""
    body = json.dumps(
        {
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "role": role,
            "action": action,
            "subject": subject,
            "detail": detail,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256((prev + body).encode("utf-8")).hexdigest()


@pytest.mark.parametrize("detail", DETAILS + HASH_ONLY, ids=range(len(DETAILS) + len(HASH_ONLY)))
def test_a_record_hashes_exactly_as_the_earlier_code_hashed_it(detail: dict[str, Any]) -> None:
    e = audit.entry(
        at=AT, actor="chief.gaj", role="chief_representative", action="seal", subject="C-1", detail=detail
    )
    expected_detail = old_entry(detail)
    assert json.dumps(e.detail, sort_keys=True) == json.dumps(expected_detail, sort_keys=True)
    fields = dict(seq=7, at=e.at, actor=e.actor, role=e.role, action=e.action, subject=e.subject)
    assert audit.record_hash("f" * 64, **fields, detail=e.detail) == old_hash(
        "f" * 64, **fields, detail=expected_detail
    )


def test_a_record_keeps_its_detail_as_it_was_when_recorded() -> None:
    reasons = ["incomplete"]
    detail = {"reasons": reasons, "by": {"username": "a"}}
    e = audit.entry(at=AT, actor="a", role="r", action="reject", subject="C-1", detail=detail)
    reasons.append("added later")
    detail["by"]["username"] = "changed"
    assert e.detail == {"reasons": ["incomplete"], "by": {"username": "a"}}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


async def test_records_chained_by_the_earlier_code_and_by_this_one_verify_as_one_chain(
    engine: AsyncEngine,
) -> None:
    metadata = MetaData()
    tables: tuple[Table, Table] = audit.audit_tables(metadata, "t")
    log, head = tables
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        # Rows as the earlier code wrote them.
        prev, seq = audit.GENESIS, 0
        for detail in DETAILS:
            seq += 1
            plain = old_entry(detail)
            at = AT.astimezone(UTC)
            digest = old_hash(
                prev, seq=seq, at=at, actor="a", role="r", action="x", subject="C-1", detail=plain
            )
            await conn.execute(
                insert(log).values(
                    seq=seq,
                    at=at,
                    actor="a",
                    role="r",
                    action="x",
                    subject="C-1",
                    detail=plain,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        await conn.execute(insert(head).values(id=1, seq=seq, hash=prev))
    async with engine.begin() as conn:  # then this code appends to the same chain
        buffer = audit.AuditBuffer(tables)
        for detail in DETAILS:
            buffer.add(at=AT, actor="b", role="r", action="y", subject="C-2", detail=detail)
        await buffer.flush(conn)
    async with engine.connect() as conn:
        verdict = await audit.verify(conn, tables)
    assert verdict == audit.Verdict(records=2 * len(DETAILS), ok=True)

    async with engine.begin() as conn:  # and an edit is still caught
        await conn.execute(
            update(log).where(log.c.seq == len(DETAILS) + 2).values(detail={"task_id": "forged"})
        )
    async with engine.connect() as conn:
        verdict = await audit.verify(conn, tables)
    assert not verdict.ok and verdict.first_bad_seq == len(DETAILS) + 2

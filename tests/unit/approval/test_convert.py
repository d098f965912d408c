"""A task row reads the same as a protobuf Task whichever way the message is built: every field, the
optional instants and actors present exactly when the row has them (also at the epoch, also naive)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from onestop.common.v1 import common_pb2
from services.approval.convert import task_message
from services.common.events import timestamp

NOW = datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _row(**changes: Any) -> dict[str, Any]:
    row = {
        "task_id": "t-1",
        "case_id": "c-1",
        "case_number": "210200-20261205-00001",
        "matter_code": "TR-001",
        "department": "GA",
        "window": "w1",
        "grp": 2,
        "prerequisites": ["LAND"],
        "lead": True,
        "status": 5,
        "priority": 10,
        "due_at": NOW,
        "claimed_by": None,
        "decided_by": {"username": "chief.ga", "role": "chief_representative", "department": "GA"},
        "opinion": None,
        "reasons": ["材料不全"],
        "items": [],
        "extension_days": 3,
        "created_at": NOW - timedelta(days=1),
        "opened_at": NOW,
        "decided_at": NOW,
    }
    return row | changes


def _expected(row: dict[str, Any]) -> common_pb2.Task:
    """The message built field by field, each submessage apart (what task_message did before)."""
    extra: dict[str, Any] = {}
    for name in ("claimed_by", "decided_by"):
        if row.get(name):
            extra[name] = common_pb2.Actor(**row[name])
    for name in ("due_at", "created_at", "decided_at"):
        if row.get(name) is not None:
            extra[name] = timestamp(row[name])
    return common_pb2.Task(
        task_id=row["task_id"],
        case_id=row["case_id"],
        case_number=row["case_number"],
        matter_code=row["matter_code"],
        department=row["department"],
        window=row["window"],
        group=row["grp"],
        prerequisites=list(row["prerequisites"]),
        lead=row["lead"],
        status=row["status"],
        priority=row["priority"],
        opinion=row["opinion"] or "",
        reasons=list(row["reasons"] or []),
        key_project=row["priority"] >= 10,
        extension_days=row["extension_days"],
        **extra,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"decided_by": None, "decided_at": None, "due_at": None, "reasons": None, "priority": 0},
        {"claimed_by": {"username": "clerk"}, "decided_by": {}, "opinion": "同意"},
        {"due_at": EPOCH, "created_at": EPOCH - timedelta(microseconds=1)},  # present though all zero
        {"due_at": NOW.replace(tzinfo=None), "decided_at": NOW.astimezone(timezone(timedelta(hours=8)))},
    ],
)
def test_a_task_row_becomes_the_same_message_field_for_field(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    message, expected = task_message(row), _expected(row)
    assert message == expected
    for name in ("due_at", "created_at", "decided_at", "claimed_by", "decided_by"):
        assert message.HasField(name) == expected.HasField(name), name
    assert message.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)

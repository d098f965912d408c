"""Approval's rows as protobuf messages and as the rules' views (no I/O)."""

from __future__ import annotations

from typing import Any

from onestop.common.v1 import common_pb2
from services.approval import model
from services.approval.model import Who
from services.common.events import set_instant

# The Actor's fields in field order: all strings, stored (as json_format would) without the empty ones.
ACTOR_FIELDS = tuple(f.name for f in common_pb2.Actor.DESCRIPTOR.fields)
assert all(f.type == f.TYPE_STRING for f in common_pb2.Actor.DESCRIPTOR.fields)


def actor_json(actor: common_pb2.Actor) -> dict[str, Any]:
    """An actor as stored JSON."""
    return {name: value for name in ACTOR_FIELDS if (value := getattr(actor, name))}


def who(actor: common_pb2.Actor) -> Who:
    """The rules' view of an actor."""
    return Who(username=actor.username, role=actor.role, department=actor.department)


def view(row: dict[str, Any]) -> model.TaskView:
    """The rules' view of a task row."""
    claimed = (row.get("claimed_by") or {}).get("username", "")
    return model.TaskView(
        row["task_id"], row["department"], row["status"], tuple(row["prerequisites"]), claimed
    )


def task_message(row: dict[str, Any]) -> common_pb2.Task:
    """The protobuf view of a task row."""
    # Built in place (each Timestamp and Actor set inside the Task rather than built apart and copied in):
    # every ListQueue row, DecideTask reply and TaskOpened event is one of these.
    task = common_pb2.Task(
        task_id=row["task_id"],
        case_id=row["case_id"],
        case_number=row["case_number"],
        matter_code=row["matter_code"],
        department=row["department"],
        window=row["window"],
        group=row["grp"],
        prerequisites=row["prerequisites"],
        lead=row["lead"],
        status=row["status"],
        priority=row["priority"],
        opinion=row["opinion"] or "",
        reasons=row["reasons"] or (),
        key_project=row["priority"] >= model.KEY_PROJECT_PRIORITY,
        extension_days=row["extension_days"],
        special_procedure=row.get("special_procedure") or "",
    )
    for name in ("claimed_by", "decided_by"):
        if actor := row.get(name):
            getattr(task, name).MergeFrom(common_pb2.Actor(**actor))
    for name in ("due_at", "created_at", "decided_at"):
        if (value := row.get(name)) is not None:
            set_instant(getattr(task, name), value)
    return task

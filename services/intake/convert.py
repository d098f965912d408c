"""Conversions at intake's edge: database rows and protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from services.common.clock import aware
from services.common.events import timestamp


def to_json(msg: Any) -> dict[str, Any]:
    """A protobuf message as a JSON-ready dict (field names as in the proto)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def case_message(row: dict[str, Any]) -> common_pb2.Case:
    """The protobuf view of a case row."""
    msg = common_pb2.Case(
        case_id=row["case_id"],
        case_number=row["case_number"] or "",
        center=row["center"],
        matter_code=row["matter_code"],
        matter_version=row["matter_version"],
        status=row["status"],
        outcome=common_pb2.Outcome.ValueType(row["outcome"] or 0),
        channel=row["channel"],
        key_project=bool(row["key_project"]),
        reasons=list(row["reasons"] or []),
        origin_center=row["origin_center"] or "",
        origin_case_id=row["origin_case_id"] or "",
        title=row["title"] or "",
    )
    json_format.ParseDict(row["applicant"] or {}, msg.applicant)
    json_format.ParseDict(row["submitted_by"] or {}, msg.accepted_by)
    for doc in row["documents"] or []:
        json_format.ParseDict(doc, msg.documents.add())
    for item in row["open_supplement"] or []:
        json_format.ParseDict(item, msg.open_supplement.add())
    msg.form.update(row["form"] or {})
    for name in ("submitted_at", "accepted_at", "concluded_at", "promised_deadline"):
        value = aware(row[name])
        if value is not None:
            getattr(msg, name).CopyFrom(timestamp(value))
    return msg


def timeline_message(rows: list[dict[str, Any]]) -> intake_pb2.Timeline:
    """The protobuf timeline of a case."""
    out = intake_pb2.Timeline()
    for row in rows:
        entry = out.entries.add(
            kind=row["kind"],
            summary_zh=row["summary_zh"],
            summary_en=row["summary_en"],
            actor=row["actor"],
            department=row["department"],
        )
        entry.at.CopyFrom(timestamp(aware(row["at"]) or datetime.now(UTC)))
    return out

"""Protobuf at the edge: envelopes into facts, rows into notification messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.notification.v1 import notification_pb2
from services.common.clock import aware, from_timestamp
from services.common.events import kind, timestamp
from services.notification.live import LiveUpdate
from services.notification.model import Fact, Recipient, TaskInfo


def fact(env: events_pb2.Envelope) -> Fact:
    """The envelope as plain data (enum names, ISO instants, base64 bytes), for the rules."""
    what = kind(env)
    body = getattr(env, what)
    data = json_format.MessageToDict(
        body, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return Fact(
        event_id=env.event_id,
        kind=what,
        case_id=env.case_id,
        case_number=env.case_number,
        at=from_timestamp(env.occurred_at),
        data=data,
    )


def recipient(env: events_pb2.Envelope) -> Recipient:
    """The applicant described by a case_accepted event."""
    body = env.case_accepted
    agent = body.accepted_by.username if body.channel == common_pb2.CHANNEL_AGENT else ""
    return Recipient(
        case_number=env.case_number,
        case_id=env.case_id,
        name=body.applicant_name,
        phone=body.applicant_phone,
        email=body.applicant_email,
        language=body.applicant_language,
        agent=agent,
        title=body.title,
        matter_code=body.matter_code,
        # A case uploaded by a child center is that center's to tell its applicant about.
        direct=not body.origin_center,
        origin_center=body.origin_center,
    )


def task(env: events_pb2.Envelope) -> TaskInfo:
    """Where a task_opened event's task sits."""
    t = env.task_opened.task
    return TaskInfo(
        task_id=t.task_id,
        case_number=t.case_number or env.case_number,
        department=t.department,
        window=t.window,
    )


def delivery_message(row: dict[str, Any]) -> notification_pb2.Delivery:
    """A delivery row as the staff console sees it (addresses masked)."""
    msg = notification_pb2.Delivery(
        delivery_id=row["delivery_id"],
        event_id=row["event_id"],
        channel=row["channel"],
        address_masked=row["address_masked"],
        state=row["state"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        kind=row["kind"],
        case_number=row["case_number"],
    )
    next_at = aware(row["next_attempt_at"])
    if next_at is not None:
        msg.next_attempt_at.CopyFrom(timestamp(next_at))
    return msg


def inbox_message(row: dict[str, Any]) -> notification_pb2.InboxMessage:
    """An inbox row as a message."""
    msg = notification_pb2.InboxMessage(
        message_id=row["message_id"],
        recipient=row["recipient"],
        kind=row["kind"],
        title=row["title"],
        body=row["body"],
        case_number=row["case_number"],
    )
    created = aware(row["created_at"])
    if created is not None:
        msg.created_at.CopyFrom(timestamp(created))
    return msg


def notice_message(row: dict[str, Any]) -> notification_pb2.Notice:
    """A stored written notice."""
    msg = notification_pb2.Notice(
        notice_id=row["notice_id"], case_number=row["case_number"], kind=row["kind"], html=row["html"]
    )
    msg.created_at.CopyFrom(timestamp(row["created_at"]))
    return msg


def case_update(update: LiveUpdate) -> notification_pb2.CaseUpdate:
    """A live update as the stream carries it."""
    msg = notification_pb2.CaseUpdate(
        case_number=update.case_number, kind=update.kind, summary=update.summary
    )
    msg.at.CopyFrom(timestamp(update.at))
    return msg

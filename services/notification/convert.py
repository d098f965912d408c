"""Protobuf at the edge: envelopes into facts, rows into notification messages."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.notification.v1 import notification_pb2
from services.common.clock import aware, from_timestamp
from services.common.events import kind, timestamp
from services.notification.live import LiveUpdate
from services.notification.model import Fact, Recipient, TaskInfo


def fact(env: events_pb2.Envelope) -> Fact:
    """The envelope as plain data (enum names, ISO instants, base64 bytes), for the rules: converted
    field by field as the rules read it (most read two or three fields of a body)."""
    what = kind(env)
    data = lazy(getattr(env, what))
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
        case_number=update.case_number, kind=update.kind, summary=update.summary, department=update.department
    )
    msg.at.CopyFrom(timestamp(update.at))
    return msg


# --- protobuf as plain data ---------------------------------------------------------------------------
# What json_format.MessageToDict(message, preserving_proto_field_name=True,
# always_print_fields_with_no_presence=True) returns, in the same key order, at a fraction of its cost
# (it looks every field's type up again on every call). Messages with field kinds the events do not use
# (maps, floating point, well-known types other than Timestamp) are left to json_format.

Convert = Callable[[Any], Any]
_LOCAL_KINDS = {
    FieldDescriptor.CPPTYPE_STRING,
    FieldDescriptor.CPPTYPE_BOOL,
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT64,
    FieldDescriptor.CPPTYPE_ENUM,
    FieldDescriptor.CPPTYPE_MESSAGE,
}
_TIMESTAMP = "google.protobuf.Timestamp"


def plain(message: Message) -> dict[str, Any]:
    """`message` as json_format.MessageToDict gives it (field names as in the .proto, every field
    without presence printed)."""
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    js: dict[str, Any] = {}
    for field, value in message.ListFields():
        convert = _converter(field)
        js[field.name] = [convert(v) for v in value] if field.is_repeated else convert(value)
    for name, default in plan:
        if name not in js:
            js[name] = [] if default is _REPEATED else default
    return js


_REPEATED = object()


@functools.cache
def _plan(desc: Descriptor) -> tuple[tuple[str, Any], ...] | None:
    """The fields printed when unset, with their printed defaults; None when json_format must do it."""
    if desc.full_name.startswith("google.protobuf.") or desc.GetOptions().map_entry:
        return None
    out = []
    for field in desc.fields:
        if field.cpp_type not in _LOCAL_KINDS or field.is_extension:
            return None
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return None
        if field.enum_type is not None and field.enum_type.is_closed:
            return None  # json_format refuses unknown numbers of a closed enum
        if field.has_presence:
            continue
        out.append((field.name, _REPEATED if field.is_repeated else _converter(field)(field.default_value)))
    return tuple(out)


@functools.cache
def _converter(field: FieldDescriptor) -> Convert:
    kind_ = field.cpp_type
    if kind_ == FieldDescriptor.CPPTYPE_MESSAGE:
        if field.message_type is not None and field.message_type.full_name == _TIMESTAMP:
            return lambda value: value.ToJsonString()
        return plain
    if kind_ == FieldDescriptor.CPPTYPE_ENUM:
        assert field.enum_type is not None
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda value: names.get(value, value)  # an open enum prints an unknown number as is
    if kind_ == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return lambda value: base64.b64encode(value).decode("utf-8")
        return str
    if kind_ == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    if kind_ in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return str
    return int


class LazyPlain(Mapping[str, Any]):
    """`plain(message)` converted field by field on first reading: the same keys, values and order
    (nested messages are LazyPlain too; `dict(...)` of one gives exactly `plain`'s dict at its top)."""

    __slots__ = ("_message", "_plan", "_fields", "_done")

    def __init__(self, message: Message, plan: tuple[tuple[str, Any], ...]) -> None:
        self._message = message
        self._plan = plan
        self._fields = message.DESCRIPTOR.fields_by_name
        self._done: dict[str, Any] = {}

    def __contains__(self, key: object) -> bool:
        field = self._fields.get(key) if isinstance(key, str) else None
        if field is None:
            return False
        return not field.has_presence or self._message.HasField(field.name)

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key not in self:
            raise KeyError(key)
        field = self._fields[key]
        convert = _lazy_converter(field)
        value = getattr(self._message, key)
        out = [convert(v) for v in value] if field.is_repeated else convert(value)
        self._done[key] = out
        return out

    def __iter__(self) -> Iterator[str]:
        # json_format's order: the fields set, in field-number order, then the unset ones printed
        # with their defaults, in declaration order.
        seen = [field.name for field, _ in self._message.ListFields()]
        return iter(seen + [name for name, _ in self._plan if name not in seen])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"LazyPlain({self._message.DESCRIPTOR.name})"


def lazy(message: Message) -> Mapping[str, Any]:
    """`message` as plain data (what `plain` gives), converted as it is read."""
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return plain(message)
    return LazyPlain(message, plan)


@functools.cache
def _lazy_converter(field: FieldDescriptor) -> Convert:
    if (
        field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        and field.message_type is not None
        and field.message_type.full_name != _TIMESTAMP
    ):
        return lazy
    return _converter(field)

"""Events as plain data: the fast conversion gives exactly what json_format.MessageToDict gives."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from onestop.events.v1 import events_pb2
from services.notification.convert import lazy, plain

BODIES = [f.name for f in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields]


def _fill(message: Message, seed: int, depth: int = 0) -> None:
    """Set every field of `message` (nested ones too) to a value that differs from its default."""
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for i, value in enumerate(_values(value_field, seed)):
                getattr(message, field.name)[f"2027-01-0{i + 1}"] = value
            continue
        if field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                stamps = [(1_700_000_000 + seed, 0), (1_700_000_001, 5_000_000), (1_700_000_002, 123_456_789)]
                targets = [getattr(message, field.name).add() for _ in stamps] if field.is_repeated else None
                for target, (secs, nanos) in zip(
                    targets or [getattr(message, field.name)], stamps, strict=False
                ):
                    target.seconds, target.nanos = secs, nanos
            elif depth < 4:
                if field.is_repeated:
                    for i in range(2):
                        _fill(getattr(message, field.name).add(), seed + i, depth + 1)
                else:
                    _fill(getattr(message, field.name), seed, depth + 1)
            continue
        values = _values(field, seed)
        if field.is_repeated:
            getattr(message, field.name).extend(values)
        else:
            setattr(message, field.name, values[0])


def _values(field: FieldDescriptor, seed: int) -> list[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return [numbers[seed % len(numbers)] or numbers[-1], 999]  # a named value and an unknown number
    if t == FieldDescriptor.TYPE_BYTES:
        return [b"\x00\xffsig" + bytes([seed % 256]), b""]
    if t == FieldDescriptor.TYPE_STRING:
        return [f"值 {field.name} {seed}", ""]
    if t == FieldDescriptor.TYPE_BOOL:
        return [True, False]
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return [2**40 + seed, 0]
    return [seed + 7, -3 if field.cpp_type == FieldDescriptor.CPPTYPE_INT32 else 3]


def _expected(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@pytest.mark.parametrize("body", BODIES)
def test_every_event_body_converts_as_json_format_does_empty_and_filled(body: str) -> None:
    env = events_pb2.Envelope()
    message = getattr(env, body)
    assert json.dumps(plain(message)) == json.dumps(_expected(message))  # same keys, values and order
    for seed in (1, 2):
        message.Clear()
        _fill(message, seed)
        assert json.dumps(plain(message)) == json.dumps(_expected(message))


def test_partly_filled_messages_keep_json_formats_key_order() -> None:
    env = events_pb2.Envelope()
    _fill(env.case_concluded, 3)
    body = env.case_concluded
    for field in list(body.DESCRIPTOR.fields)[::2]:
        body.ClearField(field.name)
    assert json.dumps(plain(body)) == json.dumps(_expected(body))


def _materialized(value: Any) -> Any:
    """A lazily converted value read whole, the way json.dumps would read a dict."""
    if isinstance(value, Mapping):
        return {k: _materialized(value[k]) for k in value}
    if isinstance(value, list):
        return [_materialized(v) for v in value]
    return value


@pytest.mark.parametrize("body", BODIES)
def test_the_lazy_conversion_reads_as_the_whole_one_empty_and_filled(body: str) -> None:
    env = events_pb2.Envelope()
    message = getattr(env, body)
    for seed in (0, 1, 2):
        if seed:
            message.Clear()
            _fill(message, seed)
        whole = plain(message)
        data = lazy(message)
        assert json.dumps(_materialized(data)) == json.dumps(whole)  # same keys, values and order
        assert len(data) == len(whole)
        for field in message.DESCRIPTOR.fields:  # a field absent from plain's dict is absent here
            assert (field.name in data) == (field.name in whole)
            if field.name not in whole:
                with pytest.raises(KeyError):
                    data[field.name]
        assert "no_such_field" not in data

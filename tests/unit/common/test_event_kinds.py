"""Every kind of event body wraps into an envelope of its own kind; anything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.events import EVENT_KINDS, MalformedEvent, kind, new_event

AT = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize("body_kind", EVENT_KINDS)
def test_each_body_wraps_into_an_envelope_of_its_kind(body_kind: str) -> None:
    field = events_pb2.Envelope.DESCRIPTOR.fields_by_name[body_kind]
    body = field.message_type._concrete_class()
    env = new_event(center="210200", producer="test", at=AT, body=body)
    assert kind(env) == body_kind
    assert env.HasField(body_kind)


def test_a_message_that_is_no_event_body_is_refused() -> None:
    with pytest.raises(MalformedEvent, match="Actor is not an event body"):
        new_event(center="210200", producer="test", at=AT, body=common_pb2.Actor(username="x"))

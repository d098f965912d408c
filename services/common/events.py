"""Event envelopes: building them, naming their subjects, reading them back."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from onestop.events.v1 import events_pb2

SUBJECT_PREFIX = "ev."
DEAD_LETTER_PREFIX = "dlq."
EVENT_KINDS: tuple[str, ...] = tuple(
    f.name for f in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields
)


class MalformedEvent(ValueError):
    """A message that is not an Envelope, or carries no known body; `data`: the bad envelope's own
    bytes when it came in a batch with others."""

    def __init__(self, message: str, *, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = data


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def timestamp(instant: datetime) -> Timestamp:
    """A protobuf Timestamp for a timezone-aware instant (a naive one is taken to be UTC)."""
    # Integer arithmetic, as Timestamp.FromDatetime does, at half its cost: every event carries one.
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    seconds, micros = divmod((instant - _EPOCH) // _MICROSECOND, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def set_instant(ts: Timestamp, instant: datetime) -> None:
    """Set a Timestamp field in place to what `timestamp(instant)` gives (present even at the epoch)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    seconds, micros = divmod((instant - _EPOCH) // _MICROSECOND, 1_000_000)
    ts.seconds, ts.nanos = seconds, micros * 1000


def new_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as strings, exactly as ``str(uuid.uuid4())`` writes them.

    One ``os.urandom`` call and one hex conversion for all of them: ``str(uuid.uuid4())`` costs about
    4 µs, and a supervision tick names two thousand events at once.
    """
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


_ID_POOL: list[str] = []
_ID_BATCH = 256
# A forked child must not hand out the ids its parent drew already.
os.register_at_fork(after_in_child=_ID_POOL.clear)


def new_event_id() -> str:
    """A fresh random event id (a version-4 UUID string), drawn from a pool refilled in batches."""
    if not _ID_POOL:
        _ID_POOL.extend(new_ids(_ID_BATCH))
    return _ID_POOL.pop()


def subject_for(kind: str) -> str:
    """The JetStream subject of an event kind, e.g. ev.case_accepted."""
    return SUBJECT_PREFIX + kind


def new_event(
    *,
    center: str,
    producer: str,
    at: datetime,
    body: Message,
    case_id: str = "",
    case_number: str = "",
    trace: str = "",
    event_id: str | None = None,
) -> events_pb2.Envelope:
    """Wrap `body` (one of the Envelope's oneof messages) into a new envelope."""
    kind = _kind_of(body)
    env = events_pb2.Envelope(
        event_id=event_id or new_event_id(),
        center=center,
        producer=producer,
        case_id=case_id,
        case_number=case_number,
        trace=trace,
    )
    env.occurred_at.CopyFrom(timestamp(at))
    getattr(env, kind).CopyFrom(body)
    return env


# The Envelope's body field of each body message (the first field, should two share a message type):
# looked up on every event built, so a dict rather than a walk over the oneof's fields.
_KIND_OF_BODY: dict[str, str] = {}
for _field in events_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields:
    if _field.message_type is not None:
        _KIND_OF_BODY.setdefault(_field.message_type.name, _field.name)


def _kind_of(body: Message) -> str:
    name = body.DESCRIPTOR.name
    try:
        return _KIND_OF_BODY[name]
    except KeyError:
        raise MalformedEvent(f"{name} is not an event body") from None


def kind(env: events_pb2.Envelope) -> str:
    """The envelope's body name, e.g. case_accepted."""
    which = env.WhichOneof("body")
    if not which:
        raise MalformedEvent(f"event {env.event_id or '?'} has no body")
    return which


def decode(data: bytes) -> events_pb2.Envelope:
    """Parse an envelope; MalformedEvent when it is not one or has no known body."""
    env = events_pb2.Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise MalformedEvent(f"not an event envelope: {exc}") from exc
    if not env.event_id:
        raise MalformedEvent("event without event_id")
    kind(env)
    return env


# A JetStream message with this header carries an EnvelopeBatch of that many envelopes (all of its
# subject's kind); without it, one Envelope. See `pack` and `unpack`.
BATCH_HEADER = "Onestop-Batch"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pack(payloads: Sequence[bytes]) -> bytes:
    """The EnvelopeBatch of envelopes already encoded, built without parsing them: a repeated message
    field is on the wire its tag (field 1, length-delimited: 0x0a), each one's length and its bytes."""
    return b"".join(b"\x0a" + _varint(len(p)) + p for p in payloads)


def unpack(data: bytes, headers: Mapping[str, str] | None) -> list[events_pb2.Envelope | MalformedEvent]:
    """The envelopes of a JetStream message, in order: one, or a batch's (header BATCH_HEADER). An
    envelope of a batch that is not a valid event is given as its MalformedEvent, so the others still
    apply; a message that does not parse at all raises MalformedEvent."""
    if not headers or BATCH_HEADER not in headers:
        return [decode(data)]
    try:
        batch = events_pb2.EnvelopeBatch.FromString(data)
    except DecodeError as exc:
        raise MalformedEvent(f"not an event batch: {exc}") from exc
    out: list[events_pb2.Envelope | MalformedEvent] = []
    for env in batch.envelopes:
        if not env.event_id:
            out.append(MalformedEvent("event without event_id", data=env.SerializeToString()))
        elif not env.WhichOneof("body"):
            out.append(MalformedEvent(f"event {env.event_id} has no body", data=env.SerializeToString()))
        else:
            out.append(env)
    return out

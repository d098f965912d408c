"""The relay packs events of one subject into one message without changing any case's order."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from onestop.events.v1 import events_pb2
from services.common.events import BATCH_HEADER, MalformedEvent, new_event, subject_for, unpack
from services.common.jetstream import FETCH_EVENTS, EventConsumer, _chunks, _count
from services.common.outbox import Row, bundle

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BODIES = {
    "task_opened": events_pb2.TaskOpened(),
    "task_decided": events_pb2.TaskDecided(),
    "case_concluded": events_pb2.CaseConcluded(),
    "calendar_missing": events_pb2.CalendarMissing(),
}


def _rows(spec: list[tuple[str, str]]) -> list[Row]:
    rows = []
    for i, (kind, case) in enumerate(spec):
        env = new_event(
            center="210200", producer="probe", at=AT, body=BODIES[kind], case_id=case, event_id=f"e{i}"
        )
        rows.append((env.event_id, subject_for(kind), env.SerializeToString(), case))
    return rows


def _delivered(messages: list[tuple[str, bytes, dict[str, str]]]) -> list[events_pb2.Envelope]:
    """What a consumer reading every subject would apply, in stream order."""
    out = []
    for subject, payload, headers in messages:
        envs = unpack(payload, headers)
        assert not any(isinstance(e, MalformedEvent) for e in envs)
        assert all(subject_for(e.WhichOneof("body")) == subject for e in envs)  # type: ignore[union-attr]
        if len(envs) > 1:
            assert headers[BATCH_HEADER] == str(len(envs))
        else:
            assert headers["Nats-Msg-Id"] == envs[0].event_id  # type: ignore[union-attr]
        out += envs
    return out  # type: ignore[return-value]


spec = st.lists(
    st.tuples(st.sampled_from(sorted(BODIES)), st.sampled_from(["c1", "c2", "c3", "c4", ""])), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(spec, st.integers(min_value=1, max_value=8))
def test_every_event_goes_once_and_every_case_keeps_its_order(
    spec: list[tuple[str, str]], limit: int
) -> None:
    rows = _rows(spec)
    messages = bundle(rows, limit=limit)
    delivered = [e.event_id for e in _delivered(messages)]
    assert sorted(delivered) == sorted(r[0] for r in rows)
    position = {event_id: i for i, event_id in enumerate(delivered)}
    for case in {r[3] for r in rows if r[3]}:
        ids = [r[0] for r in rows if r[3] == case]
        assert [position[i] for i in ids] == sorted(position[i] for i in ids)
    for index, row in enumerate(rows):
        if not row[3]:  # an event without a case keeps its place against every other event
            assert all(position[r[0]] < position[row[0]] for r in rows[:index])
            assert all(position[r[0]] > position[row[0]] for r in rows[index + 1 :])
    assert all(len(unpack(p, h)) <= limit for _, p, h in messages)


def test_a_commit_of_decisions_and_conclusions_goes_as_one_message_per_subject() -> None:
    # A group-committed batch of DecideTask calls: each case's decision, then its conclusion.
    rows = _rows([("task_decided", "c1"), ("case_concluded", "c1"), ("task_decided", "c2"),
                  ("case_concluded", "c2"), ("task_decided", "c3")])  # fmt: skip
    messages = bundle(rows)
    assert [(s, len(unpack(p, h))) for s, p, h in messages] == [
        ("ev.task_decided", 3),
        ("ev.case_concluded", 2),
    ]


def test_a_batch_id_names_exactly_its_events() -> None:
    rows = _rows([("task_opened", "c1"), ("task_opened", "c2"), ("task_opened", "c3")])
    (whole,) = bundle(rows)
    (again,) = bundle(rows)
    (fewer,) = bundle(rows[:2])
    assert whole[2]["Nats-Msg-Id"] == again[2]["Nats-Msg-Id"]  # a republish is dropped by the broker
    assert whole[2]["Nats-Msg-Id"] != fewer[2]["Nats-Msg-Id"]  # a regrouping is not taken for it


def test_an_event_not_valid_inside_a_batch_is_singled_out() -> None:
    good = new_event(center="210200", producer="p", at=AT, body=events_pb2.TaskOpened(), case_id="c1")
    no_body = events_pb2.Envelope(event_id="no-body")
    rows: list[Row] = [
        (good.event_id, "ev.task_opened", good.SerializeToString(), "c1"),
        ("no-body", "ev.task_opened", no_body.SerializeToString(), "c2"),
    ]
    ((_, payload, headers),) = bundle(rows)
    first, second = unpack(payload, headers)
    assert first == good
    assert isinstance(second, MalformedEvent) and second.data == no_body.SerializeToString()


def test_a_consumer_that_is_behind_applies_at_most_a_bounded_number_of_events_per_transaction() -> None:
    rows = _rows([("task_opened", f"c{i}") for i in range(700)])
    messages = [SimpleNamespace(headers=h) for _, _, h in bundle(rows, limit=256)]  # 256, 256, 188
    messages += [SimpleNamespace(headers=None)] * 3  # and three single events
    chunks = _chunks(messages, 512)
    assert [sum(_count(m) for m in chunk) for chunk in chunks] == [512, 191]
    assert [m for chunk in chunks for m in chunk] == messages  # nothing lost or reordered


class _Sub:
    """A pull subscription answering each fetch with the next prepared messages (as many as asked
    for); records how many each asked for."""

    def __init__(self, fetches: list[list[SimpleNamespace]]) -> None:
        self.fetches = fetches
        self.asked: list[int] = []

    async def fetch(self, n: int, timeout: float) -> list[SimpleNamespace]:
        self.asked.append(n)
        return self.fetches.pop(0)[:n]


async def test_a_consumer_that_is_behind_asks_for_fewer_messages_when_they_carry_many_events() -> None:
    packed = [SimpleNamespace(headers={BATCH_HEADER: "256"})] * 40
    single = [SimpleNamespace(headers=None)] * 200
    sub = _Sub([packed, packed, single, single])
    consumer = EventConsumer(
        name="probe",
        js=None,
        stream="S",
        engine=None,
        outbox=None,
        inbox=None,
        handlers={},
        linger=0,
    )
    sizes = [len(await consumer._fetch(sub)) for _ in range(4)]
    few = FETCH_EVENTS // 256
    assert sub.asked == [128, few, few, 128]  # after messages of one event each, a whole batch again
    assert sizes == [40, few, few, 128]  # 2,048 events at a time instead of up to 32,768

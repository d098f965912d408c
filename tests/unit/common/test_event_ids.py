"""Event ids drawn in bulk are what `str(uuid.uuid4())` gives: valid, random, never repeated."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from onestop.events.v1 import events_pb2
from services.common import events


def test_bulk_ids_are_version_4_uuids_written_the_standard_way() -> None:
    ids = events.new_ids(5000)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    assert len(set(ids)) == len(ids)


def test_the_pool_never_hands_out_an_id_twice() -> None:
    drawn = [events.new_event_id() for _ in range(3 * events._ID_BATCH + 7)]
    assert len(set(drawn)) == len(drawn)
    assert all(uuid.UUID(i).version == 4 for i in drawn)


def test_a_forked_child_does_not_reuse_its_parents_pool() -> None:
    events.new_event_id()  # the pool now holds ids the parent will hand out next
    pending = set(events._ID_POOL)
    assert pending
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the id it would give its first event
        os.close(read)
        os.write(write, events.new_event_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child_id).version == 4
    assert child_id not in pending


def test_new_events_carry_distinct_ids() -> None:
    made = [
        events.new_event(
            center="210200",
            producer="test",
            at=datetime(2026, 1, 5, tzinfo=UTC),
            body=events_pb2.CaseWithdrawn(reason="x"),
        )
        for _ in range(600)
    ]
    assert len({e.event_id for e in made}) == 600

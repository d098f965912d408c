"""How a case's timeline names what happened and who did it (R22: every step has a named person)."""

from __future__ import annotations

from datetime import UTC, datetime

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.events import new_event
from services.intake.timeline_text import describe


def test_a_supplement_answered_by_the_agent_who_carries_the_case_names_the_agent() -> None:
    agent = common_pb2.Actor(username="agent2", display_name="代办员二", role="agent", center="210211101")
    env = new_event(
        center="210211101",
        producer="intake",
        at=datetime(2026, 3, 2, 2, 0, tzinfo=UTC),
        body=events_pb2.CaseSupplemented(round=1, by=agent),
        case_id="c1",
    )
    assert describe(env) == ("已补正材料", "supplemented", "agent2", "")

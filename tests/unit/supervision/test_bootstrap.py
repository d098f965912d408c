"""Wiring of supervision: the events it consumes, the tick setting, fakes passed through build()."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError
from services.supervision import bootstrap, store
from tests.unit.supervision.harness import FakeApproval, Supervision


def test_tick_interval_defaults_to_five_seconds_and_fails_fast_on_nonsense() -> None:
    assert bootstrap.tick_interval({}) == 5.0
    assert bootstrap.tick_interval({"ONESTOP_SUPERVISION_TICK_S": "0.5"}) == 0.5
    assert bootstrap.tick_interval({"ONESTOP_SUPERVISION_TICK_S": "0"}) == 0.0
    for bad in ("soon", "-1"):
        with pytest.raises(SettingsError, match="ONESTOP_SUPERVISION_TICK_S"):
            bootstrap.tick_interval({"ONESTOP_SUPERVISION_TICK_S": bad})


def test_supervision_consumes_the_facts_that_move_clocks_and_ratings_given_at_a_child() -> None:
    assert set(bootstrap.CONSUMED) == {
        "case_accepted",
        "case_routed",
        "case_forwarded",
        "parent_result_received",
        "task_opened",
        "task_claimed",
        "task_decided",
        "supplement_requested",
        "supplement_round_opened",
        "case_supplemented",
        "extension_decided",
        "special_procedure_started",
        "special_procedure_ended",
        "key_project_designated",
        "case_concluded",
        "case_withdrawn",
        "evaluation_forwarded",
    }


async def test_build_takes_a_fake_approval_and_calendar(sup: Supervision) -> None:
    runtime = sup.api().rt
    fake = FakeApproval()
    parts = await bootstrap.build(runtime, approval=fake, calendar=sup.ctx.calendar)
    [(servicer, descriptor)] = parts.servicers
    assert descriptor.full_name == "onestop.supervision.v1.SupervisionService"
    assert servicer.ctx.approval is fake  # type: ignore[attr-defined]
    assert set(parts.handlers) == set(bootstrap.CONSUMED)
    assert parts.prefetch is not None  # a batch's cases and clocks are read ahead (store.py)
    assert store.CASE_WRITERS <= set(bootstrap.CONSUMED)
    assert [fn.__name__ for fn in parts.background] == ["supervision_ticker"]

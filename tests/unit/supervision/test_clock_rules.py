"""The pure clock rules (services/supervision/model.py) on real 2025/2026 dates, with a manual clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.common.calendar import WorkingCalendar
from services.common.clock import ManualClock
from services.supervision import model
from services.supervision.model import RED, YELLOW, Clock
from tests.unit.supervision.harness import at, eod, fresh_calendar


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return fresh_calendar()


def task_clock(**kw: object) -> Clock:
    """A 5-working-day task accepted Monday 22 September 2025, 10:00, deemed approval allowed."""
    values: dict[str, object] = dict(
        clock_id="task/t1",
        task_id="t1",
        accepted_at=at(2025, 9, 22),
        started_at=at(2025, 9, 22),
        limit_days=5,
        statutory_days=20,
        deemed_allowed=True,
    )
    values.update(kw)
    return Clock(**values)  # type: ignore[arg-type]


def with_due(clock: Clock, cal: WorkingCalendar) -> Clock:
    return replace(clock, due_at=model.due(clock, cal))


def test_due_counts_the_adjusted_sunday_before_national_day(cal: WorkingCalendar) -> None:
    # Sep 23, 24, 25, 26 and Sunday 28 (调休) are the five working days; Saturday 27 is not.
    assert model.due(task_clock(), cal) == eod(2025, 9, 28)


def test_yellow_starts_when_less_than_the_threshold_remains(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(), cal)
    assert model.yellow_at(clock, clock.due_at, cal) == at(2025, 9, 28, 0)  # type: ignore[arg-type]
    two = with_due(task_clock(threshold_days=2), cal)
    # The working day before Sunday 28 is Friday 26: the weekend day 27 is skipped.
    assert model.yellow_at(two, two.due_at, cal) == at(2025, 9, 26, 0)  # type: ignore[arg-type]


def test_yellow_before_spring_festival_lands_on_the_adjusted_saturday(cal: WorkingCalendar) -> None:
    clock = with_due(
        task_clock(accepted_at=at(2026, 2, 12), started_at=at(2026, 2, 12), limit_days=3, threshold_days=2),
        cal,
    )
    assert clock.due_at == eod(2026, 2, 24)  # Feb 13, Sat 14 (调休), then the holiday until Feb 23
    assert model.yellow_at(clock, eod(2026, 2, 24), cal) == at(2026, 2, 14, 0)


def test_on_the_spot_clock_is_due_the_same_day_and_never_yellow(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(limit_days=0, accepted_at=at(2025, 9, 27), started_at=at(2025, 9, 27)), cal)
    assert clock.due_at == eod(2025, 9, 27)
    assert model.yellow_at(clock, eod(2025, 9, 27), cal) is None


def test_silent_task_goes_yellow_red_urged_then_deemed_five_working_days_later(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(), cal)
    now = ManualClock(at(2025, 9, 27, 12))  # Saturday: the last day is not here yet
    assert not model.actions(clock, now.now(), cal)
    assert model.next_action_at(clock, cal) == at(2025, 9, 28, 0)

    now.set(at(2025, 9, 28, 8))
    todo = model.actions(clock, now.now(), cal)
    assert todo == model.Actions(levels=(YELLOW,))
    clock = model.apply(clock, todo, now.now())
    assert model.next_action_at(clock, cal) == eod(2025, 9, 28)

    now.set(eod(2025, 9, 28))
    todo = model.actions(clock, now.now(), cal)
    assert todo == model.Actions(levels=(RED,), urge=True)
    clock = model.apply(clock, todo, now.now())
    # Sep 29, 30, then National Day (Oct 1-8), Oct 9, 10 and Saturday Oct 11 (调休).
    assert model.deem_at(clock, cal) == eod(2025, 10, 11)
    assert model.next_action_at(clock, cal) == eod(2025, 10, 11)

    now.set(at(2025, 10, 11, 18))
    assert not model.actions(clock, now.now(), cal)
    now.advance(timedelta(hours=6))
    assert model.actions(clock, now.now(), cal) == model.Actions(deem=True)
    clock = model.apply(clock, model.Actions(deem=True), now.now())
    assert clock.deem_state == "pending"
    assert model.next_action_at(clock, cal) is None


def test_urge_sent_just_after_midnight_counts_from_the_due_day(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(warned_level=RED, urged_at=at(2025, 9, 29, 0, 0, 4)), cal)
    assert model.deem_at(clock, cal) == eod(2025, 10, 11)
    # An urge sent a day late (supervision was down) gives the department its five days from then.
    late = replace(clock, urged_at=at(2025, 9, 29, 9))
    assert model.deem_at(late, cal) == eod(2025, 10, 13)


def test_clock_jumping_past_due_is_red_without_a_yellow(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(), cal)
    assert model.actions(clock, at(2025, 9, 29, 9), cal) == model.Actions(levels=(RED,), urge=True)


def test_case_clock_is_never_urged_nor_deemed(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(clock_id="case/c1", task_id=""), cal)
    assert model.actions(clock, at(2025, 10, 30), cal) == model.Actions(levels=(RED,))
    clock = model.apply(clock, model.Actions(levels=(RED,)), at(2025, 10, 30))
    assert model.next_action_at(clock, cal) is None


def test_never_deemed_when_the_matter_forbids_it(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(deemed_allowed=False, urged_at=eod(2025, 9, 28), warned_level=RED), cal)
    assert model.deem_at(clock, cal) is None
    assert not model.actions(clock, at(2025, 12, 1), cal)
    assert model.next_action_at(clock, cal) is None


def test_never_deemed_after_an_approved_extension(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(extension_days=3, urged_at=eod(2025, 9, 28), warned_level=RED), cal)
    assert clock.due_at == eod(2025, 10, 9)  # Sep 29, 30, Oct 9
    assert not clock.may_be_deemed
    assert not model.actions(clock, at(2025, 12, 1), cal).deem


def test_never_deemed_while_paused(cal: WorkingCalendar) -> None:
    urged = with_due(task_clock(urged_at=eod(2025, 9, 28), warned_level=RED), cal)
    paused = model.pause(urged, kind=model.SUPPLEMENT, at=at(2025, 9, 30, 9))
    assert not model.actions(paused, at(2025, 10, 20), cal)
    assert model.next_action_at(paused, cal) is None
    resumed = model.resume(paused, kind=model.SUPPLEMENT, at=at(2025, 10, 10, 9))
    # The pause covered Oct 9 and 10 after Sep 30: the five days end on Oct 14 instead of Oct 11.
    assert model.deem_at(resumed, cal) == eod(2025, 10, 14)


def test_supplement_pause_shifts_the_due_date(cal: WorkingCalendar) -> None:
    clock = model.pause(task_clock(), kind=model.SUPPLEMENT, at=at(2025, 9, 24, 15))
    assert clock.paused
    clock = model.resume(clock, kind=model.SUPPLEMENT, at=at(2025, 9, 26, 9))
    # Not counted: Thursday 25 and Friday 26 (the clock ran on the 24th, restarts after the 26th).
    assert model.due(clock, cal) == eod(2025, 9, 30)
    assert model.paused_days(clock, at(2025, 10, 9), cal) == 2


def test_special_procedure_and_supplement_overlapping_are_not_counted_twice(cal: WorkingCalendar) -> None:
    clock = model.pause(task_clock(), kind=model.SUPPLEMENT, at=at(2025, 9, 24, 15))
    clock = model.pause(clock, kind=model.SPECIAL_PROCEDURE, at=at(2025, 9, 25, 9))
    clock = model.resume(clock, kind=model.SUPPLEMENT, at=at(2025, 9, 26, 9))
    assert clock.paused  # the special procedure is still running
    clock = model.resume(clock, kind=model.SPECIAL_PROCEDURE, at=at(2025, 9, 26, 17))
    assert model.due(clock, cal) == eod(2025, 9, 30)
    assert model.paused_days(clock, at(2025, 10, 9), cal) == 2


def test_key_project_deadline_and_statutory_limit_cap_the_promise(cal: WorkingCalendar) -> None:
    assert model.due(task_clock(limit_days=10, statutory_days=5), cal) == eod(2025, 9, 28)
    keyed = task_clock(limit_days=10, key_deadline=at(2025, 9, 26, 18))
    assert model.due(keyed, cal) == eod(2025, 9, 26)
    # A task opened later still answers to the case's promised deadline, counted from acceptance.
    late = task_clock(started_at=at(2025, 9, 25, 9), key_deadline=at(2025, 9, 26, 18))
    assert model.due(late, cal) == eod(2025, 9, 26)


def test_working_days_used_exclude_the_pause(cal: WorkingCalendar) -> None:
    clock = model.resume(
        model.pause(task_clock(), kind=model.SUPPLEMENT, at=at(2025, 9, 24, 15)),
        kind=model.SUPPLEMENT,
        at=at(2025, 9, 26, 9),
    )
    # Sep 23 .. Oct 9 holds 8 working days (23-26, 28-30, Oct 9); two of them were paused.
    assert model.working_days_used(clock, at(2025, 10, 9, 11), cal) == 6


def test_state_shown_follows_the_clock(cal: WorkingCalendar) -> None:
    clock = with_due(task_clock(), cal)
    assert model.state_at(clock, at(2025, 9, 23), cal) == model.GREEN
    assert model.state_at(clock, at(2025, 9, 28, 1), cal) == model.YELLOW
    assert model.state_at(clock, at(2025, 9, 29, 1), cal) == model.RED
    assert (
        model.state_at(model.pause(clock, kind=model.SUPPLEMENT, at=at(2025, 9, 24)), at(2025, 9, 29), cal)
        == model.PAUSED
    )
    assert model.state_at(replace(clock, stopped_at=at(2025, 9, 24)), at(2025, 9, 29), cal) == model.STOPPED


def test_pauses_survive_their_stored_form() -> None:
    p = model.Pause(model.SUPPLEMENT, at(2025, 9, 24, 15), None)
    assert model.Pause.from_json(p.to_json()) == p
    q = model.Pause(model.SUPPLEMENT, at(2025, 9, 24, 15), at(2025, 9, 26, 9))
    assert model.Pause.from_json(q.to_json()) == q


@pytest.mark.parametrize(
    "todo",
    [
        model.Actions(),
        model.Actions(levels=(YELLOW,)),
        model.Actions(levels=(RED,), urge=True),
        model.Actions(deem=True),
    ],
)
def test_a_tick_changes_only_the_level_the_urge_and_the_deem_state(todo: model.Actions) -> None:
    """Every other field of the clock comes through a tick's apply unchanged, whatever its order."""
    clock = Clock(
        clock_id="task/t1",
        task_id="t1",
        accepted_at=at(2025, 9, 1, 9),
        started_at=at(2025, 9, 2, 10),
        limit_days=5,
        statutory_days=20,
        key_deadline=at(2025, 12, 1),
        extension_days=0,
        threshold_days=2,
        deemed_allowed=True,
        pauses=(model.Pause(model.SUPPLEMENT, at(2025, 9, 3), at(2025, 9, 4)),),
        due_at=eod(2025, 9, 12),
        warned_level=0,
        urged_at=None,
        deem_state="",
        stopped_at=None,
    )
    now = at(2025, 9, 15, 8)
    expected = replace(
        clock,
        warned_level=max((0, *todo.levels)),
        urged_at=now if todo.urge else None,
        deem_state="pending" if todo.deem else "",
    )
    assert model.apply(clock, todo, now) == expected

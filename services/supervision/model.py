"""Supervision's clock rules, free of protobuf, SQL and the network (DESIGN.md §5, §8).

* A clock starts at acceptance (a department task's clock when the task opens).  Its due instant is
  the earliest of: the promised limit from its start, the statutory limit from the case's acceptance
  and, for a key project, the publicly promised deadline (turned into working days from acceptance, so
  pauses and extensions move it like any other limit).  An approved extension adds its working days to
  every one of these; pauses (supplement notices, special procedures) are not counted, with the
  calendar's convention that the clock still runs on the day it stops and restarts the day after.
* Yellow from the start of the last ``threshold_days`` working days before due (threshold 1: from
  00:00 of the due day, when less than one working day remains); none for on-the-spot clocks.
  Red at the due instant; a department task is urged (催办) at the same instant.
* Deemed approval (超时默许): at the end of the 5th working day after the urge, only where the matter
  allows it, never while paused and never after an approved extension.  The urge is due at 23:59:59 of
  the due day and a tick usually sends it seconds later, after midnight; an urge sent within
  ``URGE_SLACK`` of the due instant is counted from the due day, a later one (supervision was down)
  from when it was actually sent, so a department always has its five days after being urged.
* ``next_action_at`` is the earliest of these instants still ahead of the clock, or None when nothing
  is left (stopped, paused, all done, or no due instant because the calendar is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Any

from services.common.calendar import CENTER_TZ, CalendarMissing, WorkingCalendar

# Values of onestop.common.v1.ClockState (kept here so the rules stay pure).
UNSPECIFIED, GREEN, YELLOW, RED, PAUSED, STOPPED = 0, 1, 2, 3, 4, 5
# Values of onestop.common.v1.Outcome.
APPROVED, REJECTED, DEEMED_APPROVED, WITHDRAWN = 1, 2, 3, 4
DECIDED = frozenset({APPROVED, REJECTED, DEEMED_APPROVED})
DEEM_AFTER_DAYS = 5
# A deemed approval whose call to approval failed is tried again after this long.
DEEM_RETRY = timedelta(minutes=1)
URGE_SLACK = timedelta(hours=1)
SUPPLEMENT, SPECIAL_PROCEDURE = "supplement", "special_procedure"


@dataclass(frozen=True)
class Pause:
    """An interval the clock does not count; ``end`` None while it is still open."""

    kind: str
    start: datetime
    end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "kind": self.kind,
            "from": self.start.isoformat(),
            "to": self.end.isoformat() if self.end else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Pause:
        """Parse the stored form."""
        end = raw.get("to")
        return cls(
            raw["kind"], datetime.fromisoformat(raw["from"]), datetime.fromisoformat(end) if end else None
        )


@dataclass(slots=True)
class Clock:
    """What the rules need of a clock: a value (the rules return new ones and never change one in place).

    Not frozen: a frozen dataclass is several times slower to build, and a tick builds thousands.
    """

    clock_id: str
    task_id: str
    accepted_at: datetime
    started_at: datetime
    limit_days: int
    statutory_days: int = 0
    key_deadline: datetime | None = None
    extension_days: int = 0
    threshold_days: int = 1
    deemed_allowed: bool = False
    pauses: tuple[Pause, ...] = ()
    due_at: datetime | None = None
    warned_level: int = 0
    urged_at: datetime | None = None
    deem_state: str = ""
    stopped_at: datetime | None = None

    @property
    def is_task(self) -> bool:
        """A department task's clock (urged and possibly deemed), not the case's own."""
        return bool(self.task_id)

    @property
    def paused(self) -> bool:
        """True while a pause is open."""
        return any(p.end is None for p in self.pauses)

    @property
    def may_be_deemed(self) -> bool:
        """The matter allows deemed approval and no extension was approved."""
        return self.is_task and self.deemed_allowed and self.extension_days == 0


@dataclass(frozen=True)
class Actions:
    """What a tick must do for one clock now."""

    levels: tuple[int, ...] = ()
    urge: bool = False
    deem: bool = False

    def __bool__(self) -> bool:
        return bool(self.levels or self.urge or self.deem)


def closed_pauses(pauses: Iterable[Pause]) -> list[tuple[datetime, datetime]]:
    """The finished pauses as (stopped, resumed) pairs for the calendar."""
    return [(p.start, p.end) for p in pauses if p.end is not None]


def due(clock: Clock, cal: WorkingCalendar, *, center: str | None = None) -> datetime:
    """The due instant (raises CalendarMissing); an open pause moves it only once it closes."""
    pauses = closed_pauses(clock.pauses)
    # A limit ending past the loaded years is later than any limit ending inside them, so it only
    # matters (and raises) when no limit at all can be computed.

    def key_days() -> int:
        assert clock.key_deadline is not None
        return max(cal.working_days_between(clock.accepted_at, clock.key_deadline, center=center), 0)

    terms: list[tuple[datetime, Callable[[], int]]] = [(clock.started_at, lambda: clock.limit_days)]
    if clock.statutory_days > 0:
        terms.append((clock.accepted_at, lambda: clock.statutory_days))
    if clock.key_deadline is not None:
        terms.append((clock.accepted_at, key_days))
    found: list[datetime] = []
    missing: CalendarMissing | None = None
    for start, days in terms:
        try:
            found.append(cal.due_instant(start, days() + clock.extension_days, pauses, center=center))
        except CalendarMissing as exc:
            missing = missing or exc
    if not found:
        assert missing is not None
        raise missing
    return min(found)


def yellow_at(
    clock: Clock, due_at: datetime, cal: WorkingCalendar, *, center: str | None = None
) -> datetime | None:
    """Start of the last ``threshold_days`` working days before due (None: no yellow)."""
    if clock.threshold_days <= 0 or clock.limit_days == 0:
        return None
    day = due_at.astimezone(CENTER_TZ).date()
    left = clock.threshold_days - 1
    while left > 0:
        day -= timedelta(days=1)
        if cal.is_working_day(day, center=center):
            left -= 1
    return max(datetime.combine(day, time(0), tzinfo=CENTER_TZ), clock.started_at)


def deem_at(clock: Clock, cal: WorkingCalendar, *, center: str | None = None) -> datetime | None:
    """End of the 5th working day after the urge, when deemed approval may happen at all."""
    if not clock.may_be_deemed or clock.urged_at is None:
        return None
    start = clock.urged_at
    if clock.due_at is not None and clock.due_at <= start <= clock.due_at + URGE_SLACK:
        start = clock.due_at
    return cal.due_instant(start, DEEM_AFTER_DAYS, closed_pauses(clock.pauses), center=center)


def next_action_at(clock: Clock, cal: WorkingCalendar, *, center: str | None = None) -> datetime | None:
    """The earliest instant this clock needs the tick again."""
    if clock.stopped_at is not None or clock.paused or clock.due_at is None or clock.deem_state:
        return None
    if clock.warned_level < YELLOW:
        y = yellow_at(clock, clock.due_at, cal, center=center)
        if y is not None and y < clock.due_at:
            return y
    if clock.warned_level < RED or (clock.is_task and clock.urged_at is None):
        return clock.due_at
    return deem_at(clock, cal, center=center)


def actions(clock: Clock, now: datetime, cal: WorkingCalendar, *, center: str | None = None) -> Actions:
    """What is due for this clock at ``now`` (a clock jumped past its due skips the yellow)."""
    if clock.stopped_at is not None or clock.paused or clock.due_at is None or clock.deem_state:
        return Actions()
    levels: tuple[int, ...] = ()
    if now >= clock.due_at:
        if clock.warned_level < RED:
            levels = (RED,)
    elif clock.warned_level < YELLOW:
        y = yellow_at(clock, clock.due_at, cal, center=center)
        if y is not None and now >= y:
            levels = (YELLOW,)
    urge = clock.is_task and clock.urged_at is None and now >= clock.due_at
    when = deem_at(clock, cal, center=center)
    return Actions(levels=levels, urge=urge, deem=when is not None and now >= when)


def apply(clock: Clock, todo: Actions, now: datetime) -> Clock:
    """The clock after a tick did ``todo`` at ``now``."""
    if not todo:
        return clock
    # Built field by field rather than with dataclasses.replace, which walks the fields' metadata
    # each call: a third of a tick's planning.
    return Clock(
        clock.clock_id,
        clock.task_id,
        clock.accepted_at,
        clock.started_at,
        clock.limit_days,
        clock.statutory_days,
        clock.key_deadline,
        clock.extension_days,
        clock.threshold_days,
        clock.deemed_allowed,
        clock.pauses,
        clock.due_at,
        max((clock.warned_level, *todo.levels)),
        now if todo.urge else clock.urged_at,
        "pending" if todo.deem else clock.deem_state,
        clock.stopped_at,
    )


def state_at(clock: Clock, now: datetime, cal: WorkingCalendar, *, center: str | None = None) -> int:
    """The ClockState value shown to people at ``now``."""
    if clock.stopped_at is not None:
        return STOPPED
    if clock.paused:
        return PAUSED
    if clock.due_at is None:
        return UNSPECIFIED
    if now >= clock.due_at:
        return RED
    y = yellow_at(clock, clock.due_at, cal, center=center)
    return YELLOW if y is not None and now >= y else GREEN


def merged(pauses: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping pauses joined, so no working day is subtracted twice."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(pauses):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def paused_days(clock: Clock, until: datetime, cal: WorkingCalendar, *, center: str | None = None) -> int:
    """Working days the pauses covered up to ``until`` (an open pause counts to ``until``)."""
    spans = [(p.start, min(p.end or until, until)) for p in clock.pauses if p.start < until]
    return sum(max(cal.working_days_between(s, e, center=center), 0) for s, e in merged(spans))


def working_days_used(
    clock: Clock, until: datetime, cal: WorkingCalendar, *, center: str | None = None
) -> int:
    """Working days the office spent: from start to ``until``, pauses excluded."""
    spent = cal.working_days_between(clock.started_at, until, center=center)
    return max(spent - paused_days(clock, until, cal, center=center), 0)


def pause(clock: Clock, *, kind: str, at: datetime) -> Clock:
    """Open a pause of ``kind`` (no-op when one of that kind is open already)."""
    if any(p.kind == kind and p.end is None for p in clock.pauses):
        return clock
    return replace(clock, pauses=(*clock.pauses, Pause(kind, at)))


def resume(clock: Clock, *, kind: str, at: datetime) -> Clock:
    """Close the open pause of ``kind`` (no-op when none is open)."""
    pauses = tuple(
        replace(p, end=max(at, p.start)) if p.kind == kind and p.end is None else p for p in clock.pauses
    )
    return replace(clock, pauses=pauses)

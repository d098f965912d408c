"""Statistics of supervision (R14, R16), pure: figures per center, department, window, staff or matter.

Definitions, for a period [start, end):

* center and matter group the cases' own clocks; department, window and staff group the department
  tasks' clocks (staff: the one who decided the task, else everyone who claimed it).
* accepted: clocks started in the period.  concluded: clocks stopped in the period by a decision
  (approved, rejected, deemed approved; withdrawals and cancelled tasks are not decisions).
* on_time: concluded no later than due; on_time_rate = on_time / concluded (0 without conclusions).
* avg / p90 working days: working days used by the concluded ones, pauses excluded; p90 is the
  nearest-rank 90th percentile (the value at rank ceil(0.9 n) of the sorted list).
* overdue: concluded late in the period, plus still open at the end of the period and past due by then.
* urged / deemed_approved: urges made and deemed approvals sealed in the period.
* evaluations / avg_rating: evaluations submitted in the period (first ratings, 1-5); for department,
  window and staff an evaluation counts for every task of the rated case.  bad_reviews: ratings 1-2.

Cases this node forwarded to its parent (decided above; or sent up after a preliminary review here) run no
clock here for the decision, so none of the figures above counts that decision (a preliminary review's
own clocks count like any). They have figures of their own, for center and matter only:

* forwarded: sent up in the period.  forwarded_waiting: sent up before the end of the period and without
  the parent's result (or a withdrawal) by then.
* forwarded_approved / forwarded_rejected: the parent's result received in the period, approved (deemed
  approvals included) or rejected.  forwarded_withdrawn: withdrawn in the period after going up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

APPROVED, REJECTED, DEEMED_APPROVED, WITHDRAWN = 1, 2, 3, 4
DECIDED = frozenset({APPROVED, REJECTED, DEEMED_APPROVED})
GROUPS = ("center", "department", "window", "staff", "matter")
CASE_GROUPS = frozenset({"center", "matter"})
BAD_REVIEW_MAX = 2


@dataclass(frozen=True)
class ClockFact:
    """One clock as the statistics see it."""

    case_id: str
    task_id: str
    center: str
    matter_code: str
    department: str
    window: str
    staff: tuple[str, ...]
    started_at: datetime
    due_at: datetime | None
    stopped_at: datetime | None = None
    outcome: int = 0
    working_days: int | None = None


@dataclass(frozen=True)
class Mark:
    """An urge or a deemed approval, with the keys of its task."""

    center: str
    matter_code: str
    department: str
    window: str
    staff: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class Rating:
    """An evaluation of a case."""

    case_id: str
    center: str
    matter_code: str
    rating: int
    at: datetime


@dataclass(frozen=True)
class Forwarded:
    """A case this node sent up to its parent, as the statistics see it."""

    center: str
    matter_code: str
    forwarded_at: datetime
    closed_at: datetime | None = None  # the parent's result received, or the withdrawal
    outcome: int = 0


@dataclass
class Row:
    """The figures of one group."""

    key: str
    accepted: int = 0
    concluded: int = 0
    on_time: int = 0
    overdue: int = 0
    urged: int = 0
    deemed_approved: int = 0
    evaluations: int = 0
    bad_reviews: int = 0
    rating_sum: int = 0
    days: list[int] = field(default_factory=list)
    forwarded: int = 0
    forwarded_waiting: int = 0
    forwarded_approved: int = 0
    forwarded_rejected: int = 0
    forwarded_withdrawn: int = 0

    @property
    def on_time_rate(self) -> float:
        """Share of conclusions on time (0 without conclusions)."""
        return self.on_time / self.concluded if self.concluded else 0.0

    @property
    def avg_working_days(self) -> float:
        """Mean working days used by the concluded clocks."""
        return sum(self.days) / len(self.days) if self.days else 0.0

    @property
    def p90_working_days(self) -> float:
        """Nearest-rank 90th percentile of working days used."""
        return float(p90(self.days))

    @property
    def avg_rating(self) -> float:
        """Mean first rating."""
        return self.rating_sum / self.evaluations if self.evaluations else 0.0


def p90(values: Sequence[int]) -> int:
    """Nearest-rank 90th percentile (0 for no values)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def _keys(
    group_by: str, *, center: str, matter_code: str, department: str, window: str, staff: Iterable[str]
) -> list[str]:
    if group_by == "center":
        return [center]
    if group_by == "matter":
        return [matter_code]
    if group_by == "department":
        return [department]
    if group_by == "window":
        return [window]
    return sorted({s for s in staff if s})


def fact_keys(group_by: str, fact: ClockFact) -> list[str]:
    """The groups one clock counts in (none when it is not the level the grouping looks at)."""
    if (group_by in CASE_GROUPS) == bool(fact.task_id):
        return []
    return _keys(
        group_by,
        center=fact.center,
        matter_code=fact.matter_code,
        department=fact.department,
        window=fact.window,
        staff=fact.staff,
    )


def _inside(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at < end


def statistics(
    *,
    group_by: str,
    start: datetime,
    end: datetime,
    clocks: Iterable[ClockFact],
    urges: Iterable[Mark] = (),
    deemed: Iterable[Mark] = (),
    ratings: Iterable[Rating] = (),
    case_tasks: dict[str, list[ClockFact]] | None = None,
    forwarded: Iterable[Forwarded] = (),
) -> list[Row]:
    """Figures per group for the period, sorted by key (``case_tasks``: task clocks of rated cases;
    ``forwarded``: the cases sent up to the parent)."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    rows: dict[str, Row] = defaultdict(lambda: Row(key=""))

    def row(key: str) -> Row:
        r = rows[key]
        r.key = key
        return r

    for fact in clocks:
        for key in fact_keys(group_by, fact):
            r = row(key)
            if _inside(fact.started_at, start, end):
                r.accepted += 1
            decided = fact.outcome in DECIDED and _inside(fact.stopped_at, start, end)
            late = fact.due_at is not None and fact.stopped_at is not None and fact.stopped_at > fact.due_at
            if decided:
                r.concluded += 1
                r.on_time += not late
                r.overdue += late
                if fact.working_days is not None:
                    r.days.append(fact.working_days)
            still_open = fact.started_at < end and (fact.stopped_at is None or fact.stopped_at >= end)
            if still_open and fact.due_at is not None and fact.due_at < end:
                r.overdue += 1
    for marks, attr in ((urges, "urged"), (deemed, "deemed_approved")):
        for m in marks:
            if _inside(m.at, start, end):
                for key in _keys(
                    group_by,
                    center=m.center,
                    matter_code=m.matter_code,
                    department=m.department,
                    window=m.window,
                    staff=m.staff,
                ):
                    setattr(row(key), attr, getattr(row(key), attr) + 1)
    for rating in ratings:
        if not _inside(rating.at, start, end):
            continue
        if group_by in CASE_GROUPS:
            keys = _keys(
                group_by,
                center=rating.center,
                matter_code=rating.matter_code,
                department="",
                window="",
                staff=(),
            )
        else:
            keys = sorted(
                {k for t in (case_tasks or {}).get(rating.case_id, []) for k in fact_keys(group_by, t)}
            )
        for key in keys:
            r = row(key)
            r.evaluations += 1
            r.rating_sum += rating.rating
            r.bad_reviews += rating.rating <= BAD_REVIEW_MAX
    if group_by in CASE_GROUPS:
        for case in forwarded:
            _count_forwarded(row(case.center if group_by == "center" else case.matter_code), case, start, end)
    return [rows[k] for k in sorted(rows)]


def _count_forwarded(r: Row, case: Forwarded, start: datetime, end: datetime) -> None:
    if _inside(case.forwarded_at, start, end):
        r.forwarded += 1
    if case.forwarded_at < end and (case.closed_at is None or case.closed_at >= end):
        r.forwarded_waiting += 1
    if _inside(case.closed_at, start, end):
        if case.outcome in (APPROVED, DEEMED_APPROVED):
            r.forwarded_approved += 1
        elif case.outcome == REJECTED:
            r.forwarded_rejected += 1
        elif case.outcome == WITHDRAWN:
            r.forwarded_withdrawn += 1

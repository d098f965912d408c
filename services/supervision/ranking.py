"""Assessment of windows (R16): a score, the quarterly grade, the yearly red-flag windows, the veto.

The formula (every weight and threshold is a field of :class:`RankingRules`, so a center configures it,
R24), computed from a window's statistics row for the period:

    satisfaction = (avg_rating - 1) / 4                  (0..1; 1 = every applicant very satisfied)
    base         = on_time_weight * on_time_rate + satisfaction_weight * satisfaction
                   (without any evaluation: base = on_time_rate, so no window is punished for silence)
    score        = 100 * base - overdue_penalty * overdue - urge_penalty * urged
                   - deemed_penalty * deemed_approved,  clamped to 0..100

Defaults: on_time 0.6, satisfaction 0.4; penalties 2 points per overdue, 1 per urge, 5 per deemed
approval.  Grades: excellent >= 90, good >= 80, pass >= 60, else fail.

One-vote veto (一票否决) for poor service: a window with at least ``veto_deemed`` deemed approvals
(default 1: a department that stayed silent until the seal was applied for it) or at least
``veto_bad_reviews`` bad reviews (ratings 1-2, default 3) is graded fail whatever its score and cannot
be a red-flag window.  Red-flag windows (红旗窗口) of a year: the ``red_flag_count`` best scores (default
3) among unvetoed windows with at least ``min_concluded`` conclusions (default 10); ties go to the higher
on-time rate, then the more conclusions, then the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.common.calendar import CENTER_TZ
from services.supervision.stats import Row

EXCELLENT, GOOD, PASS, FAIL = "excellent", "good", "pass", "fail"


@dataclass(frozen=True)
class RankingRules:
    """The configurable weights and thresholds of the assessment."""

    on_time_weight: float = 0.6
    satisfaction_weight: float = 0.4
    overdue_penalty: float = 2.0
    urge_penalty: float = 1.0
    deemed_penalty: float = 5.0
    excellent: float = 90.0
    good: float = 80.0
    passing: float = 60.0
    veto_deemed: int = 1
    veto_bad_reviews: int = 3
    red_flag_count: int = 3
    min_concluded: int = 10


DEFAULT_RULES = RankingRules()


@dataclass(frozen=True)
class Assessment:
    """A window's score, grade and veto for a period."""

    key: str
    score: float
    grade: str
    veto: bool
    veto_reasons: tuple[str, ...]
    on_time_rate: float
    concluded: int


def score(row: Row, rules: RankingRules = DEFAULT_RULES) -> float:
    """The 0..100 score of one statistics row."""
    if row.evaluations:
        satisfaction = (row.avg_rating - 1) / 4
        base = rules.on_time_weight * row.on_time_rate + rules.satisfaction_weight * satisfaction
    else:
        base = row.on_time_rate
    raw = (
        100 * base
        - rules.overdue_penalty * row.overdue
        - rules.urge_penalty * row.urged
        - rules.deemed_penalty * row.deemed_approved
    )
    return round(min(max(raw, 0.0), 100.0), 2)


def veto(row: Row, rules: RankingRules = DEFAULT_RULES) -> tuple[str, ...]:
    """Why the one-vote veto applies (empty: it does not)."""
    reasons = []
    if rules.veto_deemed and row.deemed_approved >= rules.veto_deemed:
        reasons.append(f"{row.deemed_approved} deemed approval(s) after silence")
    if rules.veto_bad_reviews and row.bad_reviews >= rules.veto_bad_reviews:
        reasons.append(f"{row.bad_reviews} bad review(s)")
    return tuple(reasons)


def grade(value: float, *, vetoed: bool, rules: RankingRules = DEFAULT_RULES) -> str:
    """The grade of a score (fail when vetoed)."""
    if vetoed or value < rules.passing:
        return FAIL
    if value >= rules.excellent:
        return EXCELLENT
    return GOOD if value >= rules.good else PASS


def assess(rows: Iterable[Row], rules: RankingRules = DEFAULT_RULES) -> list[Assessment]:
    """Assess every row, best first."""
    out = []
    for row in rows:
        reasons = veto(row, rules)
        value = score(row, rules)
        out.append(
            Assessment(
                row.key,
                value,
                grade(value, vetoed=bool(reasons), rules=rules),
                bool(reasons),
                reasons,
                row.on_time_rate,
                row.concluded,
            )
        )
    return sorted(out, key=lambda a: (-a.score, -a.on_time_rate, -a.concluded, a.key))


def red_flag_windows(rows: Iterable[Row], rules: RankingRules = DEFAULT_RULES) -> list[Assessment]:
    """The year's red-flag windows (give it the window rows of a whole year)."""
    eligible = [a for a in assess(rows, rules) if not a.veto and a.concluded >= rules.min_concluded]
    return eligible[: rules.red_flag_count]


def quarter(year: int, q: int) -> tuple[datetime, datetime]:
    """The [start, end) instants of a quarter in the center's time zone."""
    if q not in (1, 2, 3, 4):
        raise ValueError("quarter must be 1..4")
    start = datetime(year, 3 * q - 2, 1, tzinfo=CENTER_TZ)
    end = (
        datetime(year + 1, 1, 1, tzinfo=CENTER_TZ)
        if q == 4
        else datetime(year, 3 * q + 1, 1, tzinfo=CENTER_TZ)
    )
    return start, end


def year(value: int) -> tuple[datetime, datetime]:
    """The [start, end) instants of a calendar year in the center's time zone."""
    return datetime(value, 1, 1, tzinfo=CENTER_TZ), datetime(value + 1, 1, 1, tzinfo=CENTER_TZ)

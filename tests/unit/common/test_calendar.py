"""Rules of the working-day calendar (services/common/calendar.py), on real 2024-2026 dates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import calendar as calmod
from services.common.calendar import (
    CENTER_TZ,
    CalendarDataError,
    CalendarError,
    CalendarMissing,
    DayKind,
    WorkingCalendar,
    default_calendar,
    package_years,
)

CENTER = "330100"


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar(package_years())


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=CENTER_TZ)


def eod(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 23, 59, 59, tzinfo=CENTER_TZ)


# -- coverage -------------------------------------------------------------------


def test_package_supplies_2024_through_2026(cal: WorkingCalendar) -> None:
    assert cal.years() == (2024, 2025, 2026)
    assert all(cal.year_data(y).source == "chinese-calendar" for y in cal.years())


def test_calendar_agrees_with_package_on_every_day_2024_2026(
    cal: WorkingCalendar,
) -> None:
    d = date(2024, 1, 1)
    while d.year <= 2026:
        assert cal.is_working_day(d) == chinese_calendar.is_workday(d), d
        d += timedelta(days=1)


# -- Spring Festival and National Day, with their adjusted weekends -------------


def test_spring_festival_2025_holidays_and_adjusted_weekends(
    cal: WorkingCalendar,
) -> None:
    # 2025-01-28..02-04 off; Sunday 01-26 and Saturday 02-08 worked (调休).
    assert date(2025, 1, 26).weekday() == 6 and cal.is_working_day(date(2025, 1, 26))
    assert date(2025, 2, 8).weekday() == 5 and cal.is_working_day(date(2025, 2, 8))
    for day in range(28, 32):
        assert not cal.is_working_day(date(2025, 1, day))
    for day in range(1, 5):
        assert not cal.is_working_day(date(2025, 2, day))
    assert cal.is_working_day(date(2025, 2, 5))
    assert cal.explain(date(2025, 1, 26)).kind is DayKind.ADJUSTED_WORKDAY
    assert cal.explain(date(2025, 1, 29)).kind is DayKind.HOLIDAY
    assert cal.explain(date(2025, 1, 29)).name == "Spring Festival"


def test_spring_festival_2025_due_dates(cal: WorkingCalendar) -> None:
    # Friday 01-24 + 1 skips Saturday 01-25 and lands on the worked Sunday 01-26.
    assert cal.due_instant(at(2025, 1, 24), 1) == eod(2025, 1, 26)
    # Monday 01-27 + 1 jumps the whole festival; + 4 is the worked Saturday 02-08.
    assert cal.due_instant(at(2025, 1, 27), 1) == eod(2025, 2, 5)
    assert cal.due_instant(at(2025, 1, 27), 4) == eod(2025, 2, 8)
    assert cal.due_instant(at(2025, 1, 27), 5) == eod(2025, 2, 10)


def test_national_day_2025_oct_1_to_8_off_and_adjusted_weekends(
    cal: WorkingCalendar,
) -> None:
    for day in range(1, 9):
        assert not cal.is_working_day(date(2025, 10, day)), day
    assert cal.explain(date(2025, 10, 6)).name == "Mid-autumn Festival"
    assert date(2025, 9, 28).weekday() == 6 and cal.is_working_day(date(2025, 9, 28))
    assert date(2025, 10, 11).weekday() == 5 and cal.is_working_day(date(2025, 10, 11))
    assert not cal.is_working_day(date(2025, 10, 12))


def test_national_day_2025_due_dates(cal: WorkingCalendar) -> None:
    assert cal.due_instant(at(2025, 9, 27), 1) == eod(2025, 9, 28)
    assert cal.due_instant(at(2025, 9, 30), 1) == eod(2025, 10, 9)
    assert cal.due_instant(at(2025, 9, 30), 1).isoformat() == "2025-10-09T23:59:59+08:00"
    # 10-09 (1), 10-10 (2), Saturday 10-11 (3), 10-13 (4), 10-14 (5).
    assert cal.due_instant(at(2025, 9, 30), 3) == eod(2025, 10, 11)
    assert cal.due_instant(at(2025, 9, 30), 5) == eod(2025, 10, 14)


def test_spring_festival_2026_from_package(cal: WorkingCalendar) -> None:
    # Package 1.11: 2026-02-15..02-23 off; Saturdays 02-14 and 02-28 worked.
    for day in range(15, 24):
        assert not cal.is_working_day(date(2026, 2, day)), day
    assert date(2026, 2, 14).weekday() == 5 and cal.is_working_day(date(2026, 2, 14))
    assert date(2026, 2, 28).weekday() == 5 and cal.is_working_day(date(2026, 2, 28))
    assert cal.due_instant(at(2026, 2, 13), 1) == eod(2026, 2, 14)
    assert cal.due_instant(at(2026, 2, 13), 2) == eod(2026, 2, 24)
    # 02-24..02-27 are days 1-4, the worked Saturday 02-28 is day 5.
    assert cal.due_instant(at(2026, 2, 23), 5) == eod(2026, 2, 28)


def test_national_day_2026_from_package(cal: WorkingCalendar) -> None:
    # Package 1.11: 2026-10-01..10-07 off; Sunday 09-20 and Saturday 10-10 worked.
    for day in range(1, 8):
        assert not cal.is_working_day(date(2026, 10, day)), day
    assert date(2026, 9, 20).weekday() == 6 and cal.is_working_day(date(2026, 9, 20))
    assert date(2026, 10, 10).weekday() == 5 and cal.is_working_day(date(2026, 10, 10))
    # 10-08 (1), 10-09 (2), Saturday 10-10 (3), Monday 10-12 (4).
    assert cal.due_instant(at(2026, 9, 30), 1) == eod(2026, 10, 8)
    assert cal.due_instant(at(2026, 9, 30), 4) == eod(2026, 10, 12)


# -- counting convention ---------------------------------------------------------


def test_acceptance_day_is_not_counted(cal: WorkingCalendar) -> None:
    # Accepted Monday 2025-03-10 at 08:00: day 1 is Tuesday, whatever the hour.
    assert cal.due_instant(at(2025, 3, 10, 8), 1) == eod(2025, 3, 11)
    assert cal.due_instant(at(2025, 3, 10, 23, 59), 1) == eod(2025, 3, 11)
    assert cal.add_working_days(date(2025, 3, 10), 1) == date(2025, 3, 11)


def test_acceptance_on_weekend_counts_from_next_working_day(
    cal: WorkingCalendar,
) -> None:
    assert cal.due_instant(at(2025, 3, 8), 1) == eod(2025, 3, 10)


def test_zero_days_is_on_the_spot_even_on_a_non_working_day(
    cal: WorkingCalendar,
) -> None:
    assert cal.due_instant(at(2025, 3, 10), 0) == eod(2025, 3, 10)
    assert cal.due_instant(at(2025, 10, 4), 0) == eod(2025, 10, 4)  # holiday Saturday
    assert cal.add_working_days(date(2025, 10, 4), 0) == date(2025, 10, 4)


def test_due_instant_is_end_of_day_shanghai(cal: WorkingCalendar) -> None:
    due = cal.due_instant(at(2025, 3, 10), 3)
    assert due.utcoffset() == timedelta(hours=8)
    assert due.isoformat() == "2025-03-13T23:59:59+08:00"


def test_acceptance_date_is_taken_in_shanghai_time(cal: WorkingCalendar) -> None:
    # 2025-09-28T16:30Z is Monday 09-29 00:30 in Shanghai; 15:30Z is still Sunday 09-28.
    monday = datetime(2025, 9, 28, 16, 30, tzinfo=UTC)
    sunday = datetime(2025, 9, 28, 15, 30, tzinfo=UTC)
    assert cal.due_instant(monday, 1) == eod(2025, 9, 30)
    assert cal.due_instant(sunday, 1) == eod(2025, 9, 29)


def test_due_date_crosses_year_boundary(cal: WorkingCalendar) -> None:
    # 12-26, 12-29, 12-30, 12-31 are days 1-4; 2026-01-01..03 off; Sunday 01-04 worked.
    assert cal.due_instant(at(2025, 12, 25), 4) == eod(2025, 12, 31)
    assert cal.due_instant(at(2025, 12, 25), 5) == eod(2026, 1, 4)
    assert cal.due_instant(at(2025, 12, 25), 10) == eod(2026, 1, 9)
    assert cal.working_days_between(at(2025, 12, 25), at(2026, 1, 9)) == 10


def test_working_days_between_counts_after_start_through_end(
    cal: WorkingCalendar,
) -> None:
    assert cal.working_days_between(at(2025, 9, 30), at(2025, 10, 9)) == 1
    assert cal.working_days_between(at(2025, 10, 1), at(2025, 10, 8)) == 0
    assert cal.working_days_between(at(2025, 10, 9), at(2025, 10, 9)) == 0
    assert cal.working_days_between(at(2025, 10, 9), at(2025, 9, 30)) == -1


def test_remaining_working_days_before_on_and_after_due(cal: WorkingCalendar) -> None:
    due = cal.due_instant(at(2025, 9, 30), 5)  # 2025-10-14
    assert cal.remaining_working_days(at(2025, 10, 9), due) == 4  # 10, 11, 13, 14
    assert cal.remaining_working_days(at(2025, 10, 13), due) == 1
    assert cal.remaining_working_days(at(2025, 10, 14), due) == 0
    assert cal.remaining_working_days(at(2025, 10, 16), due) == -2


# -- pauses (supplement time, special procedures) ----------------------------------


def test_pause_spanning_national_day_shifts_by_working_days_covered(
    cal: WorkingCalendar,
) -> None:
    # Accepted Wed 2025-09-24, 10 days: unpaused due Tue 10-14.
    assert cal.due_instant(at(2025, 9, 24), 10) == eod(2025, 10, 14)
    # Supplement requested Mon 09-29, arrives Thu 10-09: it covers 09-30 and 10-09
    # (the holiday week costs nothing), the clock restarts Fri 10-10.
    pause = (at(2025, 9, 29), at(2025, 10, 9, 15))
    assert cal.due_instant(at(2025, 9, 24), 10, [pause]) == eod(2025, 10, 16)


def test_pause_within_one_day_costs_nothing(cal: WorkingCalendar) -> None:
    pause = (at(2025, 3, 11, 9), at(2025, 3, 11, 16))
    assert cal.due_instant(at(2025, 3, 10), 3, [pause]) == eod(2025, 3, 13)


def test_overlapping_pauses_are_not_double_counted(cal: WorkingCalendar) -> None:
    # Both cover 03-12..03-13 at most: 3 working days in total (03-12, 03-13, 03-14).
    pauses = [(at(2025, 3, 11), at(2025, 3, 13)), (at(2025, 3, 12), at(2025, 3, 14))]
    assert cal.due_instant(at(2025, 3, 10), 3, pauses) == eod(2025, 3, 18)
    assert cal.due_instant(at(2025, 3, 10), 3, list(reversed(pauses))) == eod(2025, 3, 18)


def test_pause_after_due_does_not_move_it(cal: WorkingCalendar) -> None:
    pause = (at(2025, 3, 13, 12), at(2025, 3, 20))
    assert cal.due_instant(at(2025, 3, 10), 3, [pause]) == eod(2025, 3, 13)


def test_pause_before_acceptance_is_ignored(cal: WorkingCalendar) -> None:
    pause = (at(2025, 3, 3), at(2025, 3, 7))
    assert cal.due_instant(at(2025, 3, 10), 3, [pause]) == eod(2025, 3, 13)


def test_pause_ending_before_it_starts_is_rejected(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="pause ends before it starts"):
        cal.due_instant(at(2025, 3, 10), 3, [(at(2025, 3, 12), at(2025, 3, 11))])


# -- missing years -------------------------------------------------------------------


def test_missing_year_raises_calendar_missing(cal: WorkingCalendar) -> None:
    with pytest.raises(CalendarMissing) as info:
        cal.due_instant(at(2031, 3, 3), 1)
    assert info.value.year == 2031
    assert isinstance(info.value, CalendarError)
    assert str(info.value).startswith("calendar missing for year 2031: load it with")
    with pytest.raises(CalendarMissing):
        cal.is_working_day(date(2031, 3, 3))
    with pytest.raises(CalendarMissing):
        cal.add_working_days(date(2023, 12, 1), 1)
    with pytest.raises(CalendarMissing):
        cal.due_instant(at(2031, 3, 3), 0)


def test_period_running_into_unloaded_year_raises_not_guesses(
    cal: WorkingCalendar,
) -> None:
    with pytest.raises(CalendarMissing) as info:
        cal.due_instant(at(2026, 12, 28), 10)
    assert info.value.year == 2027
    with pytest.raises(CalendarMissing):
        cal.working_days_between(at(2026, 12, 28), at(2027, 1, 5))


def test_gap_between_loaded_years_raises(cal: WorkingCalendar) -> None:
    gappy = WorkingCalendar(package_years())
    gappy.load_year(2028, holidays=["2028-01-01"], workdays=[])
    assert gappy.is_working_day(date(2028, 1, 3))
    with pytest.raises(CalendarMissing) as info:
        gappy.add_working_days(date(2026, 12, 28), 30)
    assert info.value.year == 2027


def test_load_year_extends_calendar(cal: WorkingCalendar) -> None:
    # Synthetic 2027 data (not the real announcement), only to exercise loading.
    extended = WorkingCalendar(package_years())
    extended.load_year(2027, holidays=["2027-01-01", "2027-01-04"], workdays=["2027-01-09"])
    assert extended.years() == (2024, 2025, 2026, 2027)
    # 12-29, 12-30, 12-31 are days 1-3; 01-01 and 01-04 off; 01-05 day 4.
    assert extended.add_working_days(date(2026, 12, 28), 4) == date(2027, 1, 5)
    assert extended.is_working_day(date(2027, 1, 9))


def test_json_file_in_env_dir_is_loaded_by_default_calendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "2027.json").write_text(
        json.dumps({"year": 2027, "holidays": ["2027-01-01"], "workdays": []}),
        encoding="utf-8",
    )
    monkeypatch.setenv(calmod.ENV_DIR, str(tmp_path))
    default_calendar.cache_clear()
    try:
        c = default_calendar()
        assert 2027 in c.years()
        assert c.year_data(2027).source == str(tmp_path / "2027.json")
        assert c.due_instant(at(2026, 12, 31), 1) == eod(2027, 1, 4)
    finally:
        default_calendar.cache_clear()


def test_default_calendar_is_cached() -> None:
    assert default_calendar() is default_calendar()


def test_admin_load_year_reaches_default_calendar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(calmod.ENV_DIR, raising=False)
    default_calendar.cache_clear()
    try:
        calmod.load_year(2027, holidays=["2027-01-01"], workdays=[])
        assert default_calendar().year_data(2027).source == "admin"
    finally:
        default_calendar.cache_clear()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"year": 2027, "holidays": ["2028-01-01"], "workdays": []}, "outside 2027"),
        (
            {"year": 2027, "holidays": ["2027-01-02"], "workdays": ["2027-01-02"]},
            "both",
        ),
        ({"year": 2027, "holidays": [], "workdays": ["2027-01-04"]}, "weekend days"),
        ({"year": 2027, "holidays": ["01/02/2027"], "workdays": []}, "not an ISO date"),
        ({"holidays": []}, "expected"),
    ],
)
def test_malformed_calendar_file_is_rejected(tmp_path: Path, payload: object, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(CalendarDataError, match=message):
        WorkingCalendar().load_file(path)


# -- center closures ---------------------------------------------------------------------


def test_center_local_closure_day_is_not_a_working_day(cal: WorkingCalendar) -> None:
    local = WorkingCalendar(package_years(), closures={CENTER: ["2025-03-14"]})
    assert local.is_working_day(date(2025, 3, 14))
    assert not local.is_working_day(date(2025, 3, 14), center=CENTER)
    assert local.explain(date(2025, 3, 14), center=CENTER).kind is DayKind.CLOSURE
    assert local.due_instant(at(2025, 3, 13), 1) == eod(2025, 3, 14)
    assert local.due_instant(at(2025, 3, 13), 1, center=CENTER) == eod(2025, 3, 17)
    assert local.due_instant(at(2025, 3, 13), 1, center="other") == eod(2025, 3, 14)


def test_closure_added_later_invalidates_center_index() -> None:
    local = WorkingCalendar(package_years())
    assert local.add_working_days(date(2025, 3, 13), 1, center=CENTER) == date(2025, 3, 14)
    local.add_closures(CENTER, [date(2025, 3, 14)])
    assert local.add_working_days(date(2025, 3, 13), 1, center=CENTER) == date(2025, 3, 17)


# -- input validation ------------------------------------------------------------------


def test_negative_days_rejected(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        cal.due_instant(at(2025, 3, 10), -1)
    with pytest.raises(ValueError, match=">= 0"):
        cal.add_working_days(date(2025, 3, 10), -1)


def test_naive_datetime_rejected(cal: WorkingCalendar) -> None:
    naive = datetime(2025, 3, 10, 10)
    with pytest.raises(ValueError, match="naive"):
        cal.due_instant(naive, 1)
    with pytest.raises(ValueError, match="naive"):
        cal.due_instant(at(2025, 3, 10), 3, [(naive, at(2025, 3, 12))])
    with pytest.raises(ValueError, match="naive"):
        cal.working_days_between(naive, at(2025, 3, 12))
    with pytest.raises(ValueError, match="naive"):
        cal.remaining_working_days(naive, at(2025, 3, 12))


# -- properties --------------------------------------------------------------------------

days_2024_2026 = st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 10, 31))


@settings(max_examples=300, deadline=None)
@given(d=days_2024_2026, n=st.integers(min_value=1, max_value=40))
def test_add_working_days_lands_on_working_day_n_days_later(d: date, n: int) -> None:
    cal = default_calendar()
    result = cal.add_working_days(d, n)
    assert cal.is_working_day(result)
    assert cal.working_days_between(d, result) == n
    # Independent oracle: the package's own day-by-day search.
    # find_workday(0, x) is the first working day on or after x.
    assert result == chinese_calendar.find_workday(n - 1, d + timedelta(days=1))


@settings(max_examples=200, deadline=None)
@given(
    d=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 9, 30)),
    n=st.integers(min_value=1, max_value=30),
    gap=st.integers(min_value=0, max_value=20),
    length=st.integers(min_value=0, max_value=20),
)
def test_pause_is_never_counted(d: date, n: int, gap: int, length: int) -> None:
    cal = default_calendar()
    start = at(d.year, d.month, d.day)
    stop = start + timedelta(days=gap)
    resume = stop + timedelta(days=length)
    due = cal.due_instant(start, n, [(stop, resume)])
    # Counting by hand: working days after acceptance, minus those in (stop, resume].
    paused = cal.working_days_between(stop, min(resume, due)) if stop.date() < due.date() else 0
    assert cal.working_days_between(start, due) - paused == n
    assert cal.is_working_day(due)


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2026, 10, 31), timezones=st.just(UTC)
    ),
    offset_hours=st.integers(min_value=-12, max_value=14),
    n=st.integers(min_value=0, max_value=30),
)
def test_the_same_instant_in_any_zone_has_the_same_due_instant(
    instant: datetime, offset_hours: int, n: int
) -> None:
    """A case accepted at 23:30 UTC is accepted the next day in Shanghai, however the instant is written."""
    cal = default_calendar()
    expected = cal.due_instant(instant.astimezone(CENTER_TZ), n)
    assert expected.tzinfo is CENTER_TZ
    for written in (instant, instant.astimezone(timezone(timedelta(hours=offset_hours)))):
        assert cal.due_instant(written, n) == expected
        assert cal.due_instant(written, n).date() == cal.add_working_days(written, n)

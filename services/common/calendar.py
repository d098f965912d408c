"""Working-day calendar for the clocks (DESIGN.md §5, §8).

Conventions (every clock in the platform relies on these; tests pin them):

* Time zone is Asia/Shanghai.  Instants must be timezone-aware; a naive
  ``datetime`` raises ``ValueError`` because guessing its zone would silently
  move deadlines by eight hours on UTC hosts.
* A working day is a Monday-Friday that is not a public holiday, or a weekend
  day the State Council declared an adjusted working day (调休).  A center may
  add local closure days; they only ever remove working days.
* Periods count working days and the day of acceptance is not counted
  (行政许可法): "day 1" is the first working day strictly *after* the
  acceptance date, and a period of N working days is due at 23:59:59+08:00 on
  the N-th working day after the acceptance date.
* N = 0 means "on the spot" (即办): due at 23:59:59 of the acceptance day
  itself, even when that day is not a working day -- a center open on a
  Saturday that accepts an on-the-spot matter must still finish it that day.
* Paused intervals (supplement time, special procedures) are not counted.  A
  pause ``(stopped, resumed)`` covers the working days strictly after the
  stop's date up to and including the resume's date: the clock still ran on
  the day it stopped and restarts the day after the supplement arrives (§8).
  Overlapping pauses are not double-counted; a pause starting on or after the
  due day does not move it.
* Calendar data is loaded per year: 2024 onwards from the ``chinese-calendar``
  package (which carries data up to 2026 in 1.11), later years from JSON files
  ``{"year": 2027, "holidays": [ISO dates], "workdays": [ISO dates]}`` or via
  :meth:`WorkingCalendar.load_year`.  Touching a year with no data raises
  :class:`CalendarMissing`; there is never a weekend-only guess.

Speed: each run of consecutive loaded years is one precomputed segment holding
a rank array (working days up to and including each date) and the working-day
ordinals, so every operation is a handful of list look-ups.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "CENTER_TZ",
    "DATA_DIR",
    "ENV_DIR",
    "FIRST_PACKAGE_YEAR",
    "CalendarDataError",
    "CalendarError",
    "CalendarMissing",
    "DayInfo",
    "DayKind",
    "WorkingCalendar",
    "YearData",
    "default_calendar",
    "load_year",
    "load_year_file",
    "package_years",
]

CENTER_TZ = ZoneInfo("Asia/Shanghai")
END_OF_DAY = time(23, 59, 59)
# Asia/Shanghai has kept +08:00 without daylight saving since 1991, so a UTC instant's wall time there
# is a fixed shift; older instants take the zone database's road.
_SHANGHAI_OFFSET = timedelta(hours=8)
_FIXED_OFFSET_SINCE = 1992
DATA_DIR = Path(__file__).with_name("calendar_data")
ENV_DIR = "ONESTOP_CALENDAR_DIR"
# The platform went live in 2024; older package years would only widen the
# index without any case ever being accepted in them.
FIRST_PACKAGE_YEAR = 2024


class CalendarError(Exception):
    """Base class for calendar failures."""


class CalendarMissing(CalendarError):
    """A date falls in a year for which no calendar data is loaded."""

    def __init__(self, year: int) -> None:
        self.year = year
        super().__init__(
            f"calendar missing for year {year}: load it with "
            f"WorkingCalendar.load_year({year}, holidays=..., workdays=...) or "
            f'publish {{"year": {year}, "holidays": [...], "workdays": [...]}} '
            f"as {year}.json in {DATA_DIR} or in ${ENV_DIR}"
        )


class CalendarDataError(CalendarError):
    """Calendar data is malformed or inconsistent."""


class DayKind(enum.Enum):
    """Why a day is or is not a working day."""

    WORKDAY = "working day"
    ADJUSTED_WORKDAY = "adjusted working day, 调休"
    WEEKEND = "weekend"
    HOLIDAY = "public holiday"
    CLOSURE = "local closure day"


@dataclass(frozen=True, slots=True)
class DayInfo:
    """A day's status with the reason for it."""

    day: date
    working: bool
    kind: DayKind
    name: str = ""


@dataclass(frozen=True, slots=True)
class YearData:
    """One year's published calendar: holidays (with names) and adjusted workdays."""

    year: int
    holidays: Mapping[date, str]
    workdays: frozenset[date]
    source: str

    @classmethod
    def build(
        cls,
        year: int,
        *,
        holidays: Iterable[date | str] | Mapping[date | str, str],
        workdays: Iterable[date | str],
        source: str,
    ) -> YearData:
        """Validate and normalise one year's data."""
        if isinstance(holidays, Mapping):
            named = {_as_date(k): str(v) for k, v in holidays.items()}
        else:
            named = {_as_date(d): "" for d in holidays}
        work = frozenset(_as_date(d) for d in workdays)
        stray = sorted(d for d in (*named, *work) if d.year != year)
        if stray:
            raise CalendarDataError(f"{source}: dates outside {year}: {stray[:3]}")
        both = sorted(set(named) & work)
        if both:
            raise CalendarDataError(f"{source}: both holiday and workday: {both[:3]}")
        # An adjusted workday on a weekday changes nothing and is almost
        # certainly a typo for a neighbouring weekend date.
        weekday_work = sorted(d for d in work if d.weekday() < 5)
        if weekday_work:
            raise CalendarDataError(f"{source}: adjusted workdays must be weekend days: {weekday_work[:3]}")
        return cls(year, dict(sorted(named.items())), work, source)


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        raise CalendarDataError(f"expected a date, got a datetime: {value!r}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise CalendarDataError(f"not an ISO date: {value!r}") from exc


def _local(instant: datetime) -> datetime:
    if not isinstance(instant, datetime):
        raise TypeError(f"expected a datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: give a time zone")
    return instant.astimezone(CENTER_TZ)


def _wall(instant: datetime) -> datetime:
    """A datetime whose fields are ``instant``'s wall time in Asia/Shanghai (for its date only).

    The result is not the same instant when ``instant`` is in UTC: use it for year, date and
    ordinal, never to compare or to return. It saves the zone conversion on the hot path.
    """
    tz = instant.tzinfo
    if tz is CENTER_TZ and type(instant) is datetime:
        return instant
    if type(instant) is datetime and instant.year >= _FIXED_OFFSET_SINCE:
        if tz is UTC:
            return instant + _SHANGHAI_OFFSET
        if type(tz) is timezone:  # a fixed offset, as fromisoformat gives
            return instant + (_SHANGHAI_OFFSET - tz.utcoffset(None))
    return _local(instant)


def _local_date(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return _wall(value).date()
    return value


@dataclass(frozen=True, slots=True)
class _Segment:
    """Precomputed index over a run of consecutive loaded years."""

    first_year: int
    last_year: int
    base: int  # ordinal of 1 January of first_year
    # rank[i] = number of working days in [base, base + i]
    rank: list[int]
    ordinals: list[int]  # ordinals of working days, ascending
    eod: list[datetime]  # 23:59:59 Asia/Shanghai of each working day

    def rank_of(self, ordinal: int) -> int:
        """Working days up to and including ``ordinal``; raises past the end."""
        i = ordinal - self.base
        if i < 0:
            return 0
        if i >= len(self.rank):
            raise CalendarMissing(self.last_year + 1)
        return self.rank[i]


_Index = dict[int, _Segment]


class WorkingCalendar:
    """Working-day arithmetic over per-year calendar data, with per-center closures."""

    def __init__(
        self,
        years: Iterable[YearData] = (),
        *,
        closures: Mapping[str, Iterable[date | str]] | None = None,
    ) -> None:
        """Build a calendar from year data and optional per-center closure days."""
        self._lock = threading.RLock()
        self._years: dict[int, YearData] = {}
        self._closures: dict[str, frozenset[date]] = {}
        self._index: _Index = {}
        self._center_index: dict[str, _Index] = {}
        for data in years:
            self._years[data.year] = data
        for center, days in (closures or {}).items():
            self._closures[center] = frozenset(_as_date(d) for d in days)
        self._rebuild()

    # -- administration -------------------------------------------------

    def load_year(
        self,
        year: int,
        *,
        holidays: Iterable[date | str] | Mapping[date | str, str],
        workdays: Iterable[date | str],
        source: str = "admin",
    ) -> None:
        """Load (or replace) one year's published holidays and adjusted workdays."""
        self.add_year(YearData.build(year, holidays=holidays, workdays=workdays, source=source))

    def add_year(self, data: YearData) -> None:
        """Load (or replace) one year from validated data."""
        with self._lock:
            self._years[data.year] = data
            self._rebuild()

    def add_year_if_changed(self, data: YearData) -> bool:
        """Load one year unless the same holidays and adjusted workdays are loaded already (no rebuild
        then); True when it was added or replaced."""
        known = self._years.get(data.year)
        if known is not None and (dict(known.holidays), known.workdays) == (
            dict(data.holidays),
            data.workdays,
        ):
            return False
        self.add_year(data)
        return True

    def load_file(self, path: str | os.PathLike[str]) -> list[int]:
        """Load the year object(s) in a JSON file; return the years loaded."""
        loaded = load_year_file(path)
        with self._lock:
            for data in loaded:
                self._years[data.year] = data
            self._rebuild()
        return [d.year for d in loaded]

    def load_dir(self, directory: str | os.PathLike[str]) -> list[int]:
        """Load every ``*.json`` file in a directory (sorted by name)."""
        years: list[int] = []
        for path in sorted(Path(directory).glob("*.json")):
            years.extend(self.load_file(path))
        return years

    def add_closures(self, center: str, days: Iterable[date | str]) -> None:
        """Add local closure days for one center."""
        new = frozenset(_as_date(d) for d in days)
        with self._lock:
            self._closures[center] = self._closures.get(center, frozenset()) | new
            self._center_index.pop(center, None)

    def years(self) -> tuple[int, ...]:
        """Years with loaded data, ascending."""
        return tuple(sorted(self._years))

    def year_data(self, year: int) -> YearData:
        """The loaded data of one year; raises CalendarMissing."""
        try:
            return self._years[year]
        except KeyError:
            raise CalendarMissing(year) from None

    def closures(self, center: str) -> frozenset[date]:
        """A center's local closure days."""
        return self._closures.get(center, frozenset())

    # -- queries ----------------------------------------------------------

    def explain(self, day: date | datetime, *, center: str | None = None) -> DayInfo:
        """Whether a day is a working day and why."""
        d = _local_date(day)
        data = self.year_data(d.year)
        if d in data.holidays:
            return DayInfo(d, False, DayKind.HOLIDAY, data.holidays[d])
        if center is not None and d in self._closures.get(center, ()):
            return DayInfo(d, False, DayKind.CLOSURE, center)
        if d in data.workdays:
            return DayInfo(d, True, DayKind.ADJUSTED_WORKDAY)
        if d.weekday() >= 5:
            return DayInfo(d, False, DayKind.WEEKEND)
        return DayInfo(d, True, DayKind.WORKDAY)

    def is_working_day(self, day: date | datetime, *, center: str | None = None) -> bool:
        """True if the (Asia/Shanghai) day is a working day."""
        d = _local_date(day)
        seg = self._segments(center).get(d.year)
        if seg is None:
            raise CalendarMissing(d.year)
        i = d.toordinal() - seg.base
        prev = seg.rank[i - 1] if i else 0
        return seg.rank[i] != prev

    def add_working_days(self, day: date | datetime, n: int, *, center: str | None = None) -> date:
        """The n-th working day after ``day`` (n = 0 returns ``day`` itself)."""
        if n < 0:
            raise ValueError(f"working days must be >= 0, got {n}")
        d = _local_date(day)
        seg = self._segments(center).get(d.year)
        if seg is None:
            raise CalendarMissing(d.year)
        if n == 0:
            return d
        t = seg.rank[d.toordinal() - seg.base] + n
        if t > len(seg.ordinals):
            raise CalendarMissing(seg.last_year + 1)
        return date.fromordinal(seg.ordinals[t - 1])

    def working_days_between(
        self,
        start: date | datetime,
        end: date | datetime,
        *,
        center: str | None = None,
    ) -> int:
        """Working days strictly after start's date up to and including end's date.

        Negative when ``end`` precedes ``start`` (the same count, reversed).
        """
        a, b = _local_date(start), _local_date(end)
        sign = 1
        if b < a:
            a, b, sign = b, a, -1
        seg = self._segments(center).get(a.year)
        if seg is None:
            raise CalendarMissing(a.year)
        return sign * (seg.rank_of(b.toordinal()) - seg.rank_of(a.toordinal()))

    def due_instant(
        self,
        start: datetime,
        days: int,
        pauses: Sequence[tuple[datetime, datetime]] = (),
        *,
        center: str | None = None,
    ) -> datetime:
        """Due instant of a ``days``-working-day period accepted at ``start``."""
        if days < 0:
            raise ValueError(f"working days must be >= 0, got {days}")
        local = _wall(start)
        seg = (self._index if center is None else self._segments(center)).get(local.year)
        if seg is None:
            raise CalendarMissing(local.year)
        if days == 0:
            # On the spot: pauses cannot move it, see the module docstring.
            return datetime.combine(local.date(), END_OF_DAY, tzinfo=CENTER_TZ)
        accepted = local.toordinal()
        t = seg.rank[accepted - seg.base] + days
        if pauses:
            t = _apply_pauses(seg, accepted, t, pauses)
        if t > len(seg.ordinals):
            raise CalendarMissing(seg.last_year + 1)
        return seg.eod[t - 1]

    def remaining_working_days(self, now: datetime, due: datetime, *, center: str | None = None) -> int:
        """Working days left from now's date to due's date (0 = due today, < 0 = late).

        Whole days only: compare the instants themselves to decide "overdue".
        """
        _local(now)
        _local(due)
        return self.working_days_between(now, due, center=center)

    # -- index --------------------------------------------------------------

    def _segments(self, center: str | None) -> _Index:
        if center is None:
            return self._index
        cached = self._center_index.get(center)
        if cached is not None:
            return cached
        with self._lock:
            closed = self._closures.get(center)
            index = self._build(closed) if closed else self._index
            self._center_index[center] = index
            return index

    def _rebuild(self) -> None:
        # Readers grab the dict reference once, so swapping it is atomic for them.
        self._index = self._build(frozenset())
        self._center_index = {}

    def _build(self, closed: frozenset[date]) -> _Index:
        index: _Index = {}
        run: list[YearData] = []
        for year in sorted(self._years):
            if run and year != run[-1].year + 1:
                _index_run(index, run, closed)
                run = []
            run.append(self._years[year])
        if run:
            _index_run(index, run, closed)
        return index


def _index_run(index: _Index, run: list[YearData], closed: frozenset[date]) -> None:
    first, last = run[0].year, run[-1].year
    base = date(first, 1, 1).toordinal()
    end = date(last, 12, 31).toordinal()
    holidays: set[date] = set()
    workdays: set[date] = set()
    for data in run:
        holidays.update(data.holidays)
        workdays.update(data.workdays)
    rank: list[int] = []
    ordinals: list[int] = []
    eod: list[datetime] = []
    count = 0
    for ordinal in range(base, end + 1):
        d = date.fromordinal(ordinal)
        working = d in workdays or (d.weekday() < 5 and d not in holidays)
        if working and d not in closed:
            count += 1
            ordinals.append(ordinal)
            eod.append(datetime.combine(d, END_OF_DAY, tzinfo=CENTER_TZ))
        rank.append(count)
    seg = _Segment(first, last, base, rank, ordinals, eod)
    for data in run:
        index[data.year] = seg


def _apply_pauses(
    seg: _Segment,
    accepted: int,
    target: int,
    pauses: Sequence[tuple[datetime, datetime]],
) -> int:
    """Shift the target rank by the working days the pauses cover before it."""
    spans: list[tuple[int, int]] = []
    for stopped, resumed in pauses:
        stop_local, resume_local = _wall(stopped), _wall(resumed)
        if resumed < stopped:
            raise ValueError(f"pause ends before it starts: {stopped} > {resumed}")
        spans.append((stop_local.toordinal(), resume_local.toordinal()))
    spans.sort()
    # Ranks are additive, so shifting by each pause's covered working days in
    # date order equals recounting the unpaused days from scratch.
    covered_to = seg.rank_of(accepted)
    for s, r in spans:
        lo = max(seg.rank_of(max(s, accepted)), covered_to)
        if lo >= target:
            break
        hi = seg.rank_of(r)
        if hi > lo:
            target += hi - lo
            covered_to = hi
    return target


def package_years() -> list[YearData]:
    """Years from FIRST_PACKAGE_YEAR on that the chinese-calendar package carries."""
    from chinese_calendar import constants

    by_year: dict[int, dict[date, str]] = {}
    for d, holiday in constants.holidays.items():
        if d.year >= FIRST_PACKAGE_YEAR:
            by_year.setdefault(d.year, {})[d] = str(holiday)
    work: dict[int, list[date]] = {}
    for d in constants.workdays:
        if d.year >= FIRST_PACKAGE_YEAR:
            work.setdefault(d.year, []).append(d)
    return [
        YearData.build(y, holidays=h, workdays=work.get(y, ()), source="chinese-calendar")
        for y, h in sorted(by_year.items())
    ]


def load_year_file(path: str | os.PathLike[str]) -> list[YearData]:
    """Parse a JSON calendar file holding one year object or a list of them."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise CalendarDataError(f"{p}: cannot read calendar data: {exc}") from exc
    return parse_year_json(text, source=str(p))


def parse_year_json(text: str, *, source: str) -> list[YearData]:
    """Parse calendar JSON (one year object or a list of them); errors name `source`."""
    p = source
    try:
        raw: Any = json.loads(text)
    except ValueError as exc:
        raise CalendarDataError(f"{p}: cannot read calendar data: {exc}") from exc
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("year"), int):
            raise CalendarDataError(f'{p}: expected {{"year": int, ...}}, got {item!r}')
        holidays = item.get("holidays", [])
        workdays = item.get("workdays", [])
        if not isinstance(holidays, list | dict) or not isinstance(workdays, list):
            raise CalendarDataError(f"{p}: holidays/workdays must be lists of dates")
        out.append(YearData.build(item["year"], holidays=holidays, workdays=workdays, source=p))
    return out


@functools.cache
def default_calendar() -> WorkingCalendar:
    """The process-wide calendar: package years, then data dir, then $ONESTOP_CALENDAR_DIR."""
    cal = WorkingCalendar(package_years())
    # Later sources replace earlier ones so a published correction wins.
    if DATA_DIR.is_dir():
        cal.load_dir(DATA_DIR)
    extra = os.environ.get(ENV_DIR)
    if extra:
        if not Path(extra).is_dir():
            raise CalendarDataError(f"${ENV_DIR}={extra} is not a directory")
        cal.load_dir(extra)
    return cal


def load_year(
    year: int,
    *,
    holidays: Iterable[date | str] | Mapping[date | str, str],
    workdays: Iterable[date | str],
    source: str = "admin",
) -> None:
    """Admin call: load a newly published year into the process-wide calendar."""
    default_calendar().load_year(year, holidays=holidays, workdays=workdays, source=source)

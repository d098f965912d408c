"""``onestop calendar ...``: due dates, loaded years and day checks from the command line.

The main CLI calls :func:`register` on its subparsers; each subcommand sets
``func`` to a handler taking the parsed namespace and returning an exit code.
Exit codes: 0 success, 2 bad input or calendar data missing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from typing import Any, TextIO

from services.common.calendar import (
    CENTER_TZ,
    CalendarError,
    DayKind,
    default_calendar,
)

EXIT_OK = 0
EXIT_ERROR = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``calendar`` command and its subcommands to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "calendar",
        help="working-day calendar (Asia/Shanghai)",
        description="Working-day calendar: due dates, loaded years, day checks.",
    )
    sub = parser.add_subparsers(dest="calendar_command", metavar="SUBCOMMAND")
    sub.required = True

    due = sub.add_parser(
        "due",
        help="due instant of a period of working days",
        description=(
            "Print the due instant (23:59:59+08:00 on the N-th working day after "
            "the acceptance date; N=0 is on the spot, due the same day)."
        ),
    )
    due.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="INSTANT",
        help="acceptance instant in ISO 8601; without an offset it is Asia/Shanghai",
    )
    due.add_argument("--days", required=True, metavar="N", help="working days (>= 0)")
    due.add_argument("--center", default=None, help="center code (local closures)")
    due.set_defaults(func=cmd_due)

    years = sub.add_parser("years", help="list the years with calendar data")
    years.set_defaults(func=cmd_years)

    check = sub.add_parser("check", help="is a date a working day, and why")
    check.add_argument("--date", required=True, metavar="D", help="ISO date")
    check.add_argument("--center", default=None, help="center code (local closures)")
    check.set_defaults(func=cmd_check)
    return parser


def _fail(message: str, err: TextIO) -> int:
    print(f"onestop calendar: error: {message}", file=err)
    return EXIT_ERROR


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant; a value without offset is Asia/Shanghai."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot parse instant {text!r}: use ISO 8601, e.g. 2025-09-30T10:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CENTER_TZ)
    return value


def cmd_due(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Handle ``calendar due``."""
    try:
        start = parse_instant(args.start)
    except ValueError as exc:
        return _fail(str(exc), err)
    try:
        days = int(args.days)
    except ValueError:
        return _fail(f"--days must be a whole number of working days, got {args.days!r}", err)
    if days < 0:
        return _fail(f"--days must be >= 0, got {days}", err)
    try:
        due = default_calendar().due_instant(start, days, center=args.center)
    except CalendarError as exc:
        return _fail(str(exc), err)
    print(due.isoformat(), file=out)
    return EXIT_OK


def cmd_years(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Handle ``calendar years``."""
    try:
        cal = default_calendar()
    except CalendarError as exc:
        return _fail(str(exc), err)
    for year in cal.years():
        print(f"{year}\t{cal.year_data(year).source}", file=out)
    return EXIT_OK


def cmd_check(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Handle ``calendar check``."""
    try:
        day = date.fromisoformat(args.date.strip())
    except ValueError:
        return _fail(f"cannot parse date {args.date!r}: use YYYY-MM-DD", err)
    try:
        info = default_calendar().explain(day, center=args.center)
    except CalendarError as exc:
        return _fail(str(exc), err)
    status = "working day" if info.working else "not a working day"
    reason = info.kind.value
    if info.kind is DayKind.HOLIDAY and info.name:
        reason = f"{reason}: {info.name}"
    elif info.kind is DayKind.CLOSURE:
        reason = f"{reason} of center {info.name}"
    print(f"{day.isoformat()} {day.strftime('%A')}: {status} ({reason})", file=out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m services.cli.calendar_cmd calendar ...``."""
    parser = argparse.ArgumentParser(prog="onestop")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

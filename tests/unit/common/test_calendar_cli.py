"""``onestop calendar`` subcommands, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ONESTOP_CALENDAR_DIR"}
    if env_dir is not None:
        env["ONESTOP_CALENDAR_DIR"] = str(env_dir)
    return subprocess.run(
        [sys.executable, "-m", "services.cli.calendar_cmd", "calendar", *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_due_prints_iso_instant_with_shanghai_offset() -> None:
    proc = run("due", "--from", "2025-09-30T10:00:00+08:00", "--days", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2025-10-09T23:59:59+08:00"


def test_due_without_offset_is_shanghai_time() -> None:
    # Sunday 09-28 23:30 in Shanghai (a worked Sunday); read as UTC it would be
    # Monday 07:30 in Shanghai and the due date would move a day later.
    proc = run("due", "--from", "2025-09-28T23:30", "--days", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2025-09-29T23:59:59+08:00"
    utc = run("due", "--from", "2025-09-28T16:30:00Z", "--days", "1")
    assert utc.stdout.strip() == "2025-09-30T23:59:59+08:00"


def test_due_crossing_year_boundary_and_center_option() -> None:
    proc = run("due", "--from", "2025-12-25T09:00", "--days", "5", "--center", "330100")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2026-01-04T23:59:59+08:00"


def test_due_zero_days_is_same_day() -> None:
    proc = run("due", "--from", "2025-10-04T10:00", "--days", "0")
    assert proc.stdout.strip() == "2025-10-04T23:59:59+08:00"


def test_due_in_missing_year_exits_2_with_message() -> None:
    proc = run("due", "--from", "2031-03-03T10:00:00+08:00", "--days", "3")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "calendar missing for year 2031: load it with" in proc.stderr


def test_due_running_into_missing_year_exits_2() -> None:
    proc = run("due", "--from", "2026-12-28T10:00", "--days", "10")
    assert proc.returncode == 2
    assert "calendar missing for year 2027" in proc.stderr


def test_year_from_calendar_dir_is_used(tmp_path: Path) -> None:
    # Synthetic 2027 data, only to exercise loading from $ONESTOP_CALENDAR_DIR.
    (tmp_path / "2027.json").write_text(
        json.dumps({"year": 2027, "holidays": ["2027-01-01"], "workdays": []}),
        encoding="utf-8",
    )
    proc = run("due", "--from", "2026-12-31T10:00", "--days", "1", env_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2027-01-04T23:59:59+08:00"
    years = run("years", env_dir=tmp_path)
    assert [line.split("\t")[0] for line in years.stdout.splitlines()] == [
        "2024",
        "2025",
        "2026",
        "2027",
    ]


def test_unparseable_instant_rejected() -> None:
    proc = run("due", "--from", "next tuesday", "--days", "1")
    assert proc.returncode == 2
    assert "cannot parse instant 'next tuesday'" in proc.stderr


def test_negative_days_rejected() -> None:
    proc = run("due", "--from", "2025-03-10T10:00", "--days", "-1")
    assert proc.returncode == 2
    assert "--days must be >= 0" in proc.stderr


def test_years_lists_package_years() -> None:
    proc = run("years")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        "2024\tchinese-calendar",
        "2025\tchinese-calendar",
        "2026\tchinese-calendar",
    ]


def test_check_explains_adjusted_workday_holiday_and_weekend() -> None:
    saturday = run("check", "--date", "2025-10-11")
    assert saturday.returncode == 0, saturday.stderr
    assert saturday.stdout.strip() == ("2025-10-11 Saturday: working day (adjusted working day, 调休)")
    holiday = run("check", "--date", "2025-10-01")
    assert holiday.stdout.strip() == (
        "2025-10-01 Wednesday: not a working day (public holiday: National Day)"
    )
    sunday = run("check", "--date", "2025-10-12")
    assert sunday.stdout.strip() == "2025-10-12 Sunday: not a working day (weekend)"
    missing = run("check", "--date", "2031-01-01")
    assert missing.returncode == 2
    assert "calendar missing for year 2031" in missing.stderr

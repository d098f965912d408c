"""Injectable clocks. Domain code never calls datetime.now(); it is handed a Clock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    """Anything that tells the current instant (timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock a test moves by hand (in one process)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        """The instant the test last set."""
        return self._now

    def set(self, instant: datetime) -> None:
        """Jump to `instant`."""
        self._now = instant

    def advance(self, delta: timedelta) -> None:
        """Move forward by `delta`."""
        self._now += delta


class FileClock:
    """A test clock shared by the processes of a node: the instant lives in a JSON file.

    The file holds {"now": "<ISO instant>"}; the wall time that passed since the file was written
    is added, so timeouts keep moving while a test jumps days ahead. It exists only when
    ONESTOP_TEST_CLOCK_FILE is set, which production settings refuse.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> datetime:
        """The file's instant plus the wall time elapsed since it was written.

        Read afresh on every call: a cache keyed by the file's mtime missed a second write that landed
        within the same tick of the kernel's file-time clock (a few milliseconds), and kept a process on
        the earlier instant while the test had moved on (a test clock, so the reads cost nothing that
        matters)."""
        data = json.loads(self._path.read_text(encoding="utf-8"))
        written_at = datetime.fromisoformat(data["written"]) if "written" in data else None
        if written_at is None:
            written_at = datetime.fromtimestamp(os.stat(self._path).st_mtime, UTC)
        return datetime.fromisoformat(data["now"]) + max(timedelta(0), datetime.now(UTC) - written_at)

    @staticmethod
    def write(path: Path, instant: datetime) -> None:
        """Set the shared test instant (atomically), with the wall time it was set at."""
        tmp = path.with_suffix(".tmp")
        body = {"now": instant.isoformat(), "written": datetime.now(UTC).isoformat()}
        tmp.write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, path)


def clock_from_settings(test_clock_file: str) -> Clock:
    """The file clock when a test clock is configured, else the system clock."""
    return FileClock(Path(test_clock_file)) if test_clock_file else SystemClock()


def aware(value: datetime | None) -> datetime | None:
    """Stored instants are UTC; SQLite hands them back naive, so put the zone back."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_timestamp(ts: object) -> datetime:
    """A timezone-aware instant (UTC) from a protobuf Timestamp: what `ToDatetime(tzinfo=UTC)` gives
    (nanoseconds cut to microseconds), by integer arithmetic at a third of its cost (every event and
    command carries several)."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)  # type: ignore[attr-defined]

"""The test clock shared by a node's processes through a file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common.clock import FileClock


def test_a_reader_sees_each_new_instant_even_when_the_file_keeps_its_modification_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "now.json"
    first, second = datetime(2025, 10, 13, 2, 0, tzinfo=UTC), datetime(2025, 10, 14, 1, 0, tzinfo=UTC)
    FileClock.write(path, first)
    stamp = os.stat(path).st_mtime_ns
    clock = FileClock(path)
    assert first <= clock.now() < first + timedelta(seconds=5)
    FileClock.write(path, second)  # within one tick of the kernel's file-time clock, as a quick test does
    os.utime(path, ns=(stamp, stamp))
    assert second <= clock.now() < second + timedelta(seconds=5)


def test_the_instant_moves_on_with_the_wall_time_since_it_was_set(tmp_path: Path) -> None:
    path = tmp_path / "now.json"
    set_at = datetime(2025, 9, 26, 1, 0, tzinfo=UTC)
    a_day_ago = datetime.now(UTC) - timedelta(days=1)
    path.write_text(
        json.dumps({"now": set_at.isoformat(), "written": a_day_ago.isoformat()}), encoding="utf-8"
    )
    assert set_at + timedelta(hours=23) < FileClock(path).now() < set_at + timedelta(days=1, seconds=5)

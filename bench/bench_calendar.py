"""Benchmark: due-date computations per second of the working-day calendar.

Run: .venv/bin/python bench/bench_calendar.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET = 500_000
COMMAND = ".venv/bin/python bench/bench_calendar.py --json bench.json"
MIN_SECONDS = 1.0


def main() -> int:
    """Measure first-call load time and due-date throughput; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=None, help="merge results here")
    parser.add_argument("--seed", type=int, default=20250930)
    args = parser.parse_args()

    # First call: import (incl. the package data) plus building the index.
    t0 = time.perf_counter()
    from services.common.calendar import CENTER_TZ, default_calendar

    cal = default_calendar()
    cal.due_instant(datetime(2025, 9, 30, 10, tzinfo=CENTER_TZ), 5)
    load_ms = (time.perf_counter() - t0) * 1000

    rng = random.Random(args.seed)
    # Starts stay before November 2026 so 30 days plus a pause never leave 2026.
    lo = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    hi = datetime(2026, 10, 31, tzinfo=UTC).timestamp()
    zones = [CENTER_TZ, UTC]
    cases: list[tuple[datetime, int, list[tuple[datetime, datetime]]]] = []
    for _ in range(10_000):
        start = datetime.fromtimestamp(rng.uniform(lo, hi), tz=rng.choice(zones))
        pauses: list[tuple[datetime, datetime]] = []
        if rng.random() < 0.2:
            stop = start + timedelta(hours=rng.uniform(0, 240))
            pauses.append((stop, stop + timedelta(hours=rng.uniform(1, 480))))
        cases.append((start, rng.randint(0, 30), pauses))

    due = cal.due_instant
    done = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while elapsed < MIN_SECONDS:
        for start, days, pauses in cases:
            due(start, days, pauses)
        done += len(cases)
        elapsed = time.perf_counter() - t0
    rate = done / elapsed

    verdict = "ok" if rate >= TARGET else "BELOW TARGET"
    print(f"calendar first call (import + load + index): {load_ms:.1f} ms")
    print(
        f"calendar due computations: {rate:,.0f}/s over {done:,} calls in {elapsed:.2f} s "
        f"(target {TARGET:,}/s, {verdict}; 20% with a pause)"
    )
    print(f"rerun: {COMMAND}")

    if args.json is not None:
        data: dict[str, object] = {}
        if args.json.exists():
            data = json.loads(args.json.read_text(encoding="utf-8") or "{}")
        data["calendar_due_per_s"] = {
            "value": round(rate),
            "unit": "ops/s",
            "target": TARGET,
            "better": "higher",
        }
        data["calendar_first_call_ms"] = {
            "value": round(load_ms, 1),
            "unit": "ms",
            "better": "lower",
        }
        args.json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

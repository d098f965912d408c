"""Open-loop latency: cases arrive at a fixed rate, half of the measured maximum; p50/p99 end to end.

Run: .venv/bin/python bench/bench_latency.py [--seconds 30] [--rate R] [--json bench/results.json]
Without --rate, a short closed-loop run finds the maximum first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_single_node import run  # noqa: E402
from bench.common import merge_results, metric  # noqa: E402
from services.cli.node import Node, NodeConfig  # noqa: E402
from tests.harness import pg_create_database, pg_drop_database  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_latency.py --seconds 30 --json bench/results.json"
TARGET_P99_MS = 500.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    db = f"onestop_lat_{uuid.uuid4().hex[:8]}"
    node = Node(
        NodeConfig(
            center="210200",
            data_dir=Path(tempfile.mkdtemp(prefix="onestop-lat-")),
            database=pg_create_database(db),
            env={"ONESTOP_LOG_LEVEL": "WARNING"},
        ),
        gateway=False,
    )
    try:
        node.start()
        rate = args.rate
        if not rate:
            peak = asyncio.run(run(node, cases=300, concurrency=64))
            rate = peak["cases_per_s"] / 2
            print(f"closed-loop maximum {peak['cases_per_s']:.1f} cases/s; open loop at {rate:.1f} cases/s")
        figures = asyncio.run(run(node, cases=max(10, int(rate * args.seconds)), concurrency=0, rate=rate))
    finally:
        node.stop()
        pg_drop_database(db)
    print(f"  open-loop rate     {rate:8.1f} cases/s for {args.seconds:.0f} s")
    print(
        f"  p50 / p99 (ms)     {figures['p50_ms']:8.1f} / {figures['p99_ms']:.1f}   (target p99 <= {TARGET_P99_MS})"
    )
    print(f"rerun: {COMMAND}")
    merge_results(
        args.json,
        {
            "open_loop_rate_cases_per_s": metric(rate, "cases/s", None, "higher"),
            "open_loop_p50_ms": metric(figures["p50_ms"], "ms", None, "lower"),
            "open_loop_p99_ms": metric(figures["p99_ms"], "ms", TARGET_P99_MS, "lower"),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time to load and validate the demo organisation and matter catalogue (target < 1 s).

Run: python bench/bench_catalogue.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.routing.catalogue import load_catalogue  # noqa: E402
from services.routing.org import load_org  # noqa: E402

DATA = ROOT / "services" / "routing" / "data"
RUNS = 5
TARGET_S = 1.0
METRIC = "catalogue_load_s"


def load_once() -> float:
    """Seconds to load and validate the demo org and, against it, the demo catalogue."""
    start = time.perf_counter()
    org = load_org(DATA / "demo_org.yaml")
    load_catalogue(DATA / "demo_catalogue.yaml", departments=org.departments)
    return time.perf_counter() - start


def merge_json(path: Path, value: float) -> None:
    """Merge this benchmark's figure into the JSON results file at ``path``."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results[METRIC] = {"value": value, "unit": "s", "target": TARGET_S, "better": "lower"}
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the median and the rerun command; 1 if over target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="merge the figure into this JSON file")
    args = parser.parse_args(argv)
    samples = [load_once() for _ in range(RUNS)]
    median = statistics.median(samples)
    status = "OK" if median < TARGET_S else "OVER TARGET"
    print(
        f"{METRIC}: median {median * 1000:.1f} ms of {RUNS} runs "
        f"(min {min(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms)"
    )
    print(f"target: < {TARGET_S:.1f} s  [{status}]")
    print("rerun: python bench/bench_catalogue.py [--json PATH]")
    if args.json is not None:
        merge_json(args.json, median)
        print(f"merged into {args.json}")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark, then print one summary table; results go to one JSON file.

Run: make bench   (or .venv/bin/python bench/run_all.py --json bench/results.json [--quick])
Each benchmark is its own script under bench/ that prints its figures and how to rerun it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.floors import ratios  # noqa: E402

# (script, extra arguments for a full run, for --quick)
BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("bench_blocks.py", [], []),
    ("bench_calendar.py", [], []),
    ("bench_catalogue.py", [], []),
    ("bench_single_node.py", ["--cases", "1500"], ["--cases", "200"]),
    ("bench_latency.py", [], ["--seconds", "10"]),
    ("bench_federation.py", [], ["--cases", "100"]),
    ("bench_supervision_tick.py", [], ["--clocks", "100000"]),
    ("bench_gateway.py", [], []),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    args = parser.parse_args()
    args.json.unlink(missing_ok=True)
    failed = []
    for script, full, quick in BENCHES:
        path = ROOT / "bench" / script
        if not path.exists():
            print(f"== {script}: not present, skipped", flush=True)
            continue
        print(f"== {script}", flush=True)
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(path), "--json", str(args.json), *(quick if args.quick else full)], cwd=ROOT
        )
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
        if result.returncode != 0:
            failed.append(script)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results.update(ratios(results))  # each workload's CPU per case against its I/O floor, this run
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{'metric':40s} {'value':>12s} {'unit':10s} {'target':>10s}  verdict")
    for name, m in results.items():
        target = m.get("target")
        verdict = "-"
        if target is not None:
            ok = m["value"] >= target if m["better"] == "higher" else m["value"] <= target
            verdict = "meets" if ok else "MISSES"
        print(f"{name:40s} {m['value']:12.3f} {m['unit']:10s} {str(target):>10s}  {verdict}")
    print(f"\nresults: {args.json}")
    if failed:
        print("benchmarks that failed to run:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

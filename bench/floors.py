"""The CPU floor of each workload: what its I/O pattern costs at this run's building-block prices.

A workload's CPU per case is only meaningful next to what the same machine charges for the I/O the
case cannot avoid. `bench_blocks.py` measures the prices in the same run; this module counts the
unavoidable I/O of one case of each workload and reports measured CPU / floor. A ratio of 1 would
mean the code adds nothing to its I/O; the gap is what the code itself costs.

Counts per case (the minimum the design needs, not what the code does today):

- single node, TR-001 (4 departments in parallel): 5 gRPC calls (1 submission, 4 decisions);
  7 transactions (acceptance, routing, opening the tasks, 4 decisions of which the last joins);
  13 events published (submitted, accepted, routed, 4 opened, 4 decided, concluded, and one
  notification fact); about 30 consumed (the consumers that need each kind: timeline, clocks,
  notices).
- federation, a city matter with 3 departments submitted at the district: 6 gRPC calls (submission,
  the upload to the city over TLS, 3 decisions, the result streamed back); 10 transactions (district
  acceptance and upload state, city acceptance, routing, opening, 3 decisions, the result applied at
  the district); 16 events published over the two nodes; about 36 consumed.

JetStream prices come as rates from bench_blocks; one saturated core per stream is assumed, so the
CPU per message is taken as 1/rate (an upper bound on a 2-core machine, which makes the floor
generous rather than strict).
"""

from __future__ import annotations

from typing import Any

PATTERNS: dict[str, dict[str, float]] = {
    "single_node": {"grpc": 5, "pg_tx": 7, "publish": 13, "consume": 30},
    "federation": {"grpc": 6, "pg_tx": 10, "publish": 16, "consume": 36},
}


def prices_ms(results: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """CPU milliseconds per operation measured by bench_blocks in this run, or None without it."""
    try:
        return {
            "grpc": results["block_grpc_unary_cpu_us"]["value"] / 1000,
            "pg_tx": results["block_pg_raw_tx_cpu_us"]["value"] / 1000,
            "publish": 1000 / results["block_jetstream_publish_per_s"]["value"],
            "consume": 1000 / results["block_jetstream_pull_ack_per_s"]["value"],
        }
    except (KeyError, ZeroDivisionError):
        return None


def floor_ms(pattern: dict[str, float], prices: dict[str, float]) -> float:
    """CPU ms per case that the I/O pattern costs at these prices."""
    return sum(count * prices[kind] for kind, count in pattern.items())


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`<workload>_cpu_floor_ms` and `<workload>_cpu_ratio_to_floor` for every workload measured."""
    prices = prices_ms(results)
    out: dict[str, dict[str, Any]] = {}
    if prices is None:
        return out
    for workload, pattern in PATTERNS.items():
        measured = results.get(f"{workload}_cpu_ms_per_case")
        if measured is None:
            continue
        floor = floor_ms(pattern, prices)
        out[f"{workload}_cpu_floor_ms"] = {
            "value": round(floor, 3),
            "unit": "ms",
            "target": None,
            "better": "lower",
        }
        out[f"{workload}_cpu_ratio_to_floor"] = {
            "value": round(measured["value"] / floor, 2),
            "unit": "ratio",
            "target": None,
            "better": "lower",
        }
    return out

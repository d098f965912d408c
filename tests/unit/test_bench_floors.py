"""The benchmark summary puts each workload's CPU per case next to the floor its I/O implies."""

from __future__ import annotations

from bench.floors import PATTERNS, ratios


def _m(value: float) -> dict[str, object]:
    return {"value": value, "unit": "", "target": None, "better": "lower"}


BLOCKS = {
    "block_grpc_unary_cpu_us": _m(400.0),  # 0.4 ms
    "block_pg_raw_tx_cpu_us": _m(250.0),  # 0.25 ms
    "block_jetstream_publish_per_s": _m(40_000.0),  # 0.025 ms
    "block_jetstream_pull_ack_per_s": _m(25_000.0),  # 0.04 ms
}


def test_ratio_is_measured_cpu_over_the_floor_of_the_io_pattern() -> None:
    out = ratios({**BLOCKS, "single_node_cpu_ms_per_case": _m(55.0)})
    p = PATTERNS["single_node"]
    floor = p["grpc"] * 0.4 + p["pg_tx"] * 0.25 + p["publish"] * 0.025 + p["consume"] * 0.04
    assert out["single_node_cpu_floor_ms"]["value"] == round(floor, 3)
    assert out["single_node_cpu_ratio_to_floor"]["value"] == round(55.0 / floor, 2)
    assert "federation_cpu_ratio_to_floor" not in out  # not measured in this run


def test_no_ratio_without_the_building_blocks_of_the_same_run() -> None:
    assert ratios({"single_node_cpu_ms_per_case": _m(55.0)}) == {}

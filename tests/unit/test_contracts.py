"""The public protos stay compatible: v1 only ever grows.

`tests/contracts/*.json` records every message field (number, name, type, whether repeated, and the message or enum
it refers to), every enum value and every RPC (request and response types, streaming) of the published v1
packages as they were released. A field, value or method that disappears, is renumbered or changes type
breaks district systems that are not onestop (and old events still in streams), so the test fails; what is
added is fine. After adding to a contract, record it: `python -m tests.unit.test_contracts --update`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.interconnect.v1 import interconnect_pb2

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
FILES = {"common_v1": common_pb2, "events_v1": events_pb2, "interconnect_v1": interconnect_pb2}


def _message(msg: descriptor.Descriptor) -> dict[str, Any]:
    fields = {
        str(f.number): {
            "name": f.name,
            "type": f.type,
            "repeated": f.is_repeated,
            "refers_to": (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else "",
        }
        for f in msg.fields
    }
    out = {msg.full_name: fields}
    for nested in msg.nested_types:
        out.update(_message(nested))
    return out


def snapshot(module: Any) -> dict[str, Any]:
    """What a generated module's file publishes, in the form the contracts record."""
    file = module.DESCRIPTOR
    messages: dict[str, Any] = {}
    for msg in file.message_types_by_name.values():
        messages.update(_message(msg))
    enums = {e.full_name: {v.name: v.number for v in e.values} for e in file.enum_types_by_name.values()}
    services = {
        s.full_name: {
            m.name: {
                "input": m.input_type.full_name,
                "output": m.output_type.full_name,
                "client_streaming": m.client_streaming,
                "server_streaming": m.server_streaming,
            }
            for m in s.methods
        }
        for s in file.services_by_name.values()
    }
    return {"messages": messages, "enums": enums, "services": services}


def breaks(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every recorded element that the current protos no longer publish exactly so."""
    problems = []
    for kind in ("messages", "enums", "services"):
        for name, members in recorded[kind].items():
            now = current[kind].get(name)
            if now is None:
                problems.append(f"{kind[:-1]} {name} was removed")
                continue
            for key, was in members.items():
                if key not in now:
                    problems.append(f"{name}: {key} was removed")
                elif now[key] != was:
                    problems.append(f"{name}: {key} changed from {was} to {now[key]}")
    return problems


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_published_v1_contract_only_grows(name: str) -> None:
    recorded = json.loads((CONTRACTS / f"{name}.json").read_text(encoding="utf-8"))
    assert breaks(recorded, snapshot(FILES[name])) == []


def test_removing_renumbering_or_retyping_is_caught_and_adding_is_not() -> None:
    current = snapshot(interconnect_pb2)
    grown = json.loads(json.dumps(current))
    grown["messages"]["onestop.interconnect.v1.WithdrawCaseRequest"].pop("3")  # an older contract
    assert breaks(grown, current) == []
    changed = json.loads(json.dumps(current))
    request = changed["messages"]["onestop.interconnect.v1.WithdrawCaseRequest"]
    request["9"] = request.pop("3")  # operation_id was field 9
    request["2"]["type"] = descriptor.FieldDescriptor.TYPE_INT64
    changed["services"]["onestop.interconnect.v1.Interconnect"]["Retired"] = {}
    assert breaks(changed, current) == [
        "onestop.interconnect.v1.WithdrawCaseRequest: 2 changed from "
        f"{request['2']} to {current['messages']['onestop.interconnect.v1.WithdrawCaseRequest']['2']}",
        "onestop.interconnect.v1.WithdrawCaseRequest: 9 was removed",
        "onestop.interconnect.v1.Interconnect: Retired was removed",
    ]


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    CONTRACTS.mkdir(exist_ok=True)
    for name, module in FILES.items():
        path = CONTRACTS / f"{name}.json"
        path.write_text(json.dumps(snapshot(module), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print("recorded", path)

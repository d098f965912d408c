"""Live updates: notification.WatchCase relayed as server-sent events, intake polled when it cannot serve."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc

from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import CODE, NUMBER, Fakes, WatchingNotification, rpc_error


async def _events(gw: Gateway, *, until: str, seen: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """Read the stream until an event of kind `until` (or EOF)."""
    await gw.post("/track", {"number": NUMBER, "code": CODE}, page="/track")
    resp = await gw.client.get(f"/api/v1/cases/{NUMBER}/events?seen={seen}")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with asyncio.timeout(10):
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == until:
                    break
    resp.close()
    return events


async def test_updates_from_the_notification_service_are_relayed(make_gateway: Any) -> None:
    # The stream opens with notification's "subscribed" handshake, which is no change of the case: no
    # empty line on the applicant's timeline for it.
    subscribed = notification_pb2.CaseUpdate(case_number=NUMBER, kind="subscribed")
    update = notification_pb2.CaseUpdate(case_number=NUMBER, kind="case_concluded", summary="已办结:准予许可")
    fakes = Fakes(notification=WatchingNotification([subscribed, update]))
    gw = await make_gateway(fakes)
    events = await _events(gw, until="update")
    assert events[0] == ("mode", {"mode": "watch"})
    assert len(events) == 2
    assert events[1][1]["kind"] == "case_concluded" and events[1][1]["summary"] == "已办结:准予许可"
    assert fakes.notification.watched == [NUMBER]


async def test_a_line_about_a_department_names_it_in_the_pages_language(make_gateway: Any) -> None:
    # The services send the department's code; the applicant reads its name (the code when unknown).
    opened = notification_pb2.CaseUpdate(
        case_number=NUMBER, kind="task_opened", summary="部门窗口已接件", department="PLAN"
    )
    other = notification_pb2.CaseUpdate(
        case_number=NUMBER, kind="task_opened", summary="部门窗口已接件", department="XYZ"
    )
    fakes = Fakes(notification=WatchingNotification([opened, other]))
    gw = await make_gateway(fakes)
    events = [e for e in await _events(gw, until="never") if e[0] == "update"]
    assert [e[1]["summary"] for e in events] == ["规划局 · 部门窗口已接件", "XYZ · 部门窗口已接件"]
    fakes.intake.timeline.append(
        intake_pb2.TimelineEntry(
            kind="task_decided",
            summary_zh="部门审批意见:同意",
            summary_en="department decision: approved",
            department="PLAN",
        )
    )
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert "规划局</span> · 部门审批意见:同意" in page
    await gw.client.get("/lang/en")
    page = await (await gw.client.get(f"/track/{NUMBER}")).text()
    assert "Planning Bureau</span> · department decision: approved" in page


async def test_the_timeline_is_polled_while_notification_is_unavailable(make_gateway: Any) -> None:
    down = WatchingNotification([], rpc_error(grpc.StatusCode.UNIMPLEMENTED, "not yet"))
    gw = await make_gateway(Fakes(notification=down))
    events = await _events(gw, until="update", seen=0)
    assert events[0] == ("mode", {"mode": "poll"})
    assert events[1][1]["kind"] == "case_accepted" and events[1][1]["summary"] == "已受理"
    assert down.watch.cancelled


async def test_the_stream_polls_when_notification_is_not_configured(gw: Gateway) -> None:
    events = await _events(gw, until="update", seen=0)
    assert events[0] == ("mode", {"mode": "poll"})

"""The gateway's case-status page against the raw gRPC ceiling of the calls behind it.

Run: .venv/bin/python bench/bench_gateway.py [--seconds 10] [--json bench/results.json]
Raw: the page's gRPC calls (TrackCase, then ListCaseTasks, GetClocks, ListInbox, GetCaseDecision
together) made directly, 64 pages in flight. Gateway: GET /track/<number> through aiohttp with the
same concurrency. Target: the gateway serves at least 50 % of the raw rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import grpc  # noqa: E402

from bench.common import merge_results, metric  # noqa: E402
from onestop.approval.v1 import approval_pb2, approval_pb2_grpc  # noqa: E402
from onestop.intake.v1 import intake_pb2, intake_pb2_grpc  # noqa: E402
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc  # noqa: E402
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc  # noqa: E402
from services.cli.node import Node, NodeConfig  # noqa: E402
from tests.harness import NodeClients, pg_create_database, pg_drop_database  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_gateway.py --json bench/results.json"
TARGET_RATIO = 0.5
IN_FLIGHT = 64


async def _loop(one: object, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await one()  # type: ignore[operator]
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return count / (time.perf_counter() - t0)


async def raw_rate(node: Node, number: str, code: str, seconds: float) -> float:
    """Pages per second when the page's gRPC calls are made directly."""
    intake = intake_pb2_grpc.IntakeServiceStub(grpc.aio.insecure_channel(node.address("intake")))
    approval = approval_pb2_grpc.ApprovalServiceStub(grpc.aio.insecure_channel(node.address("approval")))
    sup = supervision_pb2_grpc.SupervisionServiceStub(grpc.aio.insecure_channel(node.address("supervision")))
    notes = notification_pb2_grpc.NotificationServiceStub(
        grpc.aio.insecure_channel(node.address("notification"))
    )

    async def page() -> None:
        await intake.TrackCase(intake_pb2.TrackCaseRequest(case_number=number, query_code=code))
        await asyncio.gather(
            approval.ListCaseTasks(approval_pb2.ListCaseTasksRequest(case_number=number)),
            sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)),
            notes.ListInbox(
                notification_pb2.ListInboxRequest(recipient=f"case:{number}", case_number=number)
            ),
            approval.GetCaseDecision(approval_pb2.GetCaseDecisionRequest(case_number=number)),
        )

    return await _loop(page, seconds)


async def gateway_rate(node: Node, number: str, code: str, seconds: float) -> float:
    """Pages per second through the gateway."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(
            f"{node.gateway_url}/track", params={"number": number, "code": code}, allow_redirects=False
        ) as resp:
            assert resp.status == 303, resp.status
            # The gateway's cookies are Secure; send them by hand over this loopback http.
            cookie = "; ".join(c.split(";", 1)[0] for c in resp.headers.getall("Set-Cookie", []))
        url = f"{node.gateway_url}/track/{number}"

        async def page() -> None:
            async with http.get(url, headers={"Cookie": cookie}, allow_redirects=False) as resp:
                body = await resp.read()
                assert resp.status == 200 and number.encode() in body, resp.status

        return await _loop(page, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    db = f"onestop_gw_{uuid.uuid4().hex[:8]}"
    base = Path(tempfile.mkdtemp(prefix="onestop-bench-gw-"))
    accounts = base / "accounts.json"
    accounts.write_text(json.dumps({}))
    node = Node(
        NodeConfig(
            center="210200",
            data_dir=base / "node",
            database=pg_create_database(db),
            env={"ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts)},
        )
    )
    try:
        node.start()
        c = NodeClients.of(node)
        reply = c.submit("PL-001")
        number, code = reply.case.case_number, reply.query_code
        (task,) = c.wait_tasks(number)
        c.decide(task)
        c.wait_case(number, 6)
        asyncio.run(raw_rate(node, number, code, 2.0))  # warm up both paths first
        asyncio.run(gateway_rate(node, number, code, 2.0))
        via = asyncio.run(gateway_rate(node, number, code, args.seconds))
        raw = asyncio.run(raw_rate(node, number, code, args.seconds))
    finally:
        node.stop()
        pg_drop_database(db)
    ratio = via / raw
    print(f"  raw gRPC (the page's 5 calls)   {raw:8.1f} pages/s")
    print(f"  gateway GET /track/<number>     {via:8.1f} pages/s")
    print(f"  ratio                           {ratio * 100:8.1f} %   (target >= {TARGET_RATIO * 100:.0f} %)")
    print(f"rerun: {COMMAND}")
    merge_results(
        args.json,
        {
            "gateway_case_page_per_s": metric(via, "pages/s", None, "higher"),
            "gateway_raw_grpc_page_per_s": metric(raw, "pages/s", None, "higher"),
            "gateway_vs_raw_ratio": metric(ratio, "ratio", TARGET_RATIO, "higher"),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

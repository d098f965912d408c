"""Single-center parallel approval: N cases of a 3-department matter, decided by a bot over gRPC.

Run: .venv/bin/python bench/bench_single_node.py [--cases 2000] [--concurrency 64] [--json bench/results.json]
Starts a whole node as processes on a fresh PostgreSQL database (or --sqlite), submits cases of
TR-001 (4 departments in parallel), decides every task as the departments' chief representatives,
and measures conclusions from the node's own NATS (ev.case_concluded).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CpuMeter,
    database_of,
    merge_results,
    metric,
    percentile,
    process_cpu_seconds,
    steady_rate,
)
from onestop.approval.v1 import approval_pb2, approval_pb2_grpc  # noqa: E402
from onestop.common.v1 import common_pb2  # noqa: E402
from onestop.intake.v1 import intake_pb2, intake_pb2_grpc  # noqa: E402
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc  # noqa: E402
from services.cli.node import Node, NodeConfig  # noqa: E402
from services.common.events import MalformedEvent, unpack  # noqa: E402
from tests.harness import pg_create_database, pg_drop_database  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_single_node.py --cases 2000 --json bench/results.json"
MATTER = "TR-001"
TARGET_CASES_PER_S = 300.0
TARGET_CPU_MS = 6.6


def peak_rss_mb(node: Node) -> dict[str, float]:
    """Peak resident memory (VmHWM) of each process of the node, in MB."""
    out = {}
    for name, proc in node.procs.items():
        if proc.popen is None:
            continue
        try:
            for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[name] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


async def settle(pids: list[int], *, window: float = 0.5, quiet: float = 0.1, limit: float = 120.0) -> float:
    """Wait until the node has finished what the cases caused (notifications, clocks, relays run on after
    the conclusions the benchmark waits for): its processes use less than `quiet` of a core over a window.
    Seconds waited."""
    started = time.perf_counter()
    before = sum(process_cpu_seconds(p) for p in pids)
    while time.perf_counter() - started < limit:
        await asyncio.sleep(window)
        now = sum(process_cpu_seconds(p) for p in pids)
        if now - before < quiet * window:
            break
        before = now
    return time.perf_counter() - started


async def run(node: Node, *, cases: int, concurrency: int, rate: float = 0.0) -> dict[str, float]:
    """Drive the workload; figures of one run."""
    intake = intake_pb2_grpc.IntakeServiceStub(grpc.aio.insecure_channel(node.address("intake")))
    approval = approval_pb2_grpc.ApprovalServiceStub(grpc.aio.insecure_channel(node.address("approval")))
    routing = routing_pb2_grpc.RoutingServiceStub(grpc.aio.insecure_channel(node.address("routing")))
    matter = await routing.GetMatter(routing_pb2.GetMatterRequest(code=MATTER))
    docs = []
    for m in matter.materials:  # content-addressed: one upload serves every case
        docs.append(
            await intake.UploadDocument(
                iter(
                    [
                        intake_pb2.DocumentChunk(
                            filename=f"{m.code}.pdf",
                            content_type="application/pdf",
                            material_code=m.code,
                            data=b"%PDF-1.4 bench " + m.code.encode(),
                        )
                    ]
                )
            )
        )
    departments = [s.department for s in matter.workflow]
    submitted: dict[str, float] = {}
    latencies: list[float] = []
    finished: list[float] = []  # when each came back (perf_counter)
    done = asyncio.Event()
    nc = await nats.connect(node.nats_url)

    async def on_concluded(msg: nats.aio.msg.Msg) -> None:
        for env in unpack(msg.data, msg.headers):  # one event, or a batch of them
            if isinstance(env, MalformedEvent):
                continue
            start = submitted.pop(env.case_number, None)
            if start is not None:
                now = time.perf_counter()
                latencies.append(now - start)
                finished.append(now)
                if len(latencies) >= cases:
                    done.set()

    await nc.subscribe("ev.case_concluded", cb=on_concluded)
    sem = asyncio.Semaphore(concurrency if not rate else 10_000)
    t0 = time.perf_counter()

    async def submit(i: int) -> None:
        if rate:  # open loop: case i is due at i / rate, whatever the system is doing
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        async with sem:
            started = time.perf_counter()
            reply = await intake.SubmitCase(
                intake_pb2.SubmitCaseRequest(
                    client_request_id=f"bench-{uuid.uuid4()}",
                    matter_code=MATTER,
                    channel=common_pb2.CHANNEL_ONLINE,
                    documents=docs,
                    applicant=common_pb2.Applicant(name=f"申请人{i}"),
                    submitted_by=common_pb2.Actor(username="bench", role="window_clerk"),
                )
            )
            submitted[reply.case.case_number] = started

    async def bot(department: str) -> None:
        by = common_pb2.Actor(
            username=f"chief.{department.lower()}", role="chief_representative", department=department
        )
        while not done.is_set():
            queue = await approval.ListQueue(approval_pb2.ListQueueRequest(department=department, limit=200))
            if not queue.tasks:
                await asyncio.sleep(0.02)
                continue
            await asyncio.gather(
                *(
                    approval.DecideTask(
                        approval_pb2.DecideTaskRequest(
                            task_id=t.task_id, verdict=approval_pb2.VERDICT_APPROVE, by=by
                        )
                    )
                    for t in queue.tasks
                    if t.status == common_pb2.TASK_STATUS_PENDING
                )
            )

    meter = CpuMeter(
        [p.popen.pid for p in node.procs.values() if p.popen], databases=(database_of(node.config.database),)
    )
    meter.start()
    bots = [asyncio.create_task(bot(d)) for d in departments]
    last = 0
    progress_at = time.perf_counter()

    async def report() -> None:
        nonlocal last, progress_at
        while not done.is_set():
            await asyncio.sleep(2)
            print(
                f"  progress: {len(latencies)}/{cases} concluded, {len(latencies) / (time.perf_counter() - t0):.0f} cases/s",
                flush=True,
            )

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(submit(i) for i in range(cases)))
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - t0
    for task in bots:
        task.cancel()
    drained = await settle([p.popen.pid for p in node.procs.values() if p.popen])
    cpu = meter.stop()
    print(f"  (node quiet {drained:.1f} s after the last conclusion: CPU counted until then)")
    names = {p.popen.pid: name for name, p in node.procs.items() if p.popen}
    for name, seconds in sorted(meter.breakdown(names).items(), key=lambda kv: -kv[1]):
        print(f"  CPU {name:16s} {seconds / cases * 1000:7.2f} ms/case")
    for task in [*bots, reporter]:
        task.cancel()
    await nc.close()
    return {
        "cases": cases,
        "cases_per_s": cases / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "steady_cases_per_s": steady_rate(finished),
        "cpu_ms_per_case": cpu / cases * 1000,
        "elapsed_s": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    db_name = f"onestop_bench_{uuid.uuid4().hex[:8]}"
    database = "sqlite" if args.sqlite else pg_create_database(db_name)
    node = Node(
        NodeConfig(
            center="210200",
            data_dir=Path(tempfile.mkdtemp(prefix="onestop-bench-")),
            database=database,
            env={"ONESTOP_LOG_LEVEL": "WARNING"},
        ),
        gateway=False,
    )
    try:
        node.start()
        print(f"single-node parallel approval: {args.cases} cases of {MATTER}, {args.concurrency} in flight")
        figures = asyncio.run(run(node, cases=args.cases, concurrency=args.concurrency))
        rss = peak_rss_mb(node)
    finally:
        node.stop()
        if not args.sqlite:
            pg_drop_database(db_name)
    print(
        f"  cases/s            {figures['steady_cases_per_s']:8.1f}   (target >= {TARGET_CASES_PER_S}; sustained: "
        f"between the 10th and the 90th percentile conclusion)"
    )
    print(f"  cases/s, whole run {figures['cases_per_s']:8.1f}   (first submission to last conclusion)")
    print(
        f"  CPU per case (ms)  {figures['cpu_ms_per_case']:8.2f}   (target <= {TARGET_CPU_MS}; all node processes + PostgreSQL)"
    )
    print(f"  p50 / p99 (ms)     {figures['p50_ms']:8.1f} / {figures['p99_ms']:.1f}")
    for name, mb in sorted(rss.items()):
        print(f"  peak RSS {name:14s} {mb:7.1f} MB   (target <= 200 MB per service)")
    print(f"rerun: {COMMAND}")
    merge_results(
        args.json,
        {
            "single_node_cases_per_s": metric(
                figures["steady_cases_per_s"], "cases/s", TARGET_CASES_PER_S, "higher"
            ),
            "single_node_cases_per_s_whole_run": metric(figures["cases_per_s"], "cases/s", None, "higher"),
            "single_node_cpu_ms_per_case": metric(figures["cpu_ms_per_case"], "ms", TARGET_CPU_MS, "lower"),
            "single_node_p99_ms": metric(figures["p99_ms"], "ms", None, "lower"),
            "peak_rss_max_service_mb": metric(
                max(v for k, v in rss.items() if k != "nats"), "MB", 200, "lower"
            ),
            **{
                f"peak_rss_{k}_mb": metric(v, "MB", 200 if k != "nats" else None, "lower")
                for k, v in rss.items()
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

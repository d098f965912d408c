"""Federation round trip: district -> city (3 departments in parallel, a bot deciding) -> result back at the district.

Run: .venv/bin/python bench/bench_federation.py [--cases 1000] [--concurrency 256] [--json bench/results.json]
Starts a city node and a district node as processes on fresh PostgreSQL databases, linked by
mutual TLS with certificates from a throw-away development CA. The district accepts each case,
routing forwards it, intake uploads it (documents by digest, then UploadCase); the city's three
departments are approved by a bot over gRPC; the sealed result streams back on WatchResults and
the district applies it. Round trip = SubmitCase at the district .. ev.parent_result_received there.

The loop is closed over the whole round trip: a new case is submitted when a result comes back, so
throughput can never exceed (cases in flight) / (round-trip time) (Little's law). With 64 in flight and
a round trip of ~0.5 s that bound is ~128 cases/s whatever the CPU does, so the throughput figure is
taken with 256 in flight (a district center has far more cases open than that: they wait days for the
departments); a first, shorter pass with 64 in flight is reported beside it, with its round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import nats
from nats.aio.msg import Msg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CpuMeter, database_of, merge_results, metric, percentile, steady_rate  # noqa: E402
from onestop.approval.v1 import approval_pb2, approval_pb2_grpc  # noqa: E402
from onestop.common.v1 import common_pb2  # noqa: E402
from onestop.intake.v1 import intake_pb2, intake_pb2_grpc  # noqa: E402
from services.cli import certs_cmd  # noqa: E402
from services.cli.node import Node, NodeConfig  # noqa: E402
from services.common.events import MalformedEvent, unpack  # noqa: E402
from tests.harness import pg_create_database, pg_drop_database  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_federation.py --cases 1000 --json bench/results.json"
CITY, DISTRICT = "210200", "210211"
MATTER = "BN-001"
DEPARTMENTS = ("PLAN", "LAND", "ENV")
TARGET_CASES_PER_S = 150.0
CORE = ("routing", "intake", "approval")
BENCH_MATTER = f"""
  - code: {MATTER}
    name_zh: 基准测试三部门并联审批事项
    name_en: Benchmark matter approved by three departments in parallel
    category: capital_construction
    decision_level: city
    workflow:
      - {{department: PLAN, group: 1, lead: true}}
      - {{department: LAND, group: 1}}
      - {{department: ENV, group: 1}}
    statutory_limit_days: 20
    promised_limit_days: 10
    deemed_approval_allowed: true
    legal_basis: 《中华人民共和国行政许可法》第二十六条（基准测试）
    materials:
      - {{code: APPLICATION, name_zh: 申请表, name_en: Application form}}
      - {{code: DRAWINGS, name_zh: 图纸, name_en: Drawings, accepted_types: [application/pdf]}}
"""


def catalogue_file(directory: Path) -> Path:
    """The demo catalogue plus the benchmark matter (both nodes load it)."""
    demo = (ROOT / "services" / "routing" / "data" / "demo_catalogue.yaml").read_text(encoding="utf-8")
    path = directory / "catalogue.yaml"
    path.write_text(demo.rstrip() + "\n" + BENCH_MATTER, encoding="utf-8")
    return path


async def run(
    district: Node, city: Node, *, cases: int, concurrency: int, unique_documents: bool
) -> dict[str, float]:
    """Drive the workload; the figures of one run."""
    intake = intake_pb2_grpc.IntakeServiceStub(grpc.aio.insecure_channel(district.address("intake")))
    approval = approval_pb2_grpc.ApprovalServiceStub(grpc.aio.insecure_channel(city.address("approval")))

    async def documents(tag: str) -> list[common_pb2.Document]:
        return [
            await intake.UploadDocument(
                iter(
                    [
                        intake_pb2.DocumentChunk(
                            filename=f"{code}.pdf",
                            content_type="application/pdf",
                            material_code=code,
                            data=b"%PDF-1.4 bench " + code.encode() + tag.encode(),
                        )
                    ]
                )
            )
            for code in ("APPLICATION", "DRAWINGS")
        ]

    shared = await documents("shared")
    submitted: dict[str, float] = {}
    latencies: list[float] = []
    returned: list[float] = []  # when each result came back (perf_counter)
    done = asyncio.Event()
    nc = await nats.connect(district.nats_url)

    async def on_result(msg: Msg) -> None:
        for env in unpack(msg.data, msg.headers):  # one event, or a batch of them
            if isinstance(env, MalformedEvent):
                continue
            start = submitted.pop(env.case_number, None)
            if start is not None:
                now = time.perf_counter()
                latencies.append(now - start)
                returned.append(now)
                sem.release()
                if len(latencies) >= cases:
                    done.set()

    await nc.subscribe("ev.parent_result_received", cb=on_result)
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()

    async def submit(i: int) -> None:
        # Closed loop over the whole round trip: a slot frees when the result is back at the district.
        await sem.acquire()
        docs = await documents(uuid.uuid4().hex) if unique_documents else shared
        started = time.perf_counter()
        reply = await intake.SubmitCase(
            intake_pb2.SubmitCaseRequest(
                client_request_id=f"bench-{uuid.uuid4()}",
                matter_code=MATTER,
                channel=common_pb2.CHANNEL_COUNTER,
                documents=docs,
                applicant=common_pb2.Applicant(name=f"申请人{i}"),
                submitted_by=common_pb2.Actor(username="clerk.gjz", role="window_clerk", center=DISTRICT),
            )
        )
        submitted[reply.case.case_number] = started

    async def bot(department: str) -> None:
        by = common_pb2.Actor(
            username=f"chief.{department.lower()}",
            role="chief_representative",
            department=department,
            center=CITY,
        )
        while not done.is_set():
            try:
                queue = await approval.ListQueue(
                    approval_pb2.ListQueueRequest(department=department, limit=200)
                )
                pending = [t for t in queue.tasks if t.status == common_pb2.TASK_STATUS_PENDING]
                if not pending:
                    await asyncio.sleep(0.02)
                    continue
                decisions = [
                    approval_pb2.DecideTaskRequest(
                        task_id=t.task_id, verdict=approval_pb2.VERDICT_APPROVE, by=by
                    )
                    for t in pending
                ]
                await asyncio.gather(*(approval.DecideTask(d) for d in decisions))
            except grpc.aio.AioRpcError as exc:  # a busy database: the task stays in the queue
                print(f"  bot {department}: {exc.code().name} {exc.details()}", flush=True)
                await asyncio.sleep(0.2)

    procs = {f"{node.config.center}/{name}": p for node in (district, city) for name, p in node.procs.items()}
    meter = CpuMeter(
        [p.popen.pid for p in procs.values() if p.popen],
        databases=tuple(database_of(n.config.database) for n in (district, city)),
    )
    meter.start()
    bots = [asyncio.create_task(bot(d)) for d in DEPARTMENTS]

    async def report() -> None:
        while not done.is_set():
            await asyncio.sleep(2)
            print(
                f"  progress: {len(latencies)}/{cases} back at the district, "
                f"{len(latencies) / (time.perf_counter() - t0):.0f} cases/s",
                flush=True,
            )

    reporter = asyncio.create_task(report())
    await asyncio.gather(*(submit(i) for i in range(cases)))
    await asyncio.wait_for(done.wait(), timeout=900)
    elapsed = time.perf_counter() - t0
    cpu = meter.stop()
    names = {p.popen.pid: name for name, p in procs.items() if p.popen}
    for name, seconds in sorted(meter.breakdown(names).items(), key=lambda kv: -kv[1]):
        print(f"  CPU {name:20s} {seconds / cases * 1000:7.2f} ms/case")
    for task in [*bots, reporter]:
        task.cancel()
    await nc.close()
    return {
        "cases_per_s": cases / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "steady_cases_per_s": steady_rate(returned),
        "cpu_ms_per_case": cpu / cases * 1000,
        "elapsed_s": elapsed,
    }


def start_nodes(base: Path, databases: list[str]) -> tuple[Node, Node]:
    """A city node and its district child, linked by mutual TLS."""
    ca = base / "ca"
    certs_cmd.init_ca(ca)
    catalogue = catalogue_file(base)
    nodes = []
    parent = ""
    for center, level in ((CITY, "city"), (DISTRICT, "district")):
        name = f"onestop_benchfed_{uuid.uuid4().hex[:8]}"
        databases.append(name)
        env = {
            **certs_cmd.tls_env(certs_cmd.issue(ca, center=center, out=base / "certs")),
            "ONESTOP_CATALOGUE_FILE": str(catalogue),
            "ONESTOP_LOG_LEVEL": "WARNING",
        }
        node = Node(
            NodeConfig(
                center=center,
                level=level,
                data_dir=base / center,
                database=pg_create_database(name),
                parent=parent,
                env=env,
            ),
            services=CORE,
            gateway=False,
        )
        nodes.append(node)
        node.start()
        parent = f"127.0.0.1:{node.interconnect_port}"
    return nodes[1], nodes[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=256, help="cases in flight, submission to result")
    parser.add_argument(
        "--small-concurrency",
        type=int,
        default=64,
        help="cases in flight of a first, shorter pass (0: none), reported beside the main one",
    )
    parser.add_argument("--unique-documents", action="store_true", help="fresh documents for every case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # On SIGTERM too, stop the nodes and drop the databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="onestop-bench-fed-"))
    databases: list[str] = []
    district = city = None
    finished = False
    try:
        district, city = start_nodes(base, databases)
        small: dict[str, float] = {}
        if args.small_concurrency:
            print(
                f"federation round trip, first pass: {args.cases // 2} cases of {MATTER}, "
                f"{args.small_concurrency} in flight"
            )
            small = asyncio.run(
                run(
                    district,
                    city,
                    cases=args.cases // 2,
                    concurrency=args.small_concurrency,
                    unique_documents=args.unique_documents,
                )
            )
            print(
                f"  {args.small_concurrency} in flight: {small['cases_per_s']:.1f} cases/s, round trip "
                f"p50/p99 {small['p50_ms']:.1f} / {small['p99_ms']:.1f} ms (bound by in flight / round "
                f"trip: {args.small_concurrency / (small['p50_ms'] / 1000):.0f} cases/s)"
            )
        print(
            f"federation round trip: {args.cases} cases of {MATTER}, district {DISTRICT} -> city {CITY} "
            f"({len(DEPARTMENTS)} departments), {args.concurrency} in flight"
        )
        figures = asyncio.run(
            run(
                district,
                city,
                cases=args.cases,
                concurrency=args.concurrency,
                unique_documents=args.unique_documents,
            )
        )
        finished = True
    finally:
        for node in (district, city):
            if node is not None:
                for name in CORE:  # graceful stops are not what is measured here
                    if name in node.procs:
                        node.kill(name)
                node.stop()
        for name in databases:
            pg_drop_database(name)
        if finished:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"  the run failed: the nodes' logs are kept under {base}", flush=True)
    print(
        f"  cases/s            {figures['steady_cases_per_s']:8.1f}   (target >= {TARGET_CASES_PER_S}; "
        f"{args.concurrency} in flight; sustained: between the 10th and the 90th percentile result)"
    )
    print(f"  cases/s, whole run {figures['cases_per_s']:8.1f}   (first submission to last result)")
    print(f"  round trip p50/p99 {figures['p50_ms']:8.1f} / {figures['p99_ms']:.1f} ms")
    print(
        f"  CPU per case (ms)  {figures['cpu_ms_per_case']:8.2f}   (both nodes' processes + PostgreSQL + load generator)"
    )
    print(f"rerun: {COMMAND}")
    merge_results(
        args.json,
        {
            "federation_cases_per_s": metric(
                figures["steady_cases_per_s"], "cases/s", TARGET_CASES_PER_S, "higher"
            ),
            "federation_cases_per_s_whole_run": metric(figures["cases_per_s"], "cases/s", None, "higher"),
            "federation_round_trip_p50_ms": metric(figures["p50_ms"], "ms", None, "lower"),
            "federation_round_trip_p99_ms": metric(figures["p99_ms"], "ms", None, "lower"),
            "federation_cpu_ms_per_case": metric(figures["cpu_ms_per_case"], "ms", None, "lower"),
            **(
                {
                    f"federation_cases_per_s_{args.small_concurrency}_in_flight": metric(
                        small["cases_per_s"], "cases/s", None, "higher"
                    ),
                    f"federation_round_trip_p99_ms_{args.small_concurrency}_in_flight": metric(
                        small["p99_ms"], "ms", None, "lower"
                    ),
                }
                if small
                else {}
            ),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Building-block ceilings on this machine, measured in the same run as the workloads.

Run: .venv/bin/python bench/bench_blocks.py [--json bench/results.json]
JetStream batched publish and pull+ack, a grpc.aio unary call, and a one-row PostgreSQL transaction
through our data layer (SQLAlchemy Core, as the services use it) and through raw asyncpg. The
workloads report their CPU per case against these floors.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import grpc  # noqa: E402
import nats  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from sqlalchemy import Column, Integer, MetaData, String, Table  # noqa: E402

from bench.common import CpuMeter, merge_results, metric  # noqa: E402
from services.cli.node import free_port, nats_server_binary  # noqa: E402
from services.common.db import create_engine  # noqa: E402
from tests.harness import PG_HOST, PG_PORT, PG_USER, pg_create_database, pg_drop_database  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_blocks.py --json bench/results.json"


async def jetstream(url: str, n: int = 20000) -> tuple[float, float, float]:
    """(publish msg/s, pull+ack msg/s, CPU µs per publish+consume)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    payload = b"x" * 256
    meter = CpuMeter([], include_postgres=False)
    meter.start()
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        futures = [await js.publish_async("bench.a", payload) for _ in range(min(500, n - start))]
        await asyncio.gather(*futures)
    publish = n / (time.perf_counter() - t0)
    sub = await js.pull_subscribe("bench.a", durable="b")
    t0 = time.perf_counter()
    got = 0
    while got < n:
        msgs = await sub.fetch(500, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    pull = n / (time.perf_counter() - t0)
    cpu = meter.stop()
    await nc.close()
    return publish, pull, cpu / n * 1e6


async def grpc_unary(n: int = 5000) -> tuple[float, float]:
    """(calls/s with 64 in flight, CPU µs per call incl. server), on one process like our services."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    sem = asyncio.Semaphore(64)

    async def call() -> None:
        async with sem:
            await stub.Check(health_pb2.HealthCheckRequest())

    meter = CpuMeter([], include_postgres=False)
    meter.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(call() for _ in range(n)))
    rate = n / (time.perf_counter() - t0)
    cpu = meter.stop()
    await channel.close()
    await server.stop(None)
    return rate, cpu / n * 1e6


async def postgres(db: str, n: int = 3000) -> tuple[float, float, float, float]:
    """(raw asyncpg tx/s, µs CPU; SQLAlchemy Core tx/s, µs CPU) for BEGIN, 1-row INSERT, COMMIT, 16 at once."""
    raw_url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"
    pool = await asyncpg.create_pool(raw_url, min_size=16, max_size=16)
    await pool.execute("CREATE TABLE raw_t (id serial primary key, v text)")
    sem = asyncio.Semaphore(16)

    async def raw_tx() -> None:
        async with sem, pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO raw_t (v) VALUES ($1)", "x")

    meter = CpuMeter([])
    meter.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(raw_tx() for _ in range(n)))
    raw_rate = n / (time.perf_counter() - t0)
    raw_cpu = meter.stop() / n * 1e6
    await pool.close()

    metadata = MetaData()
    table = Table("sa_t", metadata, Column("id", Integer, primary_key=True), Column("v", String(8)))
    engine = create_engine(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}", pool_size=16)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)

    async def sa_tx() -> None:
        async with sem, engine.begin() as conn:
            await conn.execute(table.insert().values(v="x"))

    meter = CpuMeter([])
    meter.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(sa_tx() for _ in range(n)))
    sa_rate = n / (time.perf_counter() - t0)
    sa_cpu = meter.stop() / n * 1e6
    await engine.dispose()
    return raw_rate, raw_cpu, sa_rate, sa_cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onestop-blocks-"))
    port = free_port()
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = f"onestop_blocks_{uuid.uuid4().hex[:8]}"
    pg_create_database(db)
    try:
        time.sleep(0.5)
        pub, pull, js_cpu = asyncio.run(jetstream(f"nats://127.0.0.1:{port}"))
        g_rate, g_cpu = asyncio.run(grpc_unary())
        raw_rate, raw_cpu, sa_rate, sa_cpu = asyncio.run(postgres(db))
    finally:
        proc.terminate()
        proc.wait()
        pg_drop_database(db)
        shutil.rmtree(tmp, ignore_errors=True)
    print("building blocks (this machine, this run):")
    print(f"  JetStream publish_async batched   {pub:9.0f} msg/s")
    print(
        f"  JetStream pull + ack              {pull:9.0f} msg/s   ({js_cpu:.0f} µs CPU per message, client side)"
    )
    print(
        f"  grpc.aio unary, 64 in flight      {g_rate:9.0f} calls/s ({g_cpu:.0f} µs CPU per call, client+server)"
    )
    print(f"  PostgreSQL 1-row tx, raw asyncpg  {raw_rate:9.0f} tx/s    ({raw_cpu:.0f} µs CPU incl. server)")
    print(f"  PostgreSQL 1-row tx, our layer    {sa_rate:9.0f} tx/s    ({sa_cpu:.0f} µs CPU incl. server)")
    print(f"rerun: {COMMAND}")
    merge_results(
        args.json,
        {
            "block_jetstream_publish_per_s": metric(pub, "msg/s", None, "higher"),
            "block_jetstream_pull_ack_per_s": metric(pull, "msg/s", None, "higher"),
            "block_grpc_unary_per_s": metric(g_rate, "calls/s", None, "higher"),
            "block_grpc_unary_cpu_us": metric(g_cpu, "µs", None, "lower"),
            "block_pg_raw_tx_per_s": metric(raw_rate, "tx/s", None, "higher"),
            "block_pg_raw_tx_cpu_us": metric(raw_cpu, "µs", None, "lower"),
            "block_pg_layer_tx_per_s": metric(sa_rate, "tx/s", None, "higher"),
            "block_pg_layer_tx_cpu_us": metric(sa_cpu, "µs", None, "lower"),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

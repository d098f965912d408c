"""The life of one service process: database, NATS, outbox relay, consumer, gRPC, health, stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from nats.aio.client import Client as NATS
from prometheus_client import start_http_server
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import migrate
from services.common.clock import Clock, clock_from_settings
from services.common.db import create_engine
from services.common.grpc_server import Health, add_servicer, enable_reflection, new_server
from services.common.jetstream import EventConsumer, Handler, Prefetch, connect, ensure_streams
from services.common.logging import configure_logging, get_logger
from services.common.outbox import Outbox, OutboxRelay, UnitOfWork
from services.common.settings import Settings

log = get_logger(__name__)


@dataclass
class Runtime:
    """What a service's handlers and servicers are given: settings, database, NATS and a clock."""

    settings: Settings
    engine: AsyncEngine
    outbox: Outbox
    clock: Clock
    nc: NATS | None = None
    js: Any = None

    def uow(self) -> UnitOfWork:
        """A new unit of work on this service's database."""
        return UnitOfWork(self.engine, self.outbox)


@dataclass
class ServiceParts:
    """What a service contributes to its process."""

    servicers: list[tuple[object, ServiceDescriptor]]
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    # Called once per fetched batch, in its transaction, before the handlers: load in a few statements
    # what the batch's handlers will read (see UnitOfWork.preload), instead of one read per event.
    prefetch: Prefetch | None = None
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra_servers: list[Callable[[], Awaitable[grpc.aio.Server | None]]] = field(default_factory=list)


# CPython collects its youngest generation every 700 net allocations of container objects by default,
# and each collection walks every young object still alive; a service allocates a few hundred per call
# (rows as dicts, protobuf messages, futures), so in approval the collector took 10-20 % of the CPU, most
# of it in full collections that walked the ~100,000 objects start-up leaves behind. 10,000 makes young
# collections rare (most of those objects are freed by reference counting before one runs); older
# generations keep CPython's ratios. Cycles are still collected, only later: peak memory did not move.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """Once start-up is done: collect, move what start-up built (modules, tables, compiled statements,
    stubs; alive for the life of the process) out of the collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _wait_for_nats(settings: Settings) -> NATS:
    delay = 0.2
    for _ in range(60):
        try:
            return await connect(settings.nats_url, name=f"{settings.center}-{settings.service}")
        except Exception as exc:  # noqa: BLE001 - NATS may start after us
            log.warning("NATS not reachable yet", url=settings.nats_url, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise RuntimeError(f"NATS at {settings.nats_url} not reachable")


async def _healthy(runtime: Runtime) -> bool:
    try:
        async with runtime.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 2.0)
    except Exception:  # noqa: BLE001 - any failure means not serving
        return False
    return bool(runtime.nc and runtime.nc.is_connected)


async def serve(
    *,
    settings: Settings,
    outbox_table: Table,
    inbox_table: Table,
    build: Callable[[Runtime], Awaitable[ServiceParts]],
) -> None:
    """Run one service until SIGTERM/SIGINT, then drain and stop."""
    configure_logging(
        service=settings.service,
        center=settings.center,
        log_format=settings.log_format,
        level=settings.log_level,
    )
    log.info("starting", settings=settings.redacted())
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.grpc_host)
    if os.environ.get("ONESTOP_AUTO_MIGRATE", "0" if settings.production else "1") == "1":
        await asyncio.to_thread(migrate.upgrade, service=settings.service, database_url=settings.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    outbox = Outbox(outbox_table)
    runtime = Runtime(
        settings=settings, engine=engine, outbox=outbox, clock=clock_from_settings(settings.test_clock_file)
    )
    runtime.nc = await _wait_for_nats(settings)
    runtime.js = runtime.nc.jetstream()
    await ensure_streams(runtime.js, name=settings.stream_name, replicas=settings.stream_replicas)
    parts = await build(runtime)

    server = new_server()
    names = [add_servicer(server, servicer, descriptor) for servicer, descriptor in parts.servicers]
    health = Health(server, names)
    enable_reflection(server, names)
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    await server.start()

    tasks = [
        asyncio.create_task(OutboxRelay(engine=engine, outbox=outbox, js=runtime.js).run(), name="relay")
    ]
    if parts.handlers:
        consumer = EventConsumer(
            name=settings.service,
            js=runtime.js,
            stream=settings.stream_name,
            engine=engine,
            outbox=outbox,
            inbox=inbox_table,
            handlers=parts.handlers,
            prefetch=parts.prefetch,
        )
        tasks.append(asyncio.create_task(consumer.run(), name="consumer"))
    tasks += [asyncio.ensure_future(fn()) for fn in parts.background]
    extra = [s for s in [await make() for make in parts.extra_servers] if s is not None]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch_health() -> None:
        while True:
            await health.set(await _healthy(runtime))
            await asyncio.sleep(1.0)

    tasks.append(asyncio.create_task(watch_health(), name="health"))
    tune_gc()
    log.info("serving", port=settings.grpc_port, services=names)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done() and task.exception() is not None:
            log.error("background task died", task=task.get_name(), exc_info=task.exception())
    log.info("draining")
    await health.set(False)
    await asyncio.gather(server.stop(grace=5.0), *(s.stop(grace=5.0) for s in extra))
    for task in tasks:
        task.cancel()
    # Bounded: NATS may be gone (a whole node stopping at once), and a drain would wait for it forever.
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(runtime.nc.drain(), 3.0)
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(runtime.nc.close(), 2.0)
    await engine.dispose()
    log.info("stopped")

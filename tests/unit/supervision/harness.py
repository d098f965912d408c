"""Fakes and factories for supervision tests: a database, a test clock, a fake approval, event builders."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from services.common.calendar import CENTER_TZ, WorkingCalendar, package_years
from services.common.clock import ManualClock, from_timestamp
from services.common.db import create_engine
from services.common.events import decode, kind, new_event, timestamp
from services.common.jetstream import EventConsumer
from services.common.outbox import Outbox, UnitOfWork
from services.common.runtime import Runtime
from services.common.settings import Settings
from services.supervision import bootstrap, handlers, orm, repository, ticker
from services.supervision.clocks import SupervisionContext
from services.supervision.grpc_api import SupervisionApi
from tests.harness import FakeMsg

CENTER = "210200"


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0, ss: int = 0) -> datetime:
    """An instant in the center's time zone."""
    return datetime(y, m, d, hh, mm, ss, tzinfo=CENTER_TZ)


def eod(y: int, m: int, d: int) -> datetime:
    """23:59:59 of a day, where every period ends."""
    return at(y, m, d, 23, 59, 59)


class FakeApproval:
    """Stands in for ApprovalService.DeemApprove: counts calls; refuses the tasks it is told to."""

    def __init__(
        self, calls: Counter[str] | None = None, *, refuse: set[str] | None = None, delay: float = 0.0
    ) -> None:
        self.calls: Counter[str] = calls if calls is not None else Counter()
        self.refuse = refuse or set()
        self.delay = delay

    async def deem_approve(self, task_id: str) -> bool:
        """Deem the task approved, unless told to refuse it."""
        self.calls[task_id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return task_id not in self.refuse


class FakeJetStream:
    """Takes dead letters."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Keep what was published."""
        self.published.append((subject, data))


class Case:
    """Factory of the events of one case, as intake, routing and approval would emit them."""

    def __init__(
        self,
        sup: Supervision,
        *,
        number: str,
        matter: str = "M1",
        promised: int = 5,
        statutory: int = 20,
        deemed_allowed: bool = True,
        threshold: int = 1,
        center: str = CENTER,
        on_the_spot: bool = False,
    ) -> None:
        self.sup = sup
        self.case_id = str(uuid.uuid4())
        self.number = number
        self.matter = matter
        self.promised, self.statutory, self.deemed_allowed, self.threshold = (
            promised,
            statutory,
            deemed_allowed,
            threshold,
        )
        self.center = center
        self.on_the_spot = on_the_spot
        self.tasks: dict[str, str] = {}  # department -> task id

    async def feed(self, body: Message, when: datetime) -> events_pb2.Envelope:
        """Deliver one event about this case at ``when``."""
        return await self.sup.feed(body, case_id=self.case_id, case_number=self.number, when=when)

    async def accept(
        self, when: datetime, *departments: str, open_tasks: bool = True, query_code_digest: str = ""
    ) -> Case:
        """case_accepted (with the query code's digest, when given), case_routed and (unless told
        otherwise) task_opened for every department."""
        await self.feed(
            events_pb2.CaseAccepted(
                matter_code=self.matter,
                origin_center=self.center,
                on_the_spot=self.on_the_spot,
                query_code_digest=query_code_digest,
            ),
            when,
        )
        routed = events_pb2.CaseRouted(
            matter_code=self.matter,
            promised_limit_days=self.promised,
            statutory_limit_days=self.statutory,
            deemed_approval_allowed=self.deemed_allowed,
            warning_threshold_days=self.threshold,
            accepted_at=timestamp(when),
            on_the_spot=self.on_the_spot,
        )
        for dept in departments:
            self.tasks[dept] = str(uuid.uuid4())
            routed.tasks.add(task_id=self.tasks[dept], department=dept, window=f"W-{dept}")
        await self.feed(routed, when)
        if open_tasks:
            for dept in departments:
                await self.open(dept, when)
        return self

    async def open(self, dept: str, when: datetime) -> None:
        """task_opened for a department."""
        task = common_pb2.Task(
            task_id=self.tasks[dept],
            case_id=self.case_id,
            case_number=self.number,
            matter_code=self.matter,
            department=dept,
            window=f"W-{dept}",
        )
        await self.feed(events_pb2.TaskOpened(task=task), when)

    async def claim(self, dept: str, username: str, when: datetime) -> None:
        """task_claimed by a staff member."""
        await self.feed(
            events_pb2.TaskClaimed(task_id=self.tasks[dept], by=common_pb2.Actor(username=username)), when
        )

    async def decide(
        self, dept: str, status: common_pb2.TaskStatus.ValueType, when: datetime, *, by: str = ""
    ) -> None:
        """task_decided."""
        await self.feed(
            events_pb2.TaskDecided(
                task_id=self.tasks[dept],
                department=dept,
                status=status,
                by=common_pb2.Actor(username=by or f"chief.{dept.lower()}"),
            ),
            when,
        )

    async def conclude(self, outcome: common_pb2.Outcome.ValueType, when: datetime) -> None:
        """case_concluded."""
        await self.feed(events_pb2.CaseConcluded(outcome=outcome), when)

    async def extend(self, dept: str, days: int, when: datetime, *, approved: bool = True) -> None:
        """extension_decided."""
        await self.feed(
            events_pb2.ExtensionDecided(
                task_id=self.tasks[dept],
                extension_id=str(uuid.uuid4()),
                approved=approved,
                days=days,
                reason="site inspection",
            ),
            when,
        )

    def task_clock(self, dept: str) -> str:
        """The clock id of a department's task."""
        return repository.task_clock_id(self.tasks[dept])

    @property
    def case_clock(self) -> str:
        """The clock id of the case's own clock."""
        return repository.case_clock_id(self.case_id)


class Supervision:
    """One supervision replica on a database: its context, a manual clock and a fake approval."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: ManualClock,
        calendar: WorkingCalendar,
        approval: FakeApproval | None = None,
        batch: int = 1000,
    ) -> None:
        self.engine = engine
        self.outbox = Outbox(orm.outbox)
        self.clock = clock
        self.approval = approval or FakeApproval()
        self._collected: list[events_pb2.Envelope] | None = None
        self.ctx = SupervisionContext(
            center=CENTER,
            clock=clock,
            calendar=calendar,
            approval=self.approval,
            tick_batch=batch,
            outbox=self.outbox,
        )

    def uow(self) -> UnitOfWork:
        """A new unit of work."""
        return UnitOfWork(self.engine, self.outbox)

    def api(self) -> SupervisionApi:
        """The gRPC servicer on this replica (called directly, without a server)."""
        settings = Settings(
            service="supervision",
            env="test",
            center=CENTER,
            center_level="city",
            database_url="",
            nats_url="",
        )
        runtime = Runtime(settings=settings, engine=self.engine, outbox=self.outbox, clock=self.clock)
        return SupervisionApi(runtime=runtime, ctx=self.ctx)

    def case(self, number: str, **kw: Any) -> Case:
        """A new case factory."""
        return Case(self, number=number, **kw)

    async def feed(
        self, body: Message, *, case_id: str, case_number: str, when: datetime
    ) -> events_pb2.Envelope:
        """Apply one event exactly as the consumer would (inbox row and handler in one transaction)."""
        self.clock.set(max(self.clock.now(), when))
        env = new_event(
            center=CENTER, producer="test", at=when, body=body, case_id=case_id, case_number=case_number
        )
        if self._collected is not None:
            self._collected.append(env)
            return env
        async with self.uow() as uow:
            if await uow.mark_processed(orm.inbox, consumer="supervision", event_id=env.event_id):
                await bootstrap.prefetch(self.ctx, uow, [env])
                await handlers.on_event(uow, self.ctx, env)
            await uow.commit()
        return env

    @contextlib.contextmanager
    def collect(self) -> Iterator[list[events_pb2.Envelope]]:
        """Within the block, events fed are only built and collected (to be delivered as a batch)."""
        collected: list[events_pb2.Envelope] = []
        self._collected = collected
        try:
            yield collected
        finally:
            self._collected = None

    def consumer(self) -> EventConsumer:
        """The consumer as bootstrap wires it, on this replica (dead letters go to a fake JetStream)."""
        return EventConsumer(
            name="supervision",
            js=FakeJetStream(),
            stream="TEST",
            engine=self.engine,
            outbox=self.outbox,
            inbox=orm.inbox,
            handlers=dict.fromkeys(bootstrap.CONSUMED, partial(bootstrap._on_event, self.ctx)),
            prefetch=partial(bootstrap.prefetch, self.ctx),
        )

    async def deliver(self, envs: Sequence[events_pb2.Envelope], *, delivered: int = 1) -> list[str]:
        """Deliver events to the consumer as one fetched batch; how each message was settled."""
        msgs = [FakeMsg(env, delivered=delivered) for env in envs]
        await self.consumer().handle_batch(msgs)
        return [m.settled for m in msgs]

    async def apply(self, env: events_pb2.Envelope) -> None:
        """Apply one already built event as the consumer would, alone, at its own instant."""
        self.clock.set(max(self.clock.now(), from_timestamp(env.occurred_at)))
        assert await self.deliver([env]) == ["ack"]

    async def tick(self, when: datetime | None = None, *, limit: int | None = None) -> ticker.TickResult:
        """Move the clock (if given) and tick once."""
        if when is not None:
            self.clock.set(when)
        return await ticker.tick(self.ctx, self.uow, limit=limit)

    async def clock_row(self, clock_id: str) -> dict[str, Any]:
        """A clock row."""
        async with self.engine.connect() as conn:
            row = await repository.get_clock(conn, clock_id)
        assert row is not None, clock_id
        return row

    async def rows(self, table: Any, **where: Any) -> list[dict[str, Any]]:
        """Rows of a table, filtered by equality."""
        stmt = select(table)
        for name, value in where.items():
            stmt = stmt.where(table.c[name] == value)
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

    async def count(self, table: Any) -> int:
        """How many rows a table holds."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

    async def emitted(self, *kinds: str) -> list[events_pb2.Envelope]:
        """Events supervision wrote to its outbox (of the given kinds)."""
        async with self.engine.connect() as conn:
            payloads = (await conn.execute(select(orm.outbox.c.payload).order_by(orm.outbox.c.seq))).scalars()
            envs = [decode(bytes(p)) for p in payloads]
        return [e for e in envs if not kinds or kind(e) in kinds]

    async def changes(self, clock_id: str) -> list[dict[str, Any]]:
        """A clock's recorded changes."""
        async with self.engine.connect() as conn:
            return await repository.changes(conn, clock_id)


def fresh_calendar() -> WorkingCalendar:
    """A calendar of its own with the package's years (tests add years without touching the process one)."""
    return WorkingCalendar(package_years())


async def sqlite_engine(path: str) -> AsyncEngine:
    """A SQLite database file with supervision's tables."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(orm.metadata.create_all)
    return engine

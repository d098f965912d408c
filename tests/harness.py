"""Helpers shared by tests: PostgreSQL admin, gRPC clients of a node, and case factories."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc

from onestop.approval.v1 import approval_pb2, approval_pb2_grpc
from onestop.common.v1 import common_pb2
from onestop.events.v1 import events_pb2
from onestop.intake.v1 import intake_pb2, intake_pb2_grpc
from onestop.routing.v1 import routing_pb2, routing_pb2_grpc
from services.common.events import BATCH_HEADER, kind, pack, subject_for

PG_HOST = os.environ.get("ONESTOP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ONESTOP_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ONESTOP_TEST_PG_USER", "postgres")
PG_ADMIN_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
T = TypeVar("T")


def _pg(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_reachable() -> bool:
    """Whether the PostgreSQL server answers."""
    try:
        _pg("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False
    return True


def pg_create_database(name: str) -> str:
    """Create a database; its SQLAlchemy asyncpg URL."""
    _pg(f'CREATE DATABASE "{name}"')
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def pg_drop_database(name: str) -> None:
    """Drop a database, disconnecting whoever is left."""
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until `probe` returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last value {last!r}")


def actor(username: str, role: str, department: str = "", center: str = "210200") -> common_pb2.Actor:
    """A staff member as the gateway would vouch for them."""
    return common_pb2.Actor(username=username, role=role, department=department, center=center)


def chief(department: str) -> common_pb2.Actor:
    """The chief representative of a department's window (R15)."""
    return actor(f"chief.{department.lower()}", "chief_representative", department)


@dataclass
class NodeClients:
    """Blocking gRPC stubs of a node's services."""

    intake: intake_pb2_grpc.IntakeServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    approval: approval_pb2_grpc.ApprovalServiceStub
    channels: list[grpc.Channel]

    @classmethod
    def of(cls, node: Any) -> NodeClients:
        """Stubs for a running Node."""
        chans = [grpc.insecure_channel(node.address(s)) for s in ("intake", "routing", "approval")]
        return cls(
            intake_pb2_grpc.IntakeServiceStub(chans[0]),
            routing_pb2_grpc.RoutingServiceStub(chans[1]),
            approval_pb2_grpc.ApprovalServiceStub(chans[2]),
            chans,
        )

    def close(self) -> None:
        """Close the channels."""
        for c in self.channels:
            c.close()

    def upload(
        self,
        material_code: str,
        data: bytes | None = None,
        *,
        content_type: str = "application/pdf",
        filename: str = "",
    ) -> common_pb2.Document:
        """Upload one document."""
        data = data if data is not None else b"%PDF-1.4 " + material_code.encode() + os.urandom(8)
        return self.intake.UploadDocument(
            iter(
                [
                    intake_pb2.DocumentChunk(
                        filename=filename or f"{material_code}.pdf",
                        content_type=content_type,
                        material_code=material_code,
                        data=data,
                    )
                ]
            ),
            timeout=10,
        )

    def complete_documents(self, matter_code: str) -> list[common_pb2.Document]:
        """One uploaded document for every material of a matter."""
        matter = self.routing.GetMatter(routing_pb2.GetMatterRequest(code=matter_code), timeout=5)
        return [self.upload(m.code) for m in matter.materials]

    def submit(
        self,
        matter_code: str,
        *,
        documents: list[common_pb2.Document] | None = None,
        request_id: str = "",
        name: str = "张三",
        channel: int = common_pb2.CHANNEL_COUNTER,
        phone: str = "13800001111",
        email: str = "",
    ) -> intake_pb2.SubmitCaseResponse:
        """Submit a case (complete unless documents are given)."""
        docs = self.complete_documents(matter_code) if documents is None else documents
        return self.intake.SubmitCase(
            intake_pb2.SubmitCaseRequest(
                client_request_id=request_id,
                matter_code=matter_code,
                channel=channel,
                documents=docs,
                applicant=common_pb2.Applicant(
                    kind=common_pb2.APPLICANT_KIND_PERSON, name=name, phone=phone, email=email
                ),
                submitted_by=actor("clerk.intake", "window_clerk"),
            ),
            timeout=10,
        )

    def tasks(self, case_number: str) -> list[common_pb2.Task]:
        """The case's department tasks."""
        return list(
            self.approval.ListCaseTasks(
                approval_pb2.ListCaseTasksRequest(case_number=case_number), timeout=5
            ).tasks
        )

    def wait_tasks(
        self,
        case_number: str,
        *,
        status: int = common_pb2.TASK_STATUS_PENDING,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[common_pb2.Task]:
        """Wait until at least `count` tasks are in `status`."""
        return wait_for(
            lambda: (
                [t for t in self.tasks(case_number) if t.status == status]
                if len([t for t in self.tasks(case_number) if t.status == status]) >= count
                else None
            ),
            timeout=timeout,
            what=f"{count} task(s) of {case_number} in {status}",
        )

    def decide(
        self,
        task: common_pb2.Task,
        verdict: int = approval_pb2.VERDICT_APPROVE,
        *,
        reasons: list[str] | None = None,
        items: list[common_pb2.SupplementItem] | None = None,
        by: common_pb2.Actor | None = None,
    ) -> common_pb2.Task:
        """Decide a task as its department's chief representative."""
        return self.approval.DecideTask(
            approval_pb2.DecideTaskRequest(
                task_id=task.task_id,
                verdict=verdict,
                reasons=reasons or [],
                items=items or [],
                by=by or chief(task.department),
            ),
            timeout=10,
        )

    def case(self, case_number: str) -> common_pb2.Case:
        """The case as intake sees it."""
        return self.intake.GetCase(intake_pb2.GetCaseRequest(case_number=case_number), timeout=5)

    def wait_case(self, case_number: str, status: int, *, timeout: float = 20.0) -> common_pb2.Case:
        """Wait until the case reaches `status`."""
        return wait_for(
            lambda: (c := self.case(case_number)).status == status and c,
            timeout=timeout,
            what=f"case {case_number} in {common_pb2.CaseStatus.Name(status)}",
        )

    def timeline(self, case_number: str) -> list[str]:
        """The kinds of the case's timeline entries, in order."""
        return [
            e.kind
            for e in self.intake.GetTimeline(
                intake_pb2.GetCaseRequest(case_number=case_number), timeout=5
            ).entries
        ]


class FakeMsg:
    """A fetched JetStream message as a consumer sees it: one event, or several of one kind packed as the
    outbox relay packs them (`services.common.outbox.bundle`); remembers how it was settled."""

    def __init__(self, *envs: events_pb2.Envelope, delivered: int = 1) -> None:
        if len(envs) == 1:
            self.data = envs[0].SerializeToString()
            self.headers: dict[str, str] | None = {"Nats-Msg-Id": envs[0].event_id}
        else:
            self.data = pack([env.SerializeToString() for env in envs])
            self.headers = {"Nats-Msg-Id": f"batch-{envs[0].event_id}", BATCH_HEADER: str(len(envs))}
        self.subject = subject_for(kind(envs[0]))
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.settlements: list[str] = []  # "ack", "nak" or "term", in order

    @property
    def settled(self) -> str:
        """How it was last settled ("" if not yet)."""
        return self.settlements[-1] if self.settlements else ""

    @property
    def acked(self) -> int:
        """How many times it was acknowledged."""
        return self.settlements.count("ack")

    async def ack(self) -> None:
        """Acknowledged: applied (or already applied)."""
        self.settlements.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        """To be redelivered."""
        self.settlements.append("nak")

    async def term(self) -> None:
        """Dead-lettered."""
        self.settlements.append("term")

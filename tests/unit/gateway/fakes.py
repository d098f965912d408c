"""Fake service stubs for the gateway's unit tests: the same method names, in-memory state, no network."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from gateway.clients import Clients
from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2
from onestop.notification.v1 import notification_pb2
from onestop.routing.v1 import routing_pb2
from onestop.supervision.v1 import supervision_pb2
from services.common.events import timestamp

CENTER = "210200"
NUMBER = "210200-20250106-0001"
CODE = "K7M2Q9XA"
PDF = b"%PDF-1.4 test document\n%%EOF\n"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """An error as a real stub raises it."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def matter() -> routing_pb2.Matter:
    """A planning permit with one department (PLAN), like the demo catalogue's PL-001."""
    return routing_pb2.Matter(
        code="PL-001",
        version=1,
        name_zh="建设工程规划许可证核发",
        name_en="Issuing the construction planning permit",
        category="capital_construction",
        decision_level="city",
        statutory_limit_days=20,
        promised_limit_days=19,
        warning_threshold_days=2,
        deemed_approval_allowed=True,
        legal_basis="《中华人民共和国城乡规划法》第四十条",
        workflow=[routing_pb2.WorkflowStep(department="PLAN", group=1, lead=True)],
        materials=[
            routing_pb2.Material(
                code="APPLICATION",
                name_zh="申请表",
                name_en="Application form",
                mandatory=True,
                form_template="forms/pl-001/application.docx",
            ),
            routing_pb2.Material(
                code="SITE-PLAN",
                name_zh="总平面图",
                name_en="Site plan",
                mandatory=True,
                accepted_types=["application/pdf"],
                max_bytes=1024,
            ),
        ],
        fees=[
            routing_pb2.Fee(code="F", name_zh="工本费", name_en="Fee", amount="10.00", kind="administrative")
        ],
    )


STAFF = {
    "clerk.plan": [("window_clerk", CENTER, "PLAN")],
    "chief.plan": [("chief_representative", CENTER, "PLAN")],
    "head.plan": [("department_head", CENTER, "PLAN")],
    "clerk.drc": [("window_clerk", CENTER, "DRC")],
    "supervisor": [("supervisor", CENTER, "")],
    "director": [("center_director", CENTER, "")],
    "tracker": [("tracker", CENTER, "")],
    "admin": [("administrator", CENTER, "")],
    "agent1": [("agent", "210200101", "")],
    "agent.here": [("agent", CENTER, "")],
    "liaison1": [("liaison_officer", CENTER, "")],
    "fee1": [("fee_collector", CENTER, "")],
    "fee2": [("fee_collector", CENTER, "")],
    "elsewhere": [("window_clerk", "210211", "PLAN")],
}


class FakeRouting:
    """RoutingService: one matter, two departments, a few staff."""

    async def ListMatters(self, req: routing_pb2.ListMattersRequest, timeout: float = 0) -> Any:
        m = matter()
        hit = not req.query or req.query in m.code or req.query in m.name_zh
        return routing_pb2.ListMattersResponse(matters=[m] if hit else [], version=1)

    async def GetMatter(self, req: routing_pb2.GetMatterRequest, timeout: float = 0) -> Any:
        if req.code != "PL-001":
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no matter {req.code}")
        return matter()

    async def ListDepartments(self, req: Any, timeout: float = 0) -> Any:
        return routing_pb2.ListDepartmentsResponse(
            departments=[
                routing_pb2.Department(code="PLAN", name_zh="规划局", name_en="Planning Bureau"),
                routing_pb2.Department(
                    code="DRC", name_zh="发展和改革委员会", name_en="Development and Reform Commission"
                ),
            ]
        )

    async def ListCenters(self, req: routing_pb2.ListCentersRequest, timeout: float = 0) -> Any:
        children = {CENTER: ["210211", "210200101"]}.get(req.parent, [])
        # 210211 is a district node of its own in reality; here it stands for "a center below".
        return routing_pb2.ListCentersResponse(
            centers=[routing_pb2.Center(code=c, parent=req.parent) for c in children if c != "210211"]
        )

    async def GetStaff(self, req: routing_pb2.GetStaffRequest, timeout: float = 0) -> Any:
        grants = STAFF.get(req.username)
        if grants is None:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no staff member {req.username!r}")
        return routing_pb2.Staff(
            username=req.username,
            display_name=req.username.upper(),
            roles=[routing_pb2.RoleGrant(role=r, center=c, department=d) for r, c, d in grants],
        )

    async def ListStaff(self, req: routing_pb2.ListStaffRequest, timeout: float = 0) -> Any:
        everyone = [await self.GetStaff(routing_pb2.GetStaffRequest(username=u)) for u in STAFF]
        return routing_pb2.ListStaffResponse(
            staff=[s for s in everyone if not req.role or any(g.role == req.role for g in s.roles)]
        )

    async def ListCatalogueVersions(self, req: Any, timeout: float = 0) -> Any:
        return routing_pb2.ListCatalogueVersionsResponse(
            versions=[routing_pb2.CatalogueVersion(version=1, changed_by="seed", added=["PL-001"])]
        )


@dataclass
class FakeIntake:
    """IntakeService: one accepted case, uploads by digest."""

    cases: dict[str, common_pb2.Case] = field(default_factory=dict)
    uploads: list[tuple[str, bytes]] = field(default_factory=list)
    supplements: list[intake_pb2.SupplementCaseRequest] = field(default_factory=list)
    withdrawn: list[intake_pb2.WithdrawCaseRequest] = field(default_factory=list)
    designated: list[intake_pb2.DesignateKeyProjectRequest] = field(default_factory=list)
    stored: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes (edit one to damage it)
    timeline: list[intake_pb2.TimelineEntry] = field(default_factory=list)  # after the acceptance

    def __post_init__(self) -> None:
        case = common_pb2.Case(
            case_id="c1",
            case_number=NUMBER,
            center=CENTER,
            matter_code="PL-001",
            status=common_pb2.CASE_STATUS_ROUTED,
            channel=common_pb2.CHANNEL_ONLINE,
            applicant=common_pb2.Applicant(name="张三", phone="13800001111"),
        )
        case.accepted_at.CopyFrom(timestamp(datetime(2025, 1, 6, 9, tzinfo=UTC)))
        case.documents.add(
            material_code="APPLICATION",
            digest=hashlib.sha256(PDF).hexdigest(),
            filename="申请表.pdf",
            content_type="application/pdf",
            size=len(PDF),
        )
        self.cases[NUMBER] = case
        self.stored[hashlib.sha256(PDF).hexdigest()] = PDF

    async def TrackCase(self, req: intake_pb2.TrackCaseRequest, timeout: float = 0) -> Any:
        case = self.cases.get(req.case_number)
        if case is None or req.query_code.upper() != CODE:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, "no case with this number and query code")
        entry = intake_pb2.TimelineEntry(kind="case_accepted", summary_zh="已受理", summary_en="accepted")
        entry.at.CopyFrom(case.accepted_at)
        entries = [entry, *self.timeline]
        return intake_pb2.TrackCaseResponse(case=case, timeline=intake_pb2.Timeline(entries=entries))

    async def GetCase(self, req: intake_pb2.GetCaseRequest, timeout: float = 0) -> Any:
        for case in self.cases.values():
            if req.case_number in (case.case_number, "") and req.case_id in (case.case_id, ""):
                return case
        raise rpc_error(grpc.StatusCode.NOT_FOUND, "no case")

    async def GetTimeline(self, req: Any, timeout: float = 0) -> Any:
        return intake_pb2.Timeline()

    async def ListCases(self, req: Any, timeout: float = 0) -> Any:
        return intake_pb2.ListCasesResponse(cases=[c for c in self.cases.values() if c.status == req.status])

    async def DownloadDocument(
        self, req: intake_pb2.DownloadDocumentRequest, timeout: float = 0
    ) -> AsyncIterator[intake_pb2.DocumentChunk]:
        case = self.cases.get(req.case_number)
        doc = next((d for d in case.documents if d.digest == req.digest), None) if case else None
        if doc is None or (req.query_code and req.query_code.upper() != CODE):
            raise rpc_error(grpc.StatusCode.NOT_FOUND, "no such document in this case")
        data = self.stored[doc.digest]
        if hashlib.sha256(data).hexdigest() != doc.digest:
            raise rpc_error(grpc.StatusCode.DATA_LOSS, "the stored copy is altered")
        for i in range(0, len(data), 8):  # small chunks, so the page is assembled from several
            chunk = intake_pb2.DocumentChunk(data=data[i : i + 8])
            if i == 0:
                chunk.filename, chunk.content_type = doc.filename, doc.content_type
                chunk.size, chunk.digest = doc.size, doc.digest
            yield chunk

    async def UploadDocument(
        self, chunks: AsyncIterator[intake_pb2.DocumentChunk], timeout: float = 0
    ) -> Any:
        first: intake_pb2.DocumentChunk | None = None
        data = b""
        async for chunk in chunks:
            first = first or chunk
            data += chunk.data
        assert first is not None
        digest = hashlib.sha256(data).hexdigest()
        self.uploads.append((first.content_type, data))
        return common_pb2.Document(
            material_code=first.material_code,
            digest=digest,
            filename=first.filename,
            content_type=first.content_type,
            size=len(data),
        )

    async def SubmitCase(self, req: intake_pb2.SubmitCaseRequest, timeout: float = 0) -> Any:
        case = common_pb2.Case(
            case_id="c2",
            case_number="210200-20250106-0002",
            matter_code=req.matter_code,
            status=common_pb2.CASE_STATUS_ACCEPTED,
            applicant=req.applicant,
            documents=req.documents,
            channel=req.channel,
        )
        self.cases[case.case_number] = case
        return intake_pb2.SubmitCaseResponse(case=case, query_code=CODE)

    async def WithdrawCase(self, req: intake_pb2.WithdrawCaseRequest, timeout: float = 0) -> Any:
        self.withdrawn.append(req)
        return self.cases[NUMBER]

    async def DesignateKeyProject(
        self, req: intake_pb2.DesignateKeyProjectRequest, timeout: float = 0
    ) -> Any:
        self.designated.append(req)
        return self.cases[NUMBER]

    async def SupplementCase(self, req: intake_pb2.SupplementCaseRequest, timeout: float = 0) -> Any:
        """Like intake: the documents join the case; in pre-review it is accepted once nothing is missing,
        during review it goes back to the departments; a case without an open notice is refused."""
        self.supplements.append(req)
        case = next((c for c in self.cases.values() if c.case_id == req.case_id), None)
        if case is None:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no case {req.case_id}")
        if case.status != common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED:
            raise rpc_error(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"case {case.case_number or case.case_id} has no open supplement notice",
            )
        sent = {d.material_code for d in req.documents}
        kept = [d for d in case.documents if d.material_code not in sent]
        del case.documents[:]
        case.documents.extend([*kept, *req.documents])
        still = [i for i in case.open_supplement if i.material_code not in sent and not case.case_number]
        del case.open_supplement[:]
        if still:
            case.open_supplement.extend(still)
        elif case.case_number:
            case.status = common_pb2.CASE_STATUS_ROUTED
        else:
            case.status = common_pb2.CASE_STATUS_ACCEPTED
            case.case_number = "210200-20250106-0003"
        return intake_pb2.SupplementCaseResponse(case=case, still_missing=still)


@dataclass
class FakeApproval:
    """ApprovalService: a PLAN task and a DRC task; records every acting call's Actor."""

    acted: list[tuple[str, common_pb2.Actor]] = field(default_factory=list)

    def tasks(self) -> list[common_pb2.Task]:
        due = timestamp(datetime.now(UTC) + timedelta(days=10))
        return [
            common_pb2.Task(
                task_id="t-plan",
                case_id="c1",
                case_number=NUMBER,
                matter_code="PL-001",
                department="PLAN",
                status=common_pb2.TASK_STATUS_PENDING,
                due_at=due,
            ),
            common_pb2.Task(
                task_id="t-drc",
                case_id="c9",
                case_number="210200-20250106-0009",
                matter_code="PL-001",
                department="DRC",
                status=common_pb2.TASK_STATUS_PENDING,
                due_at=due,
            ),
        ]

    async def ListQueue(self, req: approval_pb2.ListQueueRequest, timeout: float = 0) -> Any:
        return approval_pb2.ListQueueResponse(
            tasks=[t for t in self.tasks() if not req.department or t.department == req.department]
        )

    async def ListCaseTasks(self, req: approval_pb2.ListCaseTasksRequest, timeout: float = 0) -> Any:
        return approval_pb2.ListQueueResponse(
            tasks=[t for t in self.tasks() if t.case_number == req.case_number]
        )

    async def GetTask(self, req: approval_pb2.GetTaskRequest, timeout: float = 0) -> Any:
        for t in self.tasks():
            if t.task_id == req.task_id:
                return t
        raise rpc_error(grpc.StatusCode.NOT_FOUND, "no task")

    async def _act(self, name: str, req: Any) -> Any:
        self.acted.append((name, req.by))
        return await self.GetTask(approval_pb2.GetTaskRequest(task_id=req.task_id))

    async def ClaimTask(self, req: Any, timeout: float = 0) -> Any:
        return await self._act("claim", req)

    async def DecideTask(self, req: Any, timeout: float = 0) -> Any:
        return await self._act(f"decide:{req.verdict}", req)

    async def ReleaseTask(self, req: Any, timeout: float = 0) -> Any:
        return await self._act("release", req)

    async def AddOpinion(self, req: Any, timeout: float = 0) -> Any:
        return await self._act("opinion", req)

    async def RequestExtension(self, req: Any, timeout: float = 0) -> Any:
        await self._act("extension", req)
        return approval_pb2.Extension(
            extension_id="e1", task_id=req.task_id, days=req.days, state="requested"
        )

    async def DecideExtension(self, req: Any, timeout: float = 0) -> Any:
        self.acted.append(("decide_extension", req.by))
        return approval_pb2.Extension(
            extension_id=req.extension_id, state="approved" if req.approve else "refused"
        )

    async def ListExtensions(self, req: Any, timeout: float = 0) -> Any:
        ext = approval_pb2.Extension(
            extension_id="e1",
            task_id="t-plan",
            days=5,
            reason="专家评审",
            state="requested",
            case_number=NUMBER,
            department="PLAN",
            requested_by=common_pb2.Actor(username="clerk.plan"),
        )
        hit = req.department in ("", "PLAN") and req.state in ("", "requested")
        return approval_pb2.ListExtensionsResponse(extensions=[ext] if hit else [])

    async def ListSpecialProcedures(self, req: Any, timeout: float = 0) -> Any:
        return approval_pb2.ListSpecialProceduresResponse()

    async def GetCaseDecision(self, req: Any, timeout: float = 0) -> Any:
        raise rpc_error(grpc.StatusCode.NOT_FOUND, "no decision yet")

    async def GetSealKey(self, req: Any, timeout: float = 0) -> Any:
        return approval_pb2.SealKey(
            center=CENTER,
            key_id="0123456789abcdef",
            public_key_pem="-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n",
        )

    async def VerifySeal(self, req: approval_pb2.VerifySealRequest, timeout: float = 0) -> Any:
        return approval_pb2.VerifySealResponse(valid=req.sealed.seal.signature == b"good", reason="checked")


class DownSupervision:
    """SupervisionService that is not running (UNAVAILABLE), as while it is being built."""

    def __getattr__(self, name: str) -> Any:
        async def call(*_: Any, **__: Any) -> Any:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")

        return call


class FakeSupervision:
    """SupervisionService with one red warning."""

    def __init__(self) -> None:
        self.evaluations: list[supervision_pb2.SubmitEvaluationRequest] = []
        self.missing_years: list[int] = []
        self.loaded_years: list[supervision_pb2.CalendarYear] = []

    async def GetCalendarStatus(self, req: Any, timeout: float = 0) -> Any:
        return supervision_pb2.CalendarStatus(
            missing_years=self.missing_years, loaded_years=self.loaded_years
        )

    async def ListWarnings(self, req: Any, timeout: float = 0) -> Any:
        clock = common_pb2.Clock(
            case_number=NUMBER,
            department="PLAN",
            state=common_pb2.CLOCK_STATE_RED,
            urged=True,
            remaining_working_days=-2,
        )
        return supervision_pb2.ListWarningsResponse(
            warnings=[supervision_pb2.Warning(clock=clock, level=common_pb2.CLOCK_STATE_RED)]
        )

    async def GetStatistics(self, req: Any, timeout: float = 0) -> Any:
        if req.group_by == "center":  # this center: cases decided here, and those it sent up
            row = supervision_pb2.StatisticsRow(
                key=CENTER,
                accepted=4,
                concluded=3,
                forwarded=7,
                forwarded_waiting=2,
                forwarded_approved=3,
                forwarded_rejected=1,
                forwarded_withdrawn=1,
            )
            return supervision_pb2.Statistics(rows=[row])
        return supervision_pb2.Statistics(
            rows=[
                supervision_pb2.StatisticsRow(
                    key="PLAN", accepted=4, concluded=3, on_time_rate=0.75, evaluations=2, avg_rating=4.5
                ),
                supervision_pb2.StatisticsRow(key="DRC", accepted=2, concluded=0),  # nothing concluded yet
            ]
        )

    async def GetClocks(self, req: Any, timeout: float = 0) -> Any:
        clock = common_pb2.Clock(
            case_number=NUMBER,
            department="PLAN",
            state=common_pb2.CLOCK_STATE_GREEN,
            limit_days=19,
            remaining_working_days=12,
        )
        return supervision_pb2.GetClocksResponse(clocks=[clock])

    async def ListKeyProjects(self, req: Any, timeout: float = 0) -> Any:
        return await self.GetClocks(req)

    async def ListAccountability(self, req: Any, timeout: float = 0) -> Any:
        return supervision_pb2.ListAccountabilityResponse(
            records=[
                supervision_pb2.AccountabilityRecord(
                    case_number=NUMBER, department="PLAN", window="PLAN-1", staff=["clerk.plan"]
                )
            ]
        )

    async def SubmitEvaluation(self, req: supervision_pb2.SubmitEvaluationRequest, timeout: float = 0) -> Any:
        self.evaluations.append(req)
        return supervision_pb2.Evaluation(case_number=req.case_number, rating=req.rating)

    async def GetEvaluation(self, req: supervision_pb2.GetEvaluationRequest, timeout: float = 0) -> Any:
        """As supervision answers: a bad first rating opens a rectification and allows one follow-up."""
        given = [e for e in self.evaluations if e.case_number == req.case_number]
        if not given:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"case {req.case_number} has not been evaluated")
        first, follow = given[0].rating, (given[1].rating if len(given) > 1 else 0)
        reply = supervision_pb2.Evaluation(
            case_number=req.case_number,
            rating=follow or first,
            first_rating=first,
            follow_up_rating=follow,
            rectification_opened=first <= 2,
            follow_up_allowed=first <= 2 and not follow,
        )
        reply.callback_due.FromSeconds(1_760_000_000)
        reply.rectify_due.FromSeconds(1_761_000_000)
        return reply


class FakeInterconnect:
    """InterconnectStatus of a district whose link to the city is down, with waiting and failed uploads."""

    def __init__(self, *, parent: str = "10.20.0.5:50060", connected: bool = False) -> None:
        self.parent = parent
        self.connected = connected
        self.listed: list[str] = []

    async def GetLink(self, req: Any, timeout: float = 0) -> Any:
        if not self.parent:
            return interconnect_pb2.Link()
        return interconnect_pb2.Link(
            parent_address=self.parent,
            parent_center="210200",
            connected=self.connected,
            applied_cursor=41,
            last_error="" if self.connected else "UNAVAILABLE: connection refused",
            waiting_to_upload=0 if self.connected else 1,
            oldest_waiting_seconds=0 if self.connected else 3 * 3600 + 5 * 60,
        )

    async def ListForwarded(self, req: Any, timeout: float = 0) -> Any:
        self.listed.append(req.state)
        out = interconnect_pb2.ListForwardedResponse()
        if req.state == "waiting_to_upload" and not self.connected:
            out.cases.add(
                case_number="210211-20250106-0007",
                parent_center="210200",
                state=req.state,
                age_seconds=3 * 3600 + 5 * 60,
                attempts=9,
                last_error="UNAVAILABLE: connection refused",
            )
        if req.state == "failed" and not self.connected:
            out.cases.add(
                case_number="210211-20250106-0003",
                parent_center="210200",
                state=req.state,
                attempts=1,
                last_error="NOT_FOUND: unknown matter XX-999",
            )
        return out


class FakeNotification:
    """NotificationService with an empty inbox."""

    async def ListInbox(self, req: Any, timeout: float = 0) -> Any:
        return notification_pb2.ListInboxResponse()


@dataclass
class Fakes:
    """All fakes of one test."""

    routing: FakeRouting = field(default_factory=FakeRouting)
    intake: FakeIntake = field(default_factory=FakeIntake)
    approval: FakeApproval = field(default_factory=FakeApproval)
    supervision: Any = field(default_factory=DownSupervision)
    notification: Any = None
    interconnect: Any = None
    convenience: Any = field(default_factory=lambda: _fake_convenience())

    def clients(self) -> Clients:
        """Clients over the fakes; notification absent unless set (not configured)."""
        stubs = {
            "routing": self.routing,
            "intake": self.intake,
            "convenience": self.convenience,
            "approval": self.approval,
            "supervision": self.supervision,
        }
        if self.notification is not None:
            stubs["notification"] = self.notification
        if self.interconnect is not None:
            stubs["interconnect"] = self.interconnect
        return Clients(stubs)


def _fake_convenience() -> Any:
    from tests.unit.gateway.fake_convenience import FakeConvenience  # it builds on this module

    return FakeConvenience()


class FakeWatch:
    """A server stream as grpc.aio returns it: read() until EOF, cancel()."""

    def __init__(
        self, updates: list[notification_pb2.CaseUpdate], error: grpc.aio.AioRpcError | None = None
    ) -> None:
        self.updates = list(updates)
        self.error = error
        self.cancelled = False

    async def read(self) -> Any:
        if self.error is not None:
            raise self.error
        if self.updates:
            return self.updates.pop(0)
        return grpc.aio.EOF

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class WatchingNotification(FakeNotification):
    """NotificationService whose WatchCase streams the given updates (or fails with the given error)."""

    def __init__(
        self, updates: list[notification_pb2.CaseUpdate], error: grpc.aio.AioRpcError | None = None
    ) -> None:
        self.watch = FakeWatch(updates, error)
        self.watched: list[str] = []

    def WatchCase(self, req: notification_pb2.WatchCaseRequest, timeout: float | None = None) -> FakeWatch:
        self.watched.append(req.case_number)
        return self.watch

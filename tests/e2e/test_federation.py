"""Four nodes as processes (township > district > city > province) linked by mutual TLS.

Cases go up by UploadCase and results come back on WatchResults, exactly once, through outages and
restarts; a wrong certificate or another center's case is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2, interconnect_pb2_grpc
from onestop.routing.v1 import routing_pb2
from services.cli import certs_cmd
from services.cli.main import build_parser
from services.cli.node import Node, NodeConfig
from services.common.tls import center_dns_name
from tests.harness import NodeClients, pg_create_database, pg_drop_database, pg_reachable, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
CS = common_pb2
CORE = ("routing", "intake", "approval")
PROVINCE, CITY, DISTRICT, TOWNSHIP = "210000", "210200", "210211", "210211101"
LEVELS = {PROVINCE: "province", CITY: "city", DISTRICT: "district", TOWNSHIP: "township"}
PARENTS = {CITY: PROVINCE, DISTRICT: CITY, TOWNSHIP: DISTRICT}


@dataclass
class Tree:
    """Running nodes by center, their clients and the development CA that signed their certificates."""

    base: Path
    ca_dir: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    clients: dict[str, NodeClients] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    def start(
        self,
        center: str,
        *,
        services: tuple[str, ...] = CORE,
        gateway: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start one center's node with a certificate from the CA (its parent is already running)."""
        issued = certs_cmd.issue(self.ca_dir, center=center, out=self.base / "certs" / center)
        name = f"onestop_fed_{uuid.uuid4().hex[:10]}"
        database = pg_create_database(name)
        self.databases.append(name)
        parent = self.nodes.get(PARENTS.get(center, ""))
        node = Node(
            NodeConfig(
                center=center,
                level=LEVELS[center],
                data_dir=self.base / center,
                database=database,
                parent=f"127.0.0.1:{parent.interconnect_port}" if parent else "",
                env=certs_cmd.tls_env(issued) | (env or {}),
            ),
            services=services,
            gateway=gateway,
        )
        self.nodes[center] = node
        node.start()
        self.clients[center] = NodeClients.of(node)

    def stop(self) -> None:
        """Kill every node (graceful stops are tested elsewhere), drop the databases and the files."""
        for clients in self.clients.values():
            clients.close()
        for node in reversed(list(self.nodes.values())):
            for name in node.services:
                if name in node.procs:
                    node.kill(name)
            node.stop()
        for name in self.databases:
            pg_drop_database(name)
        shutil.rmtree(self.base, ignore_errors=True)

    def status(self, center: str) -> interconnect_pb2_grpc.InterconnectStatusStub:
        """InterconnectStatus of a node (on its intake's internal port)."""
        return interconnect_pb2_grpc.InterconnectStatusStub(
            grpc.insecure_channel(self.nodes[center].address("intake"))
        )

    def raw_client(
        self, *, to: str, cert: certs_cmd.Issued, expect: str = ""
    ) -> interconnect_pb2_grpc.InterconnectStub:
        """An Interconnect client of `to`'s node with any certificate: the published protos and grpc only."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=(self.ca_dir / certs_cmd.CA_CERT).read_bytes(),
            private_key=cert.key.read_bytes(),
            certificate_chain=cert.cert.read_bytes(),
        )
        channel = grpc.secure_channel(
            f"127.0.0.1:{self.nodes[to].interconnect_port}",
            creds,
            options=[("grpc.ssl_target_name_override", center_dns_name(expect or to))],
        )
        return interconnect_pb2_grpc.InterconnectStub(channel)

    def query(self, center: str, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Rows from a node's database (to check what a user cannot see over the API, like the audit)."""
        url = self.nodes[center].database_url("intake").replace("+asyncpg", "")

        async def run() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(url)
            try:
                return [tuple(r) for r in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def cert(self, center: str, *, expired: bool = False, self_signed: bool = False) -> certs_cmd.Issued:
        """A certificate for `center`: CA-signed and valid unless asked otherwise."""
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30) if expired else None
        return certs_cmd.issue(
            self.ca_dir,
            center=center,
            days=2 if expired else 30,
            not_before=start,
            self_signed=self_signed,
            out=self.base / "certs" / f"x-{uuid.uuid4().hex[:6]}",
        )


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    """Province > city > district > township, each a node with its own database and certificate."""
    if not pg_reachable():
        pytest.skip("PostgreSQL not reachable")
    base = Path(tempfile.mkdtemp(prefix="onestop-fed-"))
    t = Tree(base=base, ca_dir=base / "ca")
    args = build_parser().parse_args(["certs", "init-ca", "--dir", str(t.ca_dir)])
    assert args.func(args) == 0
    try:
        for center in (PROVINCE, CITY, DISTRICT, TOWNSHIP):
            t.start(center)
        yield t
    finally:
        t.stop()


def parent_case(clients: NodeClients, child_case_id: str, *, timeout: float = 30.0) -> common_pb2.Case:
    """The case a child uploaded, as the parent holds it (waits until it arrives; fails if doubled)."""

    def probe() -> common_pb2.Case | None:
        found = [c for c in uploads(clients) if c.origin_case_id == child_case_id]
        assert len(found) <= 1, f"case {child_case_id} was uploaded {len(found)} times"
        return found[0] if found else None

    return wait_for(probe, timeout=timeout, interval=0.1, what=f"upload of {child_case_id}")


def uploads(clients: NodeClients) -> list[common_pb2.Case]:
    """Every case a child uploaded to this node."""
    out, token = [], ""
    while True:
        reply = clients.intake.ListCases(
            intake_pb2.ListCasesRequest(page=common_pb2.PageRequest(page_size=500, page_token=token)),
            timeout=5,
        )
        out += [c for c in reply.cases if c.channel == CS.CHANNEL_UPLOAD]
        token = reply.next_page_token
        if not token:
            return out


def _route(clients: NodeClients, case_id: str) -> routing_pb2.Route | None:
    try:
        return clients.routing.GetRoute(routing_pb2.GetRouteRequest(case_id=case_id), timeout=5)
    except grpc.RpcError:
        return None


def decide_all(clients: NodeClients, case_number: str, count: int) -> None:
    """Every department of the case approves."""
    for task in clients.wait_tasks(case_number, count=count, timeout=30):
        clients.decide(task)


def test_a_district_matter_from_the_township_is_decided_at_the_district_and_comes_back(tree: Tree) -> None:
    town, district = tree.clients[TOWNSHIP], tree.clients[DISTRICT]
    local = town.submit("CV-005")  # a township matter stays at the township
    assert local.case.status == CS.CASE_STATUS_ACCEPTED
    town.wait_tasks(local.case.case_number)
    child = town.submit("CV-004", name="李四")
    town.wait_case(child.case.case_number, CS.CASE_STATUS_FORWARDED)
    up = parent_case(district, child.case.case_id)
    assert (up.origin_center, up.channel, up.applicant.name) == (TOWNSHIP, CS.CHANNEL_UPLOAD, "李四")
    assert len(up.documents) == len(child.case.documents)
    decide_all(district, up.case_number, 1)
    done = town.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    assert done.outcome == CS.OUTCOME_APPROVED
    trail = town.timeline(child.case.case_number)
    assert trail.count("parent_result_received") == 1 and "case_uploaded" in trail
    sealed = district.approval.GetCaseDecision(
        approval_pb2.GetCaseDecisionRequest(case_number=up.case_number)
    )
    assert sealed.decision.center == DISTRICT
    assert district.approval.VerifySeal(approval_pb2.VerifySealRequest(sealed=sealed)).valid


def test_a_city_matter_goes_up_from_the_district_and_its_sealed_result_comes_back(tree: Tree) -> None:
    district, city = tree.clients[DISTRICT], tree.clients[CITY]
    child = district.submit("TR-001")
    route = wait_for(lambda: _route(district, child.case.case_id), what="the route")
    assert route.forwarded and route.decided_at_center == CITY
    up = parent_case(city, child.case.case_id)
    decide_all(city, up.case_number, 4)
    done = district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    assert done.outcome == CS.OUTCOME_APPROVED
    trail = district.timeline(child.case.case_number)
    assert (
        trail.index("case_forwarded") < trail.index("case_uploaded") < trail.index("parent_result_received")
    )
    listed = tree.status(DISTRICT).ListForwarded(
        interconnect_pb2.ListForwardedRequest(state="result_received")
    )
    assert child.case.case_id in {c.case_id for c in listed.cases}


def test_a_deemed_approval_at_the_city_reaches_the_district_as_such(tree: Tree) -> None:
    district, city = tree.clients[DISTRICT], tree.clients[CITY]
    child = district.submit("TR-001")
    up = parent_case(city, child.case.case_id)
    tasks = city.wait_tasks(up.case_number, count=4, timeout=30)
    for task in tasks[1:]:
        city.decide(task)
    city.approval.DeemApprove(approval_pb2.DeemApproveRequest(task_id=tasks[0].task_id), timeout=10)
    done = district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    assert done.outcome == CS.OUTCOME_DEEMED_APPROVED
    trail = district.timeline(child.case.case_number)
    assert "parent_task_deemed_approved" in trail and trail[-1] == "parent_result_received"


def test_a_province_matter_gets_the_city_preliminary_review_before_it_goes_up(tree: Tree) -> None:
    district, city, province = tree.clients[DISTRICT], tree.clients[CITY], tree.clients[PROVINCE]
    child = district.submit("KP-002")
    at_city = parent_case(city, child.case.case_id)
    tasks = city.wait_tasks(at_city.case_number, count=4, timeout=30)
    assert sorted(t.department for t in tasks) == ["DRC", "ENV", "LAND", "PLAN"]
    assert city.case(at_city.case_number).status == CS.CASE_STATUS_ROUTED
    assert not [c for c in uploads(province) if c.origin_case_id == at_city.case_id]  # not before the review
    for task in tasks:
        city.decide(task)
    at_province = parent_case(province, at_city.case_id)
    assert city.case(at_city.case_number).status == CS.CASE_STATUS_FORWARDED
    decide_all(province, at_province.case_number, 4)
    done = district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=40)
    assert done.outcome == CS.OUTCOME_APPROVED
    city_trail = city.timeline(at_city.case_number)
    assert city_trail.index("preliminary_review_passed") < city_trail.index("parent_result_received")
    assert city.case(at_city.case_number).status == CS.CASE_STATUS_CONCLUDED
    routed = [e for e in _entries(city, at_city.case_number) if e.kind == "case_routed"]
    assert routed and routed[0].summary_zh.startswith("本中心初审")


def _entries(clients: NodeClients, case_number: str) -> list[intake_pb2.TimelineEntry]:
    reply = clients.intake.GetTimeline(intake_pb2.GetCaseRequest(case_number=case_number), timeout=5)
    return list(reply.entries)


def test_a_refused_preliminary_review_is_the_answer_and_reads_as_a_preliminary_review(tree: Tree) -> None:
    district, city, province = tree.clients[DISTRICT], tree.clients[CITY], tree.clients[PROVINCE]
    child = district.submit("KP-002")
    at_city = parent_case(city, child.case.case_id)
    tasks = city.wait_tasks(at_city.case_number, count=4, timeout=30)
    for task in tasks[1:]:
        city.decide(task)
    city.decide(tasks[0], approval_pb2.VERDICT_REJECT, reasons=["选址不符合规划 / site not in the plan"])
    done = district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    assert done.outcome == CS.OUTCOME_REJECTED
    concluded = [e for e in _entries(city, at_city.case_number) if e.kind == "case_concluded"]
    assert [(e.summary_zh, e.summary_en) for e in concluded] == [
        ("初审结论:不予许可", "preliminary review: rejected")
    ]
    assert not [c for c in uploads(province) if c.origin_case_id == at_city.case_id]


def test_a_supplement_notice_goes_down_two_levels_and_the_answer_goes_back_up(tree: Tree) -> None:
    town, district, city = tree.clients[TOWNSHIP], tree.clients[DISTRICT], tree.clients[CITY]
    child = town.submit("TR-001")
    at_district = parent_case(district, child.case.case_id)
    at_city = parent_case(city, at_district.case_id)
    tasks = city.wait_tasks(at_city.case_number, count=4, timeout=30)
    for task in tasks[1:]:
        city.decide(task)
    item = CS.SupplementItem(material_code="EIA", reason="环评文件缺少附图 / figures missing")
    city.decide(tasks[0], approval_pb2.VERDICT_REQUEST_SUPPLEMENT, items=[item])
    asked = town.wait_case(child.case.case_number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED, timeout=30)
    assert [i.material_code for i in asked.open_supplement] == ["EIA"]
    assert district.case(at_district.case_number).status == CS.CASE_STATUS_SUPPLEMENT_REQUESTED
    doc = town.upload("EIA", b"%PDF-1.4 EIA with figures " + uuid.uuid4().bytes)
    town.intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(case_id=child.case.case_id, documents=[doc]), timeout=10
    )
    reopened = city.wait_tasks(at_city.case_number, count=1, timeout=30)
    assert reopened[0].department == tasks[0].department
    assert doc.digest in {d.digest for d in city.case(at_city.case_number).documents}
    city.decide(reopened[0])
    done = town.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=40)
    assert done.outcome == CS.OUTCOME_APPROVED
    assert town.timeline(child.case.case_number).count("parent_result_received") == 1


def test_a_withdrawal_at_the_district_withdraws_the_case_at_the_city_too(tree: Tree) -> None:
    district, city = tree.clients[DISTRICT], tree.clients[CITY]
    child = district.submit("TR-001")
    up = parent_case(city, child.case.case_id)
    city.wait_tasks(up.case_number, count=4, timeout=30)
    district.intake.WithdrawCase(
        intake_pb2.WithdrawCaseRequest(
            case_id=child.case.case_id, reason="不再需要", query_code=child.query_code
        ),
        timeout=10,
    )
    gone = city.wait_case(up.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    assert gone.outcome == CS.OUTCOME_WITHDRAWN
    wait_for(
        lambda: all(t.status == CS.TASK_STATUS_CANCELLED for t in city.tasks(up.case_number)),
        what="the city's tasks cancelled",
    )


def test_cases_submitted_while_the_parent_is_down_wait_then_arrive_exactly_once(tree: Tree) -> None:
    district, city = tree.clients[DISTRICT], tree.clients[CITY]
    tree.nodes[CITY].kill("intake")
    try:
        ids = [district.submit("TR-001").case.case_id for _ in range(5)]
        status = tree.status(DISTRICT)
        waiting = wait_for(
            lambda: (
                (r := status.ListForwarded(interconnect_pb2.ListForwardedRequest(state="waiting_to_upload")))
                and {c.case_id for c in r.cases if c.attempts >= 1} >= set(ids)
                and r
            ),
            timeout=30,
            what="cases waiting to upload after failed attempts",
        )
        assert all(c.age_seconds > 0 and c.last_error for c in waiting.cases if c.case_id in ids)
        assert not status.GetLink(interconnect_pb2.GetLinkRequest()).connected
        for case_id in ids:
            assert (
                district.intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id)).status
                == CS.CASE_STATUS_FORWARDED
            )
    finally:
        tree.nodes[CITY].restart("intake")
    for case_id in ids:
        parent_case(city, case_id, timeout=40)
    wait_for(lambda: tree.status(DISTRICT).GetLink(interconnect_pb2.GetLinkRequest()).connected, timeout=20)
    counts = {i: sum(1 for c in uploads(city) if c.origin_case_id == i) for i in ids}
    assert set(counts.values()) == {1}
    again = tree.raw_client(to=CITY, cert=tree.cert(DISTRICT)).UploadCase(
        interconnect_pb2.UploadCaseRequest(child_case_id=ids[0], matter_code="TR-001"), timeout=10
    )
    assert again.duplicate


def test_a_child_restarted_mid_stream_resumes_from_its_cursor_without_loss_or_duplicates(tree: Tree) -> None:
    district, city = tree.clients[DISTRICT], tree.clients[CITY]
    children = [district.submit("PL-001") for _ in range(6)]
    ups = [parent_case(city, c.case.case_id) for c in children]
    for up in ups[:2]:
        decide_all(city, up.case_number, 1)
    district.wait_case(children[0].case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    tree.nodes[DISTRICT].kill("intake")
    for up in ups[2:4]:  # results pile up in the city's feed while the district is down
        decide_all(city, up.case_number, 1)
    tree.nodes[DISTRICT].restart("intake")
    for up in ups[4:]:
        decide_all(city, up.case_number, 1)
    tree.nodes[DISTRICT].kill("intake")  # and once more while the last ones stream in
    tree.nodes[DISTRICT].restart("intake")
    for child in children:
        done = district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=40)
        assert done.outcome == CS.OUTCOME_APPROVED
        assert district.timeline(child.case.case_number).count("parent_result_received") == 1
    link = tree.status(DISTRICT).GetLink(interconnect_pb2.GetLinkRequest())
    assert link.parent_center == CITY and link.applied_cursor > 0


def test_wrong_certificates_and_other_centers_cases_are_refused(tree: Tree) -> None:
    district = tree.clients[DISTRICT]
    child_case_id = district.submit("TR-001").case.case_id
    parent_case(tree.clients[CITY], child_case_id)
    probe = interconnect_pb2.GetUploadedCaseRequest(child_case_id=child_case_id)
    assert (
        tree.raw_client(to=CITY, cert=tree.cert(DISTRICT))
        .GetUploadedCase(probe, timeout=10)
        .parent_case_number
    )
    for bad in (tree.cert(DISTRICT, self_signed=True), tree.cert(DISTRICT, expired=True)):
        with pytest.raises(grpc.RpcError) as err:
            tree.raw_client(to=CITY, cert=bad).GetUploadedCase(probe, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    with pytest.raises(grpc.RpcError) as err:  # the city's certificate is not the province's
        tree.raw_client(to=CITY, cert=tree.cert(DISTRICT), expect=PROVINCE).GetUploadedCase(probe, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as err:  # Zhongshan is a child of the city, but not this case's
        tree.raw_client(to=CITY, cert=tree.cert("210202")).GetUploadedCase(probe, timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    audit = tree.query(
        CITY, "SELECT center, method FROM intake_interconnect_audit WHERE child_case_id = $1", child_case_id
    )
    assert audit == [("210202", "GetUploadedCase")]
    chain = tree.query(
        CITY,
        "SELECT actor, action, detail::text FROM intake_audit WHERE subject = $1 ORDER BY seq",
        child_case_id,
    )  # every node-to-node call on the case, answered or refused, in the city's hash-chained audit log
    calls = [(actor, action, json.loads(str(detail))["allowed"]) for actor, action, detail in chain]
    assert calls == [
        (f"center:{DISTRICT}", "UploadCase", True),
        (f"center:{DISTRICT}", "GetUploadedCase", True),
        ("center:210202", "GetUploadedCase", False),
    ], calls
    verify = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify", "--service", "intake", "--database"]
        + [tree.nodes[CITY].database_url("intake")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and "intake:" in verify.stdout and "chain intact" in verify.stdout, verify
    with pytest.raises(grpc.RpcError) as err:  # the province is no child of the city
        tree.raw_client(to=CITY, cert=tree.cert(PROVINCE)).WatchResults(
            interconnect_pb2.WatchResultsRequest(), timeout=10
        ).next()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_rating_the_parent_cannot_take_is_refused_with_its_reason(tree: Tree) -> None:
    child_case_id = tree.clients[DISTRICT].submit("TR-001").case.case_id
    parent_case(tree.clients[CITY], child_case_id)
    own = tree.raw_client(to=CITY, cert=tree.cert(DISTRICT))

    def refused(stub: interconnect_pb2_grpc.InterconnectStub, **fields: Any) -> grpc.RpcError:
        req = interconnect_pb2.EvaluateCaseRequest(**({"child_case_id": child_case_id, "rating": 4} | fields))
        with pytest.raises(grpc.RpcError) as err:
            stub.EvaluateCase(req, timeout=10)
        return err.value

    early = refused(own, operation_id="early")
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION and "not concluded" in str(early.details())
    for fields in ({"rating": 0}, {"rating": 6}, {"tags": ["x" * 33]}, {"text": "字" * 2001}):
        assert refused(own, **fields).code() == grpc.StatusCode.INVALID_ARGUMENT, fields
    assert refused(own, child_case_id=str(uuid.uuid4())).code() == grpc.StatusCode.NOT_FOUND
    other = tree.raw_client(to=CITY, cert=tree.cert("210202"))  # a child of the city, but not this case's
    assert refused(other).code() == grpc.StatusCode.PERMISSION_DENIED

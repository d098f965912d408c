"""Federation with every service running: supervision, notification and the gateway of linked nodes.

Province > city > district as processes linked by mutual TLS (the province, a sink here, runs only the
core services). The city and the district run all five services; the district also its gateway. Both
send SMS to one fake SMS gateway (`services.fakesms`): what an applicant receives is read there.

- supervision at the child follows a forwarded case without clocks; the deciding node runs them;
- notification at the child tells the applicant the parent's decision (naming the parent), once,
  and passes on a supplement notice raised at the parent; two levels up (a province matter from the
  district) the letter and the notice name the province, not the city that passed them down;
- a preliminary review at the city runs its clocks there and tells the applicant "sent up";
- the district's `/staff/interconnect` page shows the link and the uploads waiting while the parent node
  is stopped, and the case goes up and comes back decided once it runs again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.interconnect.v1 import interconnect_pb2
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc
from services.cli.main import build_parser
from services.cli.node import free_port
from services.common.events import timestamp
from tests.e2e.test_authorization_matrix import Web
from tests.e2e.test_federation import CITY, DISTRICT, PROVINCE, Tree, decide_all, parent_case
from tests.harness import actor, pg_reachable, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
CS = common_pb2
ALL = ("routing", "intake", "approval", "supervision", "notification")
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in ("director.gjz", "admin.gjz", "clerk.gjz.plan")}
NOTIFY_ENV = {
    "ONESTOP_NOTIFY_POLL_S": "0.2",
    "ONESTOP_NOTIFY_RETRY_BASE_S": "0.2",
    "ONESTOP_NOTIFY_RETRY_MAX_S": "1",
}


@dataclass
class Federation:
    """The running tree and the fake SMS gateway both notification services send to."""

    tree: Tree
    sms_url: str
    channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)

    def _channel(self, center: str, service: str) -> grpc.Channel:
        key = (center, service)
        if key not in self.channels:
            self.channels[key] = grpc.insecure_channel(self.tree.nodes[center].address(service))
        return self.channels[key]

    def supervision(self, center: str) -> supervision_pb2_grpc.SupervisionServiceStub:
        """The supervision service of a node."""
        return supervision_pb2_grpc.SupervisionServiceStub(self._channel(center, "supervision"))

    def notification(self, center: str) -> notification_pb2_grpc.NotificationServiceStub:
        """The notification service of a node."""
        return notification_pb2_grpc.NotificationServiceStub(self._channel(center, "notification"))

    def clocks(self, center: str, case_number: str) -> supervision_pb2.GetClocksResponse | None:
        """What supervision at `center` shows of a case (None while it does not know it yet)."""
        try:
            return self.supervision(center).GetClocks(
                supervision_pb2.GetClocksRequest(case_number=case_number), timeout=5
            )
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def notice(self, center: str, case_number: str, kind: str) -> notification_pb2.Notice:
        """A written notice of a case (waits: it may be written a moment after the SMS went out)."""

        def probe() -> notification_pb2.Notice | None:
            try:
                return self.notification(center).GetNotice(
                    notification_pb2.GetNoticeRequest(case_number=case_number, kind=kind), timeout=5
                )
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise

        return wait_for(probe, what=f"the {kind} notice of {case_number} at {center}")

    def sms(self, phone: str) -> list[str]:
        """The texts the fake SMS gateway received for `phone`, in order."""
        with urllib.request.urlopen(f"{self.sms_url}/messages", timeout=5) as resp:  # noqa: S310 - loopback
            received: list[dict[str, Any]] = json.loads(resp.read())["messages"]
        return [m["text"] for m in received if m["to"] == phone]

    def web(self, username: str) -> Web:
        """A staff member signed in at the district's gateway."""
        web = Web(self.tree.nodes[DISTRICT].gateway_url)
        assert web.sign_in(username, PASSWORDS[username]).status == 303, username
        return web


def phone() -> str:
    """A mobile number nobody else in the module uses."""
    return f"139{uuid.uuid4().int % 10**8:08d}"


@pytest.fixture(scope="module")
def fed() -> Iterator[Federation]:
    """Province (core services) > city (all) > district (all, with its gateway), and the fake SMS gateway."""
    if not pg_reachable():
        pytest.skip("PostgreSQL not reachable")
    base = Path(tempfile.mkdtemp(prefix="onestop-fedsvc-"))
    tree = Tree(base=base, ca_dir=base / "ca")
    args = build_parser().parse_args(["certs", "init-ca", "--dir", str(tree.ca_dir)])
    assert args.func(args) == 0
    sms_port = free_port()
    sms_log = (base / "fakesms.log").open("wb")
    sms = subprocess.Popen(
        [sys.executable, "-m", "services.fakesms", "--port", str(sms_port), "--log", str(base / "sms.jsonl")],
        stdout=sms_log,
        stderr=subprocess.STDOUT,
    )
    sms_url = f"http://127.0.0.1:{sms_port}"
    accounts = base / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    notify = NOTIFY_ENV | {"ONESTOP_SMS_URL": f"{sms_url}/send"}
    try:
        tree.start(PROVINCE)
        tree.start(CITY, services=ALL, env=notify)
        tree.start(
            DISTRICT,
            services=ALL,
            gateway=True,
            env=notify
            | {
                "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
                "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
                "ONESTOP_GATEWAY_SIGN_IN_RATE": "1000/0.01",
            },
        )
        wait_for(lambda: _up(sms_url), timeout=20, what="the fake SMS gateway")
        fed = Federation(tree, sms_url)
        yield fed
        for channel in fed.channels.values():
            channel.close()
    finally:
        tree.stop()
        sms.terminate()
        sms.wait(10)
        sms_log.close()
        shutil.rmtree(base, ignore_errors=True)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except OSError:
        return False


def test_a_city_matter_runs_its_clocks_at_the_city_and_the_district_applicant_gets_the_letter_once(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    mobile = phone()
    child = district.submit("PL-001", phone=mobile)
    number = child.case.case_number
    here = wait_for(
        lambda: (r := fed.clocks(DISTRICT, number)) and r.forwarded_to == CITY and r,
        what="supervision at the district following the forwarded case",
    )
    assert here.case_status == "forwarded" and not here.clocks
    up = parent_case(city, child.case.case_id)
    above = wait_for(
        lambda: (r := fed.clocks(CITY, up.case_number)) and len(r.clocks) >= 2 and r,
        what="the city's case and task clocks",
    )
    assert all(c.state != CS.CLOCK_STATE_STOPPED for c in above.clocks) and not above.forwarded_to
    decide_all(city, up.case_number, 1)
    district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    done = wait_for(
        lambda: (r := fed.clocks(DISTRICT, number)) and r.case_status == "concluded" and r,
        what="the parent's outcome at the district's supervision",
    )
    assert (done.outcome, done.forwarded_to, len(done.clocks)) == (CS.OUTCOME_APPROVED, CITY, 0)
    stopped = wait_for(
        lambda: (
            (r := fed.clocks(CITY, up.case_number))
            and all(c.state == CS.CLOCK_STATE_STOPPED for c in r.clocks)
            and r
        ),
        what="the city's clocks stopped",
    )
    assert stopped.case_status == "concluded"
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        what="the decision letter and the evaluation invitation by SMS",
    )
    decisions = [t for t in letters if "准予许可" in t]
    assert len(decisions) == 1, letters
    assert f"经上级中心({CITY})审批" in decisions[0] and number in decisions[0]
    assert sum(1 for t in letters if "评价" in t) == 1, letters
    assert not [t for t in letters if up.case_number in t]  # the city does not text the district's applicant
    notify = fed.notification(DISTRICT)
    notice = fed.notice(DISTRICT, number, "decision")
    assert CITY in notice.html
    deliveries = notify.ListDeliveries(notification_pb2.ListDeliveriesRequest(case_number=number), timeout=5)
    sent = [(d.kind, d.channel) for d in deliveries.deliveries if d.kind == "decision"]
    assert sorted(sent).count(("decision", "sms")) == 1, sent
    inbox = wait_for(
        lambda: [
            m.kind
            for m in notify.ListInbox(
                notification_pb2.ListInboxRequest(case_number=number), timeout=5
            ).messages
            if m.kind == "decision"
        ],
        what="the decision in the applicant's web inbox",
    )
    assert inbox == ["decision"], inbox
    applicant = Web(fed.tree.nodes[DISTRICT].gateway_url)  # the applicant looks the case up at the district
    assert applicant.form("/track", {"number": number, "code": child.query_code}).status == 303
    page = applicant.get(f"/track/{number}")
    assert page.status == 200 and 'id="decision"' in page.text and "准予许可" in page.text


def _sent_up(fed: Federation, since: datetime | None = None) -> supervision_pb2.StatisticsRow:
    """The district's own row of its supervision statistics by center (since `since`, else all time)."""
    req = supervision_pb2.GetStatisticsRequest(group_by="center")
    if since is not None:
        getattr(req, "from").CopyFrom(timestamp(since))
    rows = fed.supervision(DISTRICT).GetStatistics(req, timeout=5).rows
    return next((r for r in rows if r.key == DISTRICT), supervision_pb2.StatisticsRow(key=DISTRICT))


def test_the_districts_statistics_count_the_cases_it_sent_up_and_what_the_city_decided(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    since = datetime.now(UTC)  # the earlier tests' cases were decided before (the same host's clock)
    waiting_before = _sent_up(fed).forwarded_waiting
    children = [district.submit("PL-001", phone=phone()) for _ in range(3)]
    ups = [parent_case(city, c.case.case_id) for c in children]
    decide_all(city, ups[0].case_number, 1)
    (task,) = city.wait_tasks(ups[1].case_number, timeout=30)
    city.decide(task, approval_pb2.VERDICT_REJECT, reasons=["规划条件不符 / planning conditions not met"])
    for child in children[:2]:
        district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    row = wait_for(
        lambda: (r := _sent_up(fed, since)) and (r.forwarded_approved, r.forwarded_rejected) == (1, 1) and r,
        what="the city's decisions in the district's statistics",
    )
    assert (row.forwarded, row.forwarded_withdrawn) == (3, 0)
    assert row.forwarded_waiting - waiting_before == 1  # the third, still at the city
    assert (row.accepted, row.concluded, row.on_time, row.overdue) == (
        0,
        0,
        0,
        0,
    )  # none is the district's own

    # The applicant withdraws the waiting one at the district: it leaves the waiting figure.
    district.intake.WithdrawCase(
        intake_pb2.WithdrawCaseRequest(
            case_id=children[2].case.case_id, reason="不再需要 / no longer needed"
        ),
        timeout=10,
    )
    row = wait_for(
        lambda: (r := _sent_up(fed, since)) and r.forwarded_withdrawn == 1 and r,
        what="the withdrawal in the district's statistics",
    )
    assert row.forwarded_waiting == waiting_before and row.forwarded == 3

    # The statistics page of the district's portal shows the same figures, apart from the departments'.
    page = Web(fed.tree.nodes[DISTRICT].gateway_url).get("/statistics")
    assert page.status == 200
    section = page.text.split('id="forwarded-stats"', 1)[1].split("</table>", 1)[0]
    assert "报上级中心决定的报件" in section and "上级准予" in section
    every = _sent_up(fed)
    cells = dict(re.findall(r"<tr><td>([^<]*)</td>((?:<td>\d+</td>)+)</tr>", section))
    [figures] = cells.values()  # the district's own row, under its name
    assert re.findall(r"\d+", figures) == [
        str(n)
        for n in (
            every.forwarded,
            every.forwarded_waiting,
            every.forwarded_approved,
            every.forwarded_rejected,
            every.forwarded_withdrawn,
        )
    ]


def _ratings(fed: Federation, center: str, since: datetime) -> dict[str, tuple[int, float]]:
    """(evaluations, average rating) by department in `center`'s statistics since `since`."""
    req = supervision_pb2.GetStatisticsRequest(group_by="department")
    getattr(req, "from").CopyFrom(timestamp(since))
    rows = fed.supervision(center).GetStatistics(req, timeout=5).rows
    return {r.key: (r.evaluations, r.avg_rating) for r in rows if r.evaluations}


def test_the_applicants_rating_at_the_district_counts_for_the_city_window_that_decided(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    since = datetime.now(UTC)
    child = district.submit("PL-001", phone=phone())
    number = child.case.case_number
    up = parent_case(city, child.case.case_id)
    (task,) = city.wait_tasks(up.case_number, timeout=30)
    city.decide(task)
    district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    wait_for(
        lambda: (r := fed.clocks(DISTRICT, number)) and r.case_status == "concluded",
        what="the parent's result at the district's supervision",
    )
    digest = hashlib.sha256(child.query_code.upper().encode()).hexdigest()

    def rate(rating: int) -> supervision_pb2.Evaluation:
        return fed.supervision(DISTRICT).SubmitEvaluation(
            supervision_pb2.SubmitEvaluationRequest(
                case_number=number,
                query_code_digest=digest,
                rating=rating,
                tags=["等候时间长"],
                text="窗口解释不清",
            ),
            timeout=5,
        )

    assert rate(2).rectification_opened  # the district opens its rectification of a bad review
    counted = wait_for(
        lambda: (r := _ratings(fed, CITY, since)).get(task.department) and r,
        what="the rating in the city's statistics of the department that decided",
    )
    assert counted[task.department] == (1, 2.0)
    wait_for(
        lambda: "evaluation_submitted" in city.timeline(up.case_number),
        what="the rating in the city's timeline",
    )
    rate(5)  # the follow-up, after the call back: it goes up too
    wait_for(
        lambda: city.timeline(up.case_number).count("evaluation_submitted") == 2,
        what="the follow-up rating recorded at the city",
    )
    assert _ratings(fed, CITY, since)[task.department] == (1, 2.0)  # the first rating is the one counted
    trail = wait_for(
        lambda: (t := district.timeline(number)) and t.count("evaluation_forwarded") == 2 and t,
        what="both ratings noted as passed on in the district's timeline",
    )
    assert trail.count("evaluation_submitted") == 2, trail
    assert _ratings(fed, DISTRICT, since).get(task.department) is None  # not a district window's decision


def test_a_supplement_raised_at_the_city_reaches_the_district_applicant_naming_the_city(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    mobile = phone()
    child = district.submit("PL-001", phone=mobile)
    number = child.case.case_number
    up = parent_case(city, child.case.case_id)
    (task,) = city.wait_tasks(up.case_number, timeout=30)
    item = CS.SupplementItem(material_code="SITE-PLAN", reason="比例尺不清 / scale unreadable")
    city.decide(task, approval_pb2.VERDICT_REQUEST_SUPPLEMENT, items=[item])
    district.wait_case(number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED, timeout=30)
    texts = wait_for(
        lambda: [t for t in fed.sms(mobile) if "补正" in t],
        what="the supplement notice by SMS at the district",
    )
    assert len(texts) == 1 and f"经上级中心({CITY})审查" in texts[0] and "SITE-PLAN" in texts[0], texts
    notice = fed.notice(DISTRICT, number, "supplement")
    assert CITY in notice.html and "SITE-PLAN" in notice.html
    asked = fed.clocks(DISTRICT, number)
    assert asked is not None and (asked.forwarded_to, len(asked.clocks)) == (CITY, 0)
    paused = wait_for(
        lambda: (
            (r := fed.clocks(CITY, up.case_number))
            and any(c.state == CS.CLOCK_STATE_PAUSED for c in r.clocks)
            and r
        ),
        what="the city's clocks paused for the supplement",
    )
    assert paused.case_status != "concluded"
    applicant = Web(fed.tree.nodes[DISTRICT].gateway_url)  # answers on the district's portal
    assert applicant.form("/track", {"number": number, "code": child.query_code}).status == 303
    page = applicant.get(f"/track/{number}")
    assert page.status == 200 and 'id="supplement-form"' in page.text and "比例尺不清" in page.text
    pdf = b"%PDF-1.4 site plan at 1:500 " + uuid.uuid4().bytes
    answer = applicant.multipart(
        f"/track/{number}/supplement", {}, {"file_SITE-PLAN": ("site.pdf", "application/pdf", pdf)}
    )
    assert answer.status == 303 and "done=supplemented" in answer.location, answer.text[:500]
    (again,) = city.wait_tasks(up.case_number, timeout=30)
    city.decide(again)
    district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        what="the decision letter after the supplement",
    )
    assert len([t for t in letters if "准予许可" in t and f"({CITY})" in t]) == 1, letters
    assert len([t for t in letters if "补正" in t]) == 1, letters
    done = wait_for(
        lambda: (r := fed.clocks(DISTRICT, number)) and r.case_status == "concluded" and r,
        what="the city's outcome at the district's supervision after the supplement",
    )
    assert (done.outcome, len(done.clocks)) == (CS.OUTCOME_APPROVED, 0)


def test_an_extension_and_an_expert_review_at_the_city_reach_the_district_applicant_in_writing(
    fed: Federation,
) -> None:
    """The city leaves telling the applicant to the district that took the case in: an extension the
    city's head approved and an expert review the city's window started each reach the district's
    applicant once, as an SMS and a printable notice naming the city, and read on the district's page."""
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    mobile = phone()
    child = district.submit("PL-001", phone=mobile)
    number = child.case.case_number
    up = parent_case(city, child.case.case_id)
    (task,) = city.wait_tasks(up.case_number, timeout=30)
    clerk = actor("clerk.plan", "window_clerk", "PLAN", center=CITY)
    ask = city.approval.RequestExtension(
        approval_pb2.RequestExtensionRequest(
            task_id=task.task_id, days=5, reason="需现场踏勘 / a site survey is needed", by=clerk
        ),
        timeout=5,
    )
    city.approval.DecideExtension(
        approval_pb2.DecideExtensionRequest(
            extension_id=ask.extension_id,
            approve=True,
            by=actor("head.plan", "department_head", "PLAN", center=CITY),
        ),
        timeout=5,
    )
    review = city.approval.StartSpecialProcedure(
        approval_pb2.StartSpecialProcedureRequest(
            task_id=task.task_id,
            procedure="expert_review",
            reason="需组织专家论证结构安全",
            expected_days=10,
            by=clerk,
        ),
        timeout=5,
    )
    texts = wait_for(
        lambda: (
            (t := fed.sms(mobile)) and any("专家评审" in x for x in t) and any("延长" in x for x in t) and t
        ),
        what="the extension and the expert review by SMS at the district",
    )
    extended = [t for t in texts if "延长5个工作日" in t]
    assert len(extended) == 1 and f"上级中心({CITY})" in extended[0] and number in extended[0], texts
    reviewed = [t for t in texts if "专家评审" in t]
    assert len(reviewed) == 1 and f"上级中心({CITY})" in reviewed[0] and "10个工作日" in reviewed[0], texts
    assert not [t for t in texts if up.case_number in t]  # the city does not text the district's applicant
    assert CITY in fed.notice(DISTRICT, number, "extension").html
    letter = fed.notice(DISTRICT, number, "special_procedure").html
    assert CITY in letter and "第四十五条" in letter and "需组织专家论证结构安全" in letter
    city.approval.EndSpecialProcedure(
        approval_pb2.EndSpecialProcedureRequest(
            procedure_id=review.procedure_id, result="结构安全", by=clerk
        ),
        timeout=5,
    )
    by_number = intake_pb2.GetCaseRequest(case_number=number)
    kinds = wait_for(
        lambda: (
            (k := [e.kind for e in district.intake.GetTimeline(by_number, timeout=5).entries])
            and "parent_special_procedure_ended" in k
            and k
        ),
        what="the end of the expert review on the district's timeline",
    )
    assert {"parent_extension_approved", "parent_special_procedure_started"} <= set(kinds), kinds
    (again,) = city.wait_tasks(up.case_number, timeout=30)
    city.decide(again)
    district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        what="the decision letter after the expert review",
    )
    assert len([t for t in letters if "专家评审" in t]) == 1, letters  # the end is not texted
    assert len([t for t in letters if "准予许可" in t]) == 1, letters
    applicant = Web(fed.tree.nodes[DISTRICT].gateway_url)
    assert applicant.form("/track", {"number": number, "code": child.query_code}).status == 303
    page = applicant.get(f"/track/{number}")
    assert page.status == 200 and "专家评审" in page.text, page.text[:2000]


def test_a_province_matter_runs_the_preliminary_review_clocks_at_the_city_and_is_sent_up(
    fed: Federation,
) -> None:
    city, province = fed.tree.clients[CITY], fed.tree.clients[PROVINCE]
    mobile = phone()
    applied = city.submit("KP-002", phone=mobile)
    number = applied.case.case_number
    tasks = city.wait_tasks(number, count=4, timeout=30)
    running = wait_for(
        lambda: (r := fed.clocks(CITY, number)) and len(r.clocks) >= 5 and r,
        what="the preliminary review's clocks at the city",
    )
    assert running.forwarded_to == PROVINCE and running.case_status != "forwarded"
    assert all(c.state != CS.CLOCK_STATE_STOPPED for c in running.clocks)
    listed = fed.tree.status(CITY).ListForwarded(  # what /staff/interconnect lists as "in review here"
        interconnect_pb2.ListForwardedRequest(state="preliminary_review"), timeout=5
    )
    assert applied.case.case_id in {c.case_id for c in listed.cases}
    for task in tasks:
        city.decide(task)
    parent_case(province, applied.case.case_id)
    listed = fed.tree.status(CITY).ListForwarded(
        interconnect_pb2.ListForwardedRequest(state="preliminary_review"), timeout=5
    )
    assert applied.case.case_id not in {c.case_id for c in listed.cases}
    passed = wait_for(
        lambda: (
            (r := fed.clocks(CITY, number)) and all(c.state == CS.CLOCK_STATE_STOPPED for c in r.clocks) and r
        ),
        what="the preliminary review's clocks stopped",
    )
    assert (passed.case_status, passed.forwarded_to) == ("forwarded", PROVINCE)
    texts = wait_for(
        lambda: [t for t in fed.sms(mobile) if "初审" in t],
        what="the 'sent up' message to the city applicant",
    )
    assert len(texts) == 1 and "已上报上级中心" in texts[0], texts
    assert not [t for t in fed.sms(mobile) if "准予许可" in t or "已办结" in t]
    told = fed.notification(CITY).ListDeliveries(
        notification_pb2.ListDeliveriesRequest(case_number=number), timeout=5
    )
    kinds = {d.kind for d in told.deliveries}
    assert "preliminary_review_passed" in kinds and not kinds & {"decision", "evaluation_invitation"}, kinds
    at_province = parent_case(province, applied.case.case_id)
    decide_all(province, at_province.case_number, 4)
    city.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    done = wait_for(
        lambda: (r := fed.clocks(CITY, number)) and r.case_status == "concluded" and r,
        what="the province's outcome at the city's supervision",
    )
    assert (done.outcome, done.forwarded_to) == (CS.OUTCOME_APPROVED, PROVINCE)
    assert all(c.state == CS.CLOCK_STATE_STOPPED for c in done.clocks) and len(done.clocks) == 5
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        what="the province's decision letter at the city",
    )
    decisions = [t for t in letters if "准予许可" in t]
    assert len(decisions) == 1 and f"经上级中心({PROVINCE})审批" in decisions[0], letters


def test_a_province_matter_from_the_district_gets_a_letter_naming_the_province_that_decided(
    fed: Federation,
) -> None:
    district, city, province = (fed.tree.clients[c] for c in (DISTRICT, CITY, PROVINCE))
    mobile = phone()
    child = district.submit("KP-002", phone=mobile)
    number = child.case.case_number
    at_city = parent_case(city, child.case.case_id)
    reviewing = wait_for(
        lambda: (r := fed.clocks(CITY, at_city.case_number)) and len(r.clocks) == 5 and r,
        what="the city's preliminary review clocks of the uploaded case",
    )
    assert all(c.state != CS.CLOCK_STATE_STOPPED for c in reviewing.clocks)
    decide_all(city, at_city.case_number, 4)  # the city's preliminary review passes
    at_province = parent_case(province, at_city.case_id)
    passed = wait_for(
        lambda: (r := fed.clocks(CITY, at_city.case_number)) and r.case_status == "forwarded" and r,
        what="the city's review passed",
    )
    assert all(c.state == CS.CLOCK_STATE_STOPPED for c in passed.clocks) and passed.forwarded_to == PROVINCE
    decide_all(province, at_province.case_number, 4)
    done = district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=40)
    assert done.outcome == CS.OUTCOME_APPROVED
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        what="the decision letter at the district",
    )
    decisions = [t for t in letters if "准予许可" in t]
    assert len(decisions) == 1 and f"经上级中心({PROVINCE})审批" in decisions[0], letters
    assert not [t for t in letters if "初审" in t]  # the city's review is not the district applicant's news
    notice = fed.notice(DISTRICT, number, "decision")
    assert f"({PROVINCE})" in notice.html and f"({CITY})" not in notice.html
    here = wait_for(  # the district's supervision learns of the conclusion from its intake's event
        lambda: (r := fed.clocks(DISTRICT, number)) and r.case_status == "concluded" and r,
        what="the conclusion at the district's supervision",
    )
    assert (here.case_status, here.outcome, len(here.clocks)) == (
        "concluded",
        CS.OUTCOME_APPROVED,
        0,
    )
    above = wait_for(
        lambda: (r := fed.clocks(CITY, at_city.case_number)) and r.case_status == "concluded" and r,
        what="the province's outcome at the city",
    )
    assert above.outcome == CS.OUTCOME_APPROVED and len(above.clocks) == 5


def test_a_supplement_raised_at_the_province_reaches_the_district_applicant_naming_the_province(
    fed: Federation,
) -> None:
    district, city, province = (fed.tree.clients[c] for c in (DISTRICT, CITY, PROVINCE))
    mobile = phone()
    child = district.submit("KP-002", phone=mobile)
    at_city = parent_case(city, child.case.case_id)
    decide_all(city, at_city.case_number, 4)
    at_province = parent_case(province, at_city.case_id)
    tasks = province.wait_tasks(at_province.case_number, count=4, timeout=30)
    for task in tasks[1:]:  # the one-time notice goes out once every department has spoken
        province.decide(task)
    item = CS.SupplementItem(material_code="OPINIONS", reason="环评批复缺页 / a page is missing")
    province.decide(tasks[0], approval_pb2.VERDICT_REQUEST_SUPPLEMENT, items=[item])
    district.wait_case(child.case.case_number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED, timeout=30)
    texts = wait_for(
        lambda: [t for t in fed.sms(mobile) if "补正" in t],
        what="the supplement notice at the district",
    )
    assert len(texts) == 1 and f"经上级中心({PROVINCE})审查" in texts[0] and "OPINIONS" in texts[0], texts


def test_the_letter_comes_once_when_the_district_notification_restarts_as_the_result_arrives(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    mobile = phone()
    child = district.submit("PL-001", phone=mobile)
    up = parent_case(city, child.case.case_id)
    (task,) = city.wait_tasks(up.case_number, timeout=30)
    wait_for(lambda: fed.sms(mobile), what="the acceptance SMS")  # notification has this case's applicant
    fed.tree.nodes[DISTRICT].kill("notification")
    try:
        city.decide(task)
        district.wait_case(child.case.case_number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    finally:
        fed.tree.nodes[DISTRICT].restart("notification")
    letters = wait_for(
        lambda: (t := fed.sms(mobile)) and any("评价" in x for x in t) and t,
        timeout=30,
        what="the letter after the restart",
    )
    assert len([t for t in letters if "准予许可" in t]) == 1, letters
    assert len([t for t in letters if "评价" in t]) == 1, letters


def _interconnect(web: Web) -> str:
    page = web.get("/staff/interconnect")
    assert page.status == 200, page.text[:300]
    return page.text


def _waiting(page: str) -> str:
    found = re.search(r'<table class="list" id="waiting">(.*?)</table>', page, re.S)
    assert found, page[:500]
    return found.group(1)


def test_the_district_link_page_shows_the_uploads_waiting_while_the_city_node_is_stopped(
    fed: Federation,
) -> None:
    district, city = fed.tree.clients[DISTRICT], fed.tree.clients[CITY]
    director, admin = fed.web("director.gjz"), fed.web("admin.gjz")
    page = wait_for(
        lambda: 'id="link-state" class="ok"' in (p := _interconnect(director)) and p,
        what="the link shown open",
    )
    assert CITY in page
    clerk = fed.web("clerk.gjz.plan").get("/staff/interconnect")
    assert clerk.status == 403
    fed.tree.nodes[CITY].stop()  # the whole city node: its services, then its NATS
    try:
        child = district.submit("PL-001", phone=phone())
        number = child.case.case_number
        page = wait_for(
            lambda: number in _waiting(p := _interconnect(director)) and 'class="level-red"' in p and p,
            timeout=30,
            what="the case waiting and the link down on the page",
        )
        assert 'id="link-alarm"' in page
        detail = director.get(f"/staff/cases/{number}")  # the waiting list links to the case
        assert detail.status == 200 and number in detail.text, detail.text[:500]
        counts = _interconnect(admin)
        assert number not in counts and re.search(r'id="link-waiting">[1-9]', counts), counts[-2000:]
    finally:
        fed.tree.nodes[CITY].start()  # same ports, database and JetStream store
    parent_case(city, child.case.case_id, timeout=40)
    decide_all(city, parent_case(city, child.case.case_id).case_number, 1)  # the restarted city works
    district.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=30)
    drained = wait_for(
        lambda: (
            'id="link-state" class="ok"' in (p := _interconnect(director)) and number not in _waiting(p) and p
        ),
        timeout=30,
        what="the waiting upload drained and the link open again",
    )
    assert 'id="link-alarm"' not in drained

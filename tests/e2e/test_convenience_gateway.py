"""The convenience console over a real town node (210211101) and its gateway: fees, assignment, delivery.

A fee collector records a fee and prints its receipt, refunds part of it and reconciles the day twice (one
balances, one does not and warns the director), then prints the day's reconciliation report; a liaison
officer assigns an agent to a case handed over from a village service point; the agent records the
delivery of the decided result; agents answer the supplement notices of the cases they carry (one raised
by pre-review, one by a department during review) and the cases move on, while another agent is refused.
Everything through the pages, as staff use them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.intake.v1 import convenience_pb2_grpc, intake_pb2
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from services.cli.node import Node
from tests.e2e.test_authorization_matrix import Db, Reply, Web
from tests.harness import NodeClients, wait_for

pytestmark = pytest.mark.e2e
TOWN = "210211101"
USERS = ("fee1", "fee2", "liaison1", "agent1", "agent2", "director.ycz")
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in USERS}
RECEIPT = re.compile(rf"receipt=({TOWN}-\d{{4}}-\d{{6}})")
REPORT = re.compile(r'id="print-report" href="(/staff/fees/report\?day=[0-9-]+&amp;id=\d+)"')
PDF = b"%PDF-1.4\n% convenience test\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64 + b"\xff\xd9"


@dataclass
class Town:
    """The running town node, its gRPC clients and a signed-in browser per staff member."""

    node: Node
    c: NodeClients
    conv: convenience_pb2_grpc.ConvenienceServiceStub
    notes: notification_pb2_grpc.NotificationServiceStub
    db: Db

    def web(self, username: str) -> Web:
        """A browser signed in as `username`."""
        web = Web(self.node.gateway_url)
        assert web.sign_in(username, PASSWORDS[username]).status == 303, username
        return web


@pytest.fixture(scope="module")
def town(
    module_node_factory: Callable[..., Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Town]:
    accounts = tmp_path_factory.mktemp("conv-gw") / "accounts.json"
    accounts.write_text(json.dumps(PASSWORDS), encoding="utf-8")
    node = module_node_factory(
        center=TOWN,
        level="township",
        gateway=True,
        env={
            "ONESTOP_DEMO_ACCOUNTS_FILE": str(accounts),
            "ONESTOP_SESSION_SECRET": uuid.uuid4().hex * 2,
            "ONESTOP_GATEWAY_SIGN_IN_RATE": "1000/0.01",
        },
    )
    c = NodeClients.of(node)
    db = Db(node.config.database)
    yield Town(
        node,
        c,
        convenience_pb2_grpc.ConvenienceServiceStub(grpc.insecure_channel(node.address("intake"))),
        notification_pb2_grpc.NotificationServiceStub(grpc.insecure_channel(node.address("notification"))),
        db,
    )
    db.close()
    c.close()


def today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def test_a_fee_collector_collects_refunds_and_reconciles_through_the_pages(town: Town) -> None:
    fee2 = town.web("fee2")
    fee = {
        "matter_code": "CV-006",
        "fee_code": "ID-CARD",
        "fee_kind": "administrative",
        "amount": "20.00",
        "payer": "孙小梅",
        "method": "cash",
    }
    collected = fee2.form("/staff/fees/collect", fee)
    assert collected.status == 303, collected.text[-400:]
    found = RECEIPT.search(collected.location)
    assert found, collected.location
    receipt = found.group(1)
    page = fee2.get(collected.location.split("#")[0])
    assert (
        page.status == 200 and 'id="receipt"' in page.text and receipt in page.text and "¥20.00" in page.text
    )
    refused = fee2.form("/staff/fees/collect", {**fee, "amount": "0"})
    assert refused.status == 400 and "zero" in refused.text
    refund = fee2.form("/staff/fees/refund", {"receipt_number": receipt, "amount": "5", "reason": "多收"})
    assert refund.status == 303
    too_much = fee2.form("/staff/fees/refund", {"receipt_number": receipt, "amount": "15.01", "reason": "x"})
    assert too_much.status == 409 and "exceeds what remains refundable" in too_much.text
    balanced = fee2.form("/staff/fees/reconcile", {"day": today(), "declared": "15.00"})
    assert balanced.status == 200 and 'id="reconcile-balanced"' in balanced.text
    short = fee2.form("/staff/fees/reconcile", {"day": today(), "declared": "14.00"})
    assert short.status == 200 and 'id="reconcile-flagged"' in short.text and "-1.00" in short.text

    def warned() -> list[notification_pb2.InboxMessage]:
        inbox = town.notes.ListInbox(notification_pb2.ListInboxRequest(recipient="staff:director.ycz"))
        return [m for m in inbox.messages if m.kind == "fee_reconciliation_failed" and "fee2" in m.title]

    (warning,) = wait_for(warned, what="the director's warning")
    assert "差额 -1.00 元" in warning.body
    assert town.web("liaison1").get("/staff/fees").status == 403


def test_a_liaison_assigns_an_agent_and_the_agent_records_the_delivery(town: Town) -> None:
    agent1 = common_pb2.Actor(username="agent1", role="agent", center=TOWN)
    liaison = common_pb2.Actor(username="liaison1", role="liaison_officer", center=TOWN)
    taken = town.conv.TakeMatter(
        pb.TakeMatterRequest(
            service_point="210211101201",
            agent=agent1,
            resident=common_pb2.Applicant(kind=common_pb2.APPLICANT_KIND_PERSON, name="王秀英"),
            matter_code="CV-004",
            documents=town.c.complete_documents("CV-004"),
        ),
        timeout=10,
    )
    number = town.conv.HandOver(
        pb.HandOverRequest(agency_id=taken.agency_id, received_by=liaison), timeout=10
    ).case.case_number
    officer = town.web("liaison1")
    assert officer.form("/staff/carried/assign", {"case_number": number, "agent": "fee1"}).status == 400
    assigned = officer.form("/staff/carried/assign", {"case_number": number, "agent": "agent2"})
    assert assigned.status == 303, assigned.text[-400:]
    carrier = town.web("agent2")
    page = carrier.get("/staff/carried")
    assert page.status == 200 and number in page.text
    assert carrier.get(f"/staff/cases/{number}").status == 200
    for task in town.c.wait_tasks(number):
        town.c.decide(task)
    town.c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED)
    assert 'id="undelivered"' in (listed := officer.get("/staff/carried")).text and number in listed.text
    other = town.web("agent1")  # took the matter, but agent2 carries it now
    delivery = {"case_number": number, "method": "handed_over", "receiver_name": "王秀英"}
    assert other.form("/staff/carried/deliver", delivery).status == 403
    done = carrier.form("/staff/carried/deliver", delivery)
    assert done.status == 303 and done.location == "/staff/carried?done=delivered"
    again = carrier.form("/staff/carried/deliver", delivery)
    assert again.status == 409 and "already delivered" in again.text
    wait_for(lambda: "case_delivered" in town.c.timeline(number), what="the delivery on the timeline")


def test_the_collector_prints_the_days_reconciliation_report_with_its_entries_and_totals(town: Town) -> None:
    fee1 = town.web("fee1")
    fee = {"matter_code": "CV-005", "fee_kind": "other", "payer": "周大姐", "method": "cash"}
    receipts = []
    for amount in ("30.00", "12.50"):
        collected = fee1.form("/staff/fees/collect", {**fee, "amount": amount, "fee_code": "CONTRIBUTION"})
        assert collected.status == 303, collected.text[-400:]
        found = RECEIPT.search(collected.location)
        assert found, collected.location
        receipts.append(found.group(1))
    done = fee1.form("/staff/fees/reconcile", {"day": today(), "declared": "42.50"})
    assert done.status == 200 and 'id="reconcile-balanced"' in done.text
    link = REPORT.search(done.text)
    assert link, done.text[-600:]
    path = link.group(1).replace("&amp;", "&")
    assert path in fee1.get(f"/staff/fees?day={today()}").text.replace("&amp;", "&")
    report = fee1.get(path)
    assert report.status == 200 and report.headers["Content-Type"].startswith("text/html")
    assert (
        report.text.startswith("<!DOCTYPE html>") and "收费日对账单 Daily fee reconciliation" in report.text
    )
    assert all(r in report.text for r in receipts) and "周大姐" in report.text
    assert "应收 Expected: <b>42.50</b>" in report.text and "平衡 balanced" in report.text
    assert "default-src 'none'" in report.headers["Content-Security-Policy"]
    assert fee1.get(f"/staff/fees/report?day={today()}").text == report.text  # the latest of one's own
    director = town.web("director.ycz")
    assert director.get(path).text == report.text
    assert director.get(f"/staff/fees/report?day={today()}&collector=fee1").text == report.text
    assert director.get("/staff/fees/report?day=2025-02-30").status == 400
    unreconciled = director.get("/staff/fees/report?day=2020-01-06")
    assert unreconciled.status == 404 and "reconcile the day first" in unreconciled.text
    # fee2 may print only fee2's reports; a liaison officer no fee report at all. Both refusals audited.
    for username in ("fee2", "liaison1"):
        refused = town.web(username).get(path, action="view_fee_report")
        assert refused.status == 403 and '<p class="error" role="alert">' in refused.text, username
        (rec,) = town.db.audit(refused.request_id)
        assert (rec["actor"], rec["action"], rec["detail"]["outcome"]) == (
            username,
            "view_fee_report",
            "refused",
        )


def _answer(web: Web, case_id: str, files: dict[str, tuple[str, str, bytes]]) -> Reply:
    return web.multipart(f"/staff/carried/{case_id}/supplement", {}, files, action="answer_supplement")


def _documents(town: Town, case_id: str) -> list[tuple[str, str]]:
    case = town.c.intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id), timeout=5)
    return sorted((d.material_code, d.digest) for d in case.documents)


def test_the_carrying_agent_answers_a_pre_review_notice_and_the_case_is_accepted(town: Town) -> None:
    agent1 = common_pb2.Actor(username="agent1", role="agent", center=TOWN)
    liaison = common_pb2.Actor(username="liaison1", role="liaison_officer", center=TOWN)
    taken = town.conv.TakeMatter(
        pb.TakeMatterRequest(
            service_point="210211101201",
            agent=agent1,
            resident=common_pb2.Applicant(kind=common_pb2.APPLICANT_KIND_PERSON, name="陈桂兰"),
            matter_code="CV-004",
            documents=[town.c.upload("APPLICATION"), town.c.upload("HOUSEHOLD")],
        ),
        timeout=10,
    )
    handed = town.conv.HandOver(
        pb.HandOverRequest(agency_id=taken.agency_id, received_by=liaison), timeout=10
    )
    case_id = handed.case.case_id
    assert handed.case.status == common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED and not handed.case.case_number
    assert sorted(i.material_code for i in handed.supplement) == ["ID", "INCOME", "REVIEW"]
    page_path = f"/staff/carried/{case_id}/supplement"

    carrier = town.web("agent1")
    assert page_path in carrier.get("/staff/carried").text
    notice = carrier.get(page_path)
    assert notice.status == 200 and 'id="answer-supplement"' in notice.text
    assert all(f'name="file_{m}"' in notice.text for m in ("ID", "INCOME", "REVIEW"))
    assert "家庭收入证明" in notice.text and "Proof of household income" not in notice.text
    assert "Proof of household income" in carrier.get(f"{page_path}?lang=en").text
    assert town.web("liaison1").get(page_path).status == 200  # the center's liaison officers may act too

    # Another agent of the town does not carry it: refused, audited, nothing changes.
    before = _documents(town, case_id)
    other = town.web("agent2")
    assert other.get(page_path).status == 403
    refused = _answer(other, case_id, {"file_ID": ("id.pdf", "application/pdf", PDF)})
    assert refused.status == 403 and "You do not carry this case" in refused.text
    (rec,) = town.db.audit(refused.request_id)
    assert (rec["actor"], rec["action"], rec["subject"], rec["detail"]["outcome"]) == (
        "agent2",
        "answer_supplement",
        case_id,
        "refused",
    )
    assert town.web("fee1").get(page_path).status == 403  # a fee collector carries no case
    nothing = _answer(carrier, case_id, {})
    assert nothing.status == 400 and "Upload the documents the notice asks for" in nothing.text
    assert _documents(town, case_id) == before

    answered = _answer(
        carrier,
        case_id,
        {f"file_{m}": (f"{m}.pdf", "application/pdf", PDF + m.encode()) for m in ("ID", "INCOME", "REVIEW")},
    )
    assert answered.status == 303 and answered.location == f"{page_path}?done=supplemented", answered.text[
        -400:
    ]
    case = town.c.intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id), timeout=5)
    assert (
        case.status in (common_pb2.CASE_STATUS_ACCEPTED, common_pb2.CASE_STATUS_ROUTED) and case.case_number
    )
    assert {m for m, _ in _documents(town, case_id)} == {"APPLICATION", "HOUSEHOLD", "ID", "INCOME", "REVIEW"}
    assert set(before) <= set(_documents(town, case_id))  # nothing already accepted is lost
    shown = carrier.get(answered.location)
    assert 'id="done-supplemented"' in shown.text and case.case_number in shown.text
    entries = town.c.intake.GetTimeline(intake_pb2.GetCaseRequest(case_id=case_id), timeout=5).entries
    assert [e.actor for e in entries if e.kind == "case_supplemented"] == ["agent1"]  # R22: who answered
    again = _answer(carrier, case_id, {"file_ID": ("id.pdf", "application/pdf", PDF)})
    assert again.status == 409 and "no open supplement notice" in again.text
    (ok,) = town.db.audit(answered.request_id)
    assert (ok["actor"], ok["detail"]["outcome"], ok["detail"]["case_number"]) == (
        "agent1",
        "ok",
        case.case_number,
    )
    town.c.wait_tasks(case.case_number)  # accepted for real: routed to the department window


def test_an_agent_answers_a_departments_notice_and_the_case_goes_back_into_review(town: Town) -> None:
    carrier = town.web("agent2")
    files = {
        "file_ID": ("id.pdf", "application/pdf", PDF + b"id"),
        "file_HOUSEHOLD": ("hh.pdf", "application/pdf", PDF + b"hh"),
        "file_MARRIAGE": ("m.pdf", "application/pdf", PDF + b"m"),
        "file_PHOTO": ("photo.jpg", "image/jpeg", JPEG),
    }
    applied = carrier.multipart("/apply/CV-003", {"name": "高志强", "request_id": uuid.uuid4().hex}, files)
    assert applied.status == 200, applied.text[-500:]
    found = re.search(r'id="case-number"[^>]*>([^<]+)<', applied.text)
    assert found, applied.text[-500:]
    number = found.group(1).strip()
    (task,) = town.c.wait_tasks(number)
    item = common_pb2.SupplementItem(material_code="PHOTO", reason="照片须为近期免冠合影 / a recent photo")
    town.c.decide(task, approval_pb2.VERDICT_REQUEST_SUPPLEMENT, items=[item])
    case = town.c.wait_case(number, common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED)
    page_path = f"/staff/carried/{case.case_id}/supplement"
    assert page_path in carrier.get("/staff/carried").text
    notice = carrier.get(page_path)
    assert notice.status == 200 and "照片须为近期免冠合影" in notice.text

    before = _documents(town, case.case_id)
    assert town.web("agent1").get(page_path).status == 403
    wrong = _answer(carrier, case.case_id, {"file_PHOTO": ("photo.pdf", "application/pdf", PDF)})
    assert wrong.status == 415 and "accepts JPEG files only" in wrong.text
    big = JPEG[:-2] + b"\x00" * (2 * 1024 * 1024) + b"\xff\xd9"
    too_big = _answer(carrier, case.case_id, {"file_PHOTO": ("photo.jpg", "image/jpeg", big)})
    assert too_big.status == 413 and "larger than" in too_big.text
    assert _documents(town, case.case_id) == before
    assert town.c.case(number).status == common_pb2.CASE_STATUS_SUPPLEMENT_REQUESTED

    fresh = JPEG[:-2] + uuid.uuid4().bytes + b"\xff\xd9"
    answered = _answer(carrier, case.case_id, {"file_PHOTO": ("photo2.jpg", "image/jpeg", fresh)})
    assert answered.status == 303, answered.text[-400:]
    assert town.c.case(number).status == common_pb2.CASE_STATUS_ROUTED  # back with the departments
    (reopened,) = town.c.wait_tasks(number)
    assert reopened.task_id == task.task_id
    town.c.decide(reopened)
    assert town.c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED).outcome == common_pb2.OUTCOME_APPROVED
    assert "case_supplemented" in town.c.timeline(number)

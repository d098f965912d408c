"""The convenience console over a real town node (210211101) and its gateway: fees, assignment, delivery.

A fee collector records a fee and prints its receipt, refunds part of it and reconciles the day twice (one
balances, one does not and warns the director); a liaison officer assigns an agent to a case handed over
from a village service point; the agent records the delivery of the decided result. Everything through
the pages, as staff use them.
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

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.intake.v1 import convenience_pb2_grpc
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from services.cli.node import Node
from tests.e2e.test_authorization_matrix import Web
from tests.harness import NodeClients, wait_for

pytestmark = pytest.mark.e2e
TOWN = "210211101"
USERS = ("fee1", "fee2", "liaison1", "agent1", "agent2", "director.ycz")
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:10]}" for u in USERS}
RECEIPT = re.compile(rf"receipt=({TOWN}-\d{{4}}-\d{{6}})")


@dataclass
class Town:
    """The running town node, its gRPC clients and a signed-in browser per staff member."""

    node: Node
    c: NodeClients
    conv: convenience_pb2_grpc.ConvenienceServiceStub
    notes: notification_pb2_grpc.NotificationServiceStub

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
    yield Town(
        node,
        c,
        convenience_pb2_grpc.ConvenienceServiceStub(grpc.insecure_channel(node.address("intake"))),
        notification_pb2_grpc.NotificationServiceStub(grpc.insecure_channel(node.address("notification"))),
    )
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

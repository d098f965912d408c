"""Convenience service at a township node (R19–R22): agency, delivery, fees, petitions, staffing warning.

One Yingchengzi town node (210211101) on a shared test clock. A household-registration matter (CV-006) going
up to the district and back is in tests/e2e/test_convenience_federation.py.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest

from onestop.common.v1 import common_pb2
from onestop.intake.v1 import convenience_pb2 as pb
from onestop.intake.v1 import convenience_pb2_grpc
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc
from services.common.clock import FileClock
from services.common.events import timestamp
from tests.harness import NodeClients, wait_for

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
CS = common_pb2
TOWN = "210211101"


def staff(username: str, role: str) -> CS.Actor:
    """A Yingchengzi staff member as the gateway vouches for them."""
    return CS.Actor(username=username, display_name=username, role=role, center=TOWN)


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "now.json"
    FileClock.write(path, datetime(2025, 11, 3, 9, 0, tzinfo=SH))
    return path


@pytest.fixture(scope="module")
def node(module_node_factory, clock_file):
    return module_node_factory(
        center=TOWN,
        level="township",
        env={"ONESTOP_TEST_CLOCK_FILE": str(clock_file), "ONESTOP_SUPERVISION_TICK_S": "0"},
    )


@pytest.fixture(scope="module")
def c(node):
    clients = NodeClients.of(node)
    yield clients
    clients.close()


@pytest.fixture(scope="module")
def conv(node):
    return convenience_pb2_grpc.ConvenienceServiceStub(grpc.insecure_channel(node.address("intake")))


@pytest.fixture(scope="module")
def notes(node):
    return notification_pb2_grpc.NotificationServiceStub(grpc.insecure_channel(node.address("notification")))


@pytest.fixture(scope="module")
def sup(node):
    return supervision_pb2_grpc.SupervisionServiceStub(grpc.insecure_channel(node.address("supervision")))


def at(clock_file: Path, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    instant = datetime(year, month, day, hour, minute, tzinfo=SH)
    FileClock.write(clock_file, instant)
    return instant


def refused(call, code: grpc.StatusCode, text: str = "") -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert text in (info.value.details() or ""), info.value.details()
    return info.value.details() or ""


def test_village_agent_takes_a_minimum_allowance_application_through_to_delivery(c, conv, clock_file):
    at(clock_file, 2025, 11, 3, 9, 30)
    resident = CS.Applicant(kind=CS.APPLICANT_KIND_PERSON, name="王秀英", phone="13900002222")
    agent1, agent2, liaison1 = (
        staff("agent1", "agent"),
        staff("agent2", "agent"),
        staff("liaison1", "liaison_officer"),
    )
    docs = c.complete_documents("CV-004")
    take = pb.TakeMatterRequest(
        service_point="210211101201",
        agent=agent1,
        resident=resident,
        matter_code="CV-004",
        documents=docs,
        title="王秀英 低保申请",
    )
    refused(
        lambda: conv.TakeMatter(
            pb.TakeMatterRequest(
                service_point="210211101202", agent=agent1, resident=resident, matter_code="CV-004"
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "agent1 is not a agent of service point 210211101202",
    )
    taken = conv.TakeMatter(take)
    assert taken.state == "taken" and taken.agent.username == "agent1" and taken.resident_name == "王秀英"
    assert taken.service_point == "210211101201" and taken.taken_at.seconds
    assert [
        x.agency.agency_id for x in conv.ListAgentCases(pb.ListAgentCasesRequest(agent="agent1")).cases
    ] == [taken.agency_id]

    at(clock_file, 2025, 11, 3, 14, 0)
    handed = conv.HandOver(pb.HandOverRequest(agency_id=taken.agency_id, received_by=liaison1))
    number = handed.case.case_number
    assert number.startswith(f"{TOWN}-20251103-") and handed.query_code and not handed.supplement
    assert handed.agency.state == "handed_over" and handed.agency.received_by.username == "liaison1"
    assert handed.agency.handed_over_at.ToDatetime() > handed.agency.taken_at.ToDatetime()
    case = c.case(number)
    assert case.channel == CS.CHANNEL_AGENT
    again = conv.HandOver(pb.HandOverRequest(agency_id=taken.agency_id, received_by=liaison1))
    assert again.case.case_number == number  # a retried hand-over is the same case

    refused(
        lambda: conv.AssignAgent(
            pb.AssignAgentRequest(case_number=number, agent=agent2, by=staff("fee1", "liaison_officer"))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "fee1 is not a liaison_officer",
    )
    assigned = conv.AssignAgent(pb.AssignAgentRequest(case_number=number, agent=agent2, by=liaison1))
    assert assigned.state == "assigned" and assigned.full_process_agent.username == "agent2"
    assert assigned.assigned_by.username == "liaison1" and assigned.agent.username == "agent1"
    carried = conv.ListAgentCases(pb.ListAgentCasesRequest(agent="agent2")).cases
    assert [x.case.case_number for x in carried] == [number]
    assert not conv.ListAgentCases(pb.ListAgentCasesRequest(agent="agent1")).cases

    delivery = pb.RecordDeliveryRequest(
        case_number=number,
        method="handed_over",
        receiver_name="王秀英",
        by=agent2,
        confirmed_at=timestamp(at(clock_file, 2025, 11, 3, 15, 0)),
    )
    refused(lambda: conv.RecordDelivery(delivery), grpc.StatusCode.FAILED_PRECONDITION, "not concluded")
    for task in c.wait_tasks(number):
        c.decide(task)
    c.wait_case(number, CS.CASE_STATUS_CONCLUDED)

    at(clock_file, 2025, 11, 5, 15, 0)
    waiting = {u.case_number: u for u in conv.ListUndelivered(pb.ListUndeliveredRequest()).cases}
    assert waiting[number].full_process_agent == "agent2" and waiting[number].applicant_name == "王秀英"
    assert waiting[number].age_days >= 1.9
    delivery.confirmed_at.CopyFrom(timestamp(datetime(2025, 11, 5, 14, 50, tzinfo=SH)))
    done = conv.RecordDelivery(delivery)
    assert done.method == "handed_over" and done.receiver_name == "王秀英" and done.by.username == "agent2"
    refused(lambda: conv.RecordDelivery(delivery), grpc.StatusCode.ALREADY_EXISTS, "already delivered")
    assert number not in {u.case_number for u in conv.ListUndelivered(pb.ListUndeliveredRequest()).cases}
    wait_for(lambda: "case_delivered" in c.timeline(number), what="the delivery on the case timeline")


def test_a_delivery_needs_a_concluded_case_and_a_known_method(conv):
    by = staff("agent1", "agent")
    refused(
        lambda: conv.RecordDelivery(pb.RecordDeliveryRequest(method="posted", receiver_name="x", by=by)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "a delivery needs a case",
    )
    refused(
        lambda: conv.RecordDelivery(
            pb.RecordDeliveryRequest(
                case_number="nope",
                method="posted",
                receiver_name="x",
                by=by,
                confirmed_at=timestamp(datetime(2025, 11, 1, tzinfo=SH)),
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "no case nope",
    )
    refused(
        lambda: conv.RecordDelivery(
            pb.RecordDeliveryRequest(case_number="x", method="emailed", receiver_name="x", by=by)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "method must be one of",
    )


def _seq(receipt: str) -> int:
    return int(receipt.rsplit("-", 1)[1])


def test_fees_receipts_refund_and_daily_reconciliation(c, conv, notes, clock_file):
    at(clock_file, 2025, 11, 20, 10, 0)
    fee1, fee2 = staff("fee1", "fee_collector"), staff("fee2", "fee_collector")
    case_number = c.submit("CV-005").case.case_number

    def collect(amount: str, by: CS.Actor = fee1, **kw: str) -> pb.FeeEntry:
        fields = {
            "matter_code": "CV-006",
            "fee_code": "ID-CARD",
            "fee_kind": "administrative",
            "payer": "李四",
            "method": "cash",
            **kw,
        }
        return conv.CollectFee(pb.CollectFeeRequest(amount=amount, collector=by, **fields))

    first = collect(
        "80.00", matter_code="", case_number=case_number, fee_code="CONTRIBUTION", fee_kind="other"
    )
    assert first.receipt_number.startswith(f"{TOWN}-2025-") and first.amount == "80.00"
    assert first.case_number == case_number and first.matter_code == "CV-005" and first.day == "2025-11-20"
    for bad, why in [
        ("-5.00", "positive"),
        ("abc", "not a decimal"),
        ("1.005", "two decimals"),
        ("0", "zero"),
    ]:
        refused(lambda bad=bad: collect(bad), grpc.StatusCode.INVALID_ARGUMENT, why)
    refused(
        lambda: collect("5.00", method="cheque"), grpc.StatusCode.INVALID_ARGUMENT, "method must be one of"
    )
    refused(lambda: collect("5.00", by=staff("agent1", "fee_collector")), grpc.StatusCode.PERMISSION_DENIED)
    second = collect("20.00")
    fine = collect("200.50", by=fee2, fee_kind="fine", method="transfer", fee_code="")
    assert [_seq(x.receipt_number) for x in (first, second, fine)] == [
        _seq(first.receipt_number) + i for i in range(3)
    ]  # refused input consumed no number

    refund = conv.RefundFee(
        pb.RefundFeeRequest(receipt_number=first.receipt_number, amount="30.00", reason="多收", by=fee1)
    )
    assert refund.entry_kind == "refund" and refund.original_receipt == first.receipt_number
    assert _seq(refund.receipt_number) == _seq(fine.receipt_number) + 1
    refused(
        lambda: conv.RefundFee(
            pb.RefundFeeRequest(receipt_number=first.receipt_number, amount="50.01", reason="再退", by=fee1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "remains refundable of receipt",
    )
    refused(
        lambda: conv.VoidFee(pb.VoidFeeRequest(receipt_number=first.receipt_number, reason="x", by=fee1)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "cannot be voided",
    )
    voided = conv.VoidFee(pb.VoidFeeRequest(receipt_number=second.receipt_number, reason="开错", by=fee1))
    assert voided.entry_kind == "void" and voided.amount == "20.00"
    refused(
        lambda: conv.RefundFee(
            pb.RefundFeeRequest(receipt_number=second.receipt_number, amount="1.00", reason="x", by=fee1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    listed = conv.ListFees(pb.ListFeesRequest(day="2025-11-20")).entries
    assert [e.entry_kind for e in listed] == ["charge", "charge", "charge", "refund", "void"]
    assert {e.receipt_number: e.refundable for e in listed}[first.receipt_number] == "50.00"

    # fee1: 80 - 30 + 20 - 20 = 50.00 in hand: balances.
    ok = conv.Reconcile(pb.ReconcileRequest(day="2025-11-20", collector="fee1", declared="50.00", by=fee1))
    assert ok.balanced and not ok.flagged and ok.expected == "50.00" and ok.entries == 4
    assert ok.report_html.startswith("<!DOCTYPE html>") and first.receipt_number in ok.report_html
    # fee2 declares 200.00 of 200.50: flagged.
    short = conv.Reconcile(
        pb.ReconcileRequest(day="2025-11-20", collector="fee2", declared="200.00", by=fee2)
    )
    assert (
        short.flagged
        and not short.balanced
        and short.difference == "-0.50"
        and "DISCREPANCY" in short.report_html
    )

    def warned() -> list[notification_pb2.InboxMessage]:
        inbox = notes.ListInbox(notification_pb2.ListInboxRequest(recipient="staff:director.ycz")).messages
        return [m for m in inbox if m.kind == "fee_reconciliation_failed"]

    (warning,) = wait_for(warned, what="the discrepancy warning in the director's inbox")
    assert warning.title == "收费对账不符:2025-11-20 fee2"
    assert "差额 -0.50 元" in warning.body and f"对账记录 {short.id}" in warning.body
    center = conv.Reconcile(
        pb.ReconcileRequest(day="2025-11-20", declared="250.50", by=staff("director.ycz", "center_director"))
    )
    assert center.balanced and center.expected == "250.50" and center.collector == ""
    refused(
        lambda: conv.Reconcile(pb.ReconcileRequest(day="2025-13-01", declared="1", by=fee1)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_staffing_warning_names_the_street_short_of_liaison_officers_and_fee_collectors(conv):
    warnings = {w.center: w for w in conv.ListStaffingWarnings(pb.ListStaffingWarningsRequest()).warnings}
    assert "210211001" in warnings and TOWN not in warnings
    assert (warnings["210211001"].liaison_officers, warnings["210211001"].fee_collectors) == (1, 1)
    assert warnings["210211001"].minimum == 2


def clocks_of(sup, number: str, *, at_least: int = 0) -> list[CS.Clock]:
    """The case's clocks (empty until there are `at_least`); none while supervision has not seen the case."""
    try:
        found = list(sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    return found if len(found) >= at_least else []


def test_petitions_one_answered_on_time_one_overdue_is_warned(c, sup, clock_file):
    at(clock_file, 2025, 11, 24, 9, 0)  # Monday; CV-008 promises 10 working days
    answered = c.submit("CV-008", name="赵信访").case.case_number
    silent = c.submit("CV-008", name="钱纠纷").case.case_number
    for number in (answered, silent):
        wait_for(partial(clocks_of, sup, number, at_least=2), what=f"clocks of {number}")
    at(clock_file, 2025, 12, 1, 10, 0)
    (task,) = c.wait_tasks(answered)
    assert task.department == "PETITION"
    c.decide(task)
    assert c.wait_case(answered, CS.CASE_STATUS_CONCLUDED).outcome == CS.OUTCOME_APPROVED
    at(clock_file, 2025, 12, 10, 9, 0)  # past the tenth working day
    sup.Tick(supervision_pb2.TickRequest())
    clocks = sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=silent)).clocks
    assert any(k.task_id and k.state == CS.CLOCK_STATE_RED for k in clocks)

    def warned() -> set[str]:
        return {"clock_warned", "task_urged"} & set(c.timeline(silent))

    wait_for(warned, what="the warning on the timeline")
    done = sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=answered)).clocks
    assert all(k.state == CS.CLOCK_STATE_STOPPED for k in done)
    assert not {"clock_warned", "task_urged"} & set(c.timeline(answered))

"""A node as real processes: a case from submission to conclusion over gRPC, surviving a SIGKILL."""

from __future__ import annotations

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from tests.harness import NodeClients, wait_for

pytestmark = pytest.mark.e2e
CORE = ("routing", "intake", "approval")


def test_case_is_concluded_end_to_end_with_the_event_trail_in_order(node_factory) -> None:
    node = node_factory()
    for name in node.services:
        assert node.health(name) == "SERVING"
    c = NodeClients.of(node)
    reply = c.submit("TR-001")
    assert reply.case.status == common_pb2.CASE_STATUS_ACCEPTED
    assert reply.case.case_number.startswith("210200-")
    assert len(reply.query_code) == 8
    tasks = c.wait_tasks(reply.case.case_number, count=4)
    assert sorted(t.department for t in tasks) == ["ECON", "ENV", "FIRE", "SAFETY"]
    for task in tasks:
        c.decide(task)
    case = c.wait_case(reply.case.case_number, common_pb2.CASE_STATUS_CONCLUDED)
    assert case.outcome == common_pb2.OUTCOME_APPROVED
    trail = c.timeline(reply.case.case_number)
    assert trail[:3] == ["case_submitted", "case_accepted", "case_routed"]
    assert trail[-1] == "case_concluded"
    assert trail.count("task_opened") == 4 and trail.count("task_decided") == 4
    assert trail.index("task_decided") > max(i for i, k in enumerate(trail) if k == "task_opened")
    inbox = notification_pb2_grpc.NotificationServiceStub(grpc.insecure_channel(node.address("notification")))
    told = wait_for(
        lambda: [
            m.kind
            for m in inbox.ListInbox(
                notification_pb2.ListInboxRequest(recipient=f"case:{case.case_number}"), timeout=5
            ).messages
            if "decision" in m.kind
        ],
        what="the applicant's decision message",
    )
    assert told


def test_approval_killed_mid_way_still_concludes_the_case_exactly_once(node_factory) -> None:
    node = node_factory()
    c = NodeClients.of(node)
    number = c.submit("TR-001").case.case_number
    tasks = c.wait_tasks(number, count=4)
    c.decide(tasks[0])
    c.decide(tasks[1])
    node.kill("approval")
    node.restart("approval")
    c.close()
    c = NodeClients.of(node)
    for task in tasks[2:]:
        c.decide(task)
    case = c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED)
    assert case.outcome == common_pb2.OUTCOME_APPROVED
    wait_for(lambda: c.timeline(number).count("task_decided") == 4, what="all decisions on the timeline")
    trail = c.timeline(number)
    assert trail.count("case_concluded") == 1
    with pytest.raises(grpc.RpcError) as err:
        c.decide(tasks[0])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    sealed = c.approval.GetCaseDecision(approval_pb2.GetCaseDecisionRequest(case_number=number))
    assert c.approval.VerifySeal(approval_pb2.VerifySealRequest(sealed=sealed)).valid


def test_bad_input_gets_a_clear_status_and_the_process_stays_up(node_factory) -> None:
    node = node_factory(services=CORE)
    c = NodeClients.of(node)
    with pytest.raises(grpc.RpcError) as err:
        c.submit("NO-SUCH-MATTER", documents=[])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NO-SUCH-MATTER" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        c.intake.SubmitCase(intake_pb2.SubmitCaseRequest(matter_code="TR-001"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel = grpc.insecure_channel(node.address("intake"))
    raw = channel.unary_unary(
        "/onestop.intake.v1.IntakeService/SubmitCase",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\x12" + b"\xff\xff\xff\x7f" + b"x" * 16, timeout=5)  # a field claiming 256 MB
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    with pytest.raises(grpc.RpcError) as err:
        c.approval.DecideTask(approval_pb2.DecideTaskRequest(task_id="nope", verdict=1), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert all(node.health(s) == "SERVING" for s in CORE)
    assert c.submit("TR-001").case.status == common_pb2.CASE_STATUS_ACCEPTED


def test_node_runs_on_the_embedded_sqlite_default(node_factory) -> None:
    node = node_factory(sqlite=True, services=CORE)
    c = NodeClients.of(node)
    number = c.submit("PL-001").case.case_number
    (task,) = c.wait_tasks(number)
    c.decide(task, approval_pb2.VERDICT_REJECT, reasons=["用地性质不符 / land use does not match"])
    case = c.wait_case(number, common_pb2.CASE_STATUS_CONCLUDED)
    assert case.outcome == common_pb2.OUTCOME_REJECTED
    assert case.reasons == ["PLAN: 用地性质不符 / land use does not match"]

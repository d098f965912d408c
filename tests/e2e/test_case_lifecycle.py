"""The case lifecycle inside one center (issue 4), over real processes on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from tests.harness import NodeClients, actor, wait_for

pytestmark = pytest.mark.e2e
CORE = ("routing", "intake", "approval")
CS = common_pb2
PARALLEL_MATTERS = ("BR-001", "CC-001", "FI-001", "RE-001", "TR-001")  # the five categories of R11


@pytest.fixture(scope="module")
def node(module_node_factory):
    return module_node_factory(services=CORE)


@pytest.fixture
def c(node):
    clients = NodeClients.of(node)
    yield clients
    clients.close()


def approve_all(c: NodeClients, number: str, *, timeout: float = 30.0) -> common_pb2.Case:
    """Approve tasks wave by wave (prerequisites open later) until the case concludes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = c.case(number)
        if case.status == CS.CASE_STATUS_CONCLUDED:
            return case
        for task in c.tasks(number):
            if task.status == CS.TASK_STATUS_PENDING:
                c.decide(task)
        time.sleep(0.05)
    raise AssertionError(f"{number} did not conclude")


@pytest.mark.parametrize("matter", PARALLEL_MATTERS)
def test_a_parallel_matter_of_each_category_is_approved_when_every_department_approves(c, matter) -> None:
    number = c.submit(matter).case.case_number
    case = approve_all(c, number)
    assert case.outcome == CS.OUTCOME_APPROVED
    tasks = c.tasks(number)
    assert tasks and all(t.status == CS.TASK_STATUS_APPROVED for t in tasks)
    assert sum(t.lead for t in tasks) == 1


def test_one_rejection_rejects_the_case_with_every_reason(c) -> None:
    number = c.submit("TR-001").case.case_number
    tasks = c.wait_tasks(number, count=4)
    by_dept = {t.department: t for t in tasks}
    c.decide(by_dept["ENV"], approval_pb2.VERDICT_REJECT, reasons=["排放不达标 / emissions over the limit"])
    c.decide(by_dept["FIRE"], approval_pb2.VERDICT_REJECT, reasons=["消防通道不足 / fire lanes too narrow"])
    c.decide(by_dept["ECON"])
    assert c.case(number).status != CS.CASE_STATUS_CONCLUDED  # SAFETY has not spoken yet
    c.decide(by_dept["SAFETY"])
    case = c.wait_case(number, CS.CASE_STATUS_CONCLUDED)
    assert case.outcome == CS.OUTCOME_REJECTED
    assert sorted(case.reasons) == [
        "ENV: 排放不达标 / emissions over the limit",
        "FIRE: 消防通道不足 / fire lanes too narrow",
    ]


def test_a_rejection_without_reasons_is_refused(c) -> None:
    number = c.submit("PL-001").case.case_number
    (task,) = c.wait_tasks(number)
    with pytest.raises(grpc.RpcError) as err:
        c.decide(task, approval_pb2.VERDICT_REJECT, reasons=["  "])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in err.value.details()


def test_pre_review_lists_every_missing_material_at_once_and_accepts_after_one_supplement(c) -> None:
    reply = c.submit("PL-001", documents=[c.upload("APPLICATION")])
    assert reply.case.status == CS.CASE_STATUS_SUPPLEMENT_REQUESTED
    assert not reply.case.case_number
    missing = sorted(s.material_code for s in reply.supplement)
    assert missing == ["DRAWINGS", "LAND-CERT", "SITE-PLAN"]
    answer = c.intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(
            case_id=reply.case.case_id, query_code=reply.query_code, documents=[c.upload(m) for m in missing]
        ),
        timeout=10,
    )
    assert answer.case.status == CS.CASE_STATUS_ACCEPTED and answer.case.case_number
    assert not answer.still_missing


def test_department_supplement_requests_are_merged_into_one_notice_and_the_same_tasks_resume(c) -> None:
    reply = c.submit("TR-001")
    number = reply.case.case_number
    by_dept = {t.department: t for t in c.wait_tasks(number, count=4)}
    item = CS.SupplementItem
    c.decide(
        by_dept["ENV"],
        approval_pb2.VERDICT_REQUEST_SUPPLEMENT,
        items=[item(material_code="EIA", reason="环评报告缺少噪声章节 / noise chapter missing")],
    )
    c.decide(by_dept["ECON"])
    c.decide(
        by_dept["FIRE"],
        approval_pb2.VERDICT_REQUEST_SUPPLEMENT,
        items=[item(material_code="SAFETY", reason="缺少消防设计说明 / fire design note missing")],
    )
    assert c.case(number).status == CS.CASE_STATUS_ROUTED  # SAFETY has not spoken: no notice yet
    c.decide(by_dept["SAFETY"])
    case = c.wait_case(number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED)
    assert sorted((i.department, i.material_code) for i in case.open_supplement) == [
        ("ENV", "EIA"),
        ("FIRE", "SAFETY"),
    ]
    assert c.timeline(number).count("supplement_round_opened") == 1
    c.intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(
            case_id=reply.case.case_id,
            documents=[c.upload("EIA"), c.upload("SAFETY")],
            query_code=reply.query_code,
        ),
        timeout=10,
    )
    reopened = c.wait_tasks(number, count=2)
    assert sorted(t.department for t in reopened) == ["ENV", "FIRE"]
    for task in reopened:
        c.decide(task)
    assert c.wait_case(number, CS.CASE_STATUS_CONCLUDED).outcome == CS.OUTCOME_APPROVED


def test_a_prerequisite_opens_only_after_what_it_depends_on_is_approved(c) -> None:
    number = c.submit("CC-001").case.case_number
    c.wait_tasks(number, count=4)
    status = {t.department: t.status for t in c.tasks(number)}
    assert status["LAND"] == CS.TASK_STATUS_WAITING and status["CONS"] == CS.TASK_STATUS_WAITING
    assert status["PLAN"] == CS.TASK_STATUS_PENDING
    c.decide(next(t for t in c.tasks(number) if t.department == "PLAN"))
    wait_for(
        lambda: next(t for t in c.tasks(number) if t.department == "LAND").status == CS.TASK_STATUS_PENDING,
        what="LAND to open after PLAN",
    )
    assert next(t for t in c.tasks(number) if t.department == "CONS").status == CS.TASK_STATUS_WAITING
    assert approve_all(c, number).outcome == CS.OUTCOME_APPROVED


def test_a_rejected_prerequisite_cancels_what_depends_on_it(c) -> None:
    number = c.submit("CC-001").case.case_number
    plan = next(t for t in c.wait_tasks(number, count=4) if t.department == "PLAN")
    c.decide(plan, approval_pb2.VERDICT_REJECT, reasons=["不符合控制性详细规划 / against the zoning plan"])
    for task in c.tasks(number):
        if task.status == CS.TASK_STATUS_PENDING:
            c.decide(task)
    case = c.wait_case(number, CS.CASE_STATUS_CONCLUDED)
    assert case.outcome == CS.OUTCOME_REJECTED
    status = {t.department: t.status for t in c.tasks(number)}
    assert status["LAND"] == CS.TASK_STATUS_CANCELLED and status["CONS"] == CS.TASK_STATUS_CANCELLED


def test_a_key_project_opens_every_department_at_once_and_jumps_the_queue(c) -> None:
    reply = c.submit("CC-001")
    number = reply.case.case_number
    c.wait_tasks(number, count=4)
    deadline = datetime.now(UTC) + timedelta(days=10)
    with pytest.raises(grpc.RpcError) as err:
        c.intake.DesignateKeyProject(
            intake_pb2.DesignateKeyProjectRequest(
                case_id=reply.case.case_id, designated_by=actor("clerk.drc", "window_clerk", "DRC")
            ),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    req = intake_pb2.DesignateKeyProjectRequest(
        case_id=reply.case.case_id,
        tracker="tracker",
        designated_by=actor("head.drc", "department_head", "DRC"),
    )
    req.promised_deadline.FromDatetime(deadline)
    assert c.intake.DesignateKeyProject(req, timeout=5).key_project
    tasks = c.wait_tasks(number, count=8)
    assert all(t.key_project and t.priority >= 10 for t in tasks)
    queue = c.approval.ListQueue(approval_pb2.ListQueueRequest(department="PLAN"), timeout=5).tasks
    assert queue[0].case_number == number
    assert "key_project_designated" in c.timeline(number)


def test_an_extension_approved_by_the_head_moves_the_due_date_and_a_refused_one_does_not(c) -> None:
    number = c.submit("TR-001").case.case_number
    by_dept = {t.department: t for t in c.wait_tasks(number, count=4)}
    env, fire = by_dept["ENV"], by_dept["FIRE"]
    ask = c.approval.RequestExtension(
        approval_pb2.RequestExtensionRequest(
            task_id=env.task_id,
            days=5,
            reason="需组织专家评审 / expert review needed",
            by=actor("clerk.env", "window_clerk", "ENV"),
        )
    )
    with pytest.raises(grpc.RpcError) as err:  # a second request while one is pending
        c.approval.RequestExtension(
            approval_pb2.RequestExtensionRequest(
                task_id=env.task_id, days=3, reason="again", by=actor("clerk.env", "window_clerk", "ENV")
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:  # another department's head may not decide it
        c.approval.DecideExtension(
            approval_pb2.DecideExtensionRequest(
                extension_id=ask.extension_id, approve=True, by=actor("head.fire", "department_head", "FIRE")
            )
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    decided = c.approval.DecideExtension(
        approval_pb2.DecideExtensionRequest(
            extension_id=ask.extension_id, approve=True, by=actor("head.env", "department_head", "ENV")
        )
    )
    assert decided.state == "approved"
    after = c.approval.GetTask(approval_pb2.GetTaskRequest(task_id=env.task_id))
    assert after.extension_days == 5
    assert after.due_at.ToDatetime() > env.due_at.ToDatetime()
    refuse = c.approval.RequestExtension(
        approval_pb2.RequestExtensionRequest(
            task_id=fire.task_id,
            days=3,
            reason="人手不足 / short-staffed",
            by=actor("clerk.fire", "window_clerk", "FIRE"),
        )
    )
    refused = c.approval.DecideExtension(
        approval_pb2.DecideExtensionRequest(
            extension_id=refuse.extension_id,
            approve=False,
            reason="理由不充分 / not a valid reason",
            by=actor("head.fire", "department_head", "FIRE"),
        )
    )
    assert refused.state == "refused"
    fire_after = c.approval.GetTask(approval_pb2.GetTaskRequest(task_id=fire.task_id))
    assert fire_after.extension_days == 0 and fire_after.due_at == fire.due_at
    wait_for(lambda: c.timeline(number).count("extension_decided") == 2, what="both extension decisions")


def test_the_applicant_withdraws_before_conclusion_and_open_tasks_are_cancelled(c) -> None:
    reply = c.submit("TR-001")
    number = reply.case.case_number
    tasks = c.wait_tasks(number, count=4)
    c.decide(tasks[0])
    with pytest.raises(grpc.RpcError) as err:
        c.intake.WithdrawCase(
            intake_pb2.WithdrawCaseRequest(case_id=reply.case.case_id, query_code="WRONGCOD")
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    case = c.intake.WithdrawCase(
        intake_pb2.WithdrawCaseRequest(
            case_id=reply.case.case_id, query_code=reply.query_code, reason="项目取消 / project cancelled"
        )
    )
    assert case.outcome == CS.OUTCOME_WITHDRAWN
    wait_for(
        lambda: (
            all(t.status in (CS.TASK_STATUS_APPROVED, CS.TASK_STATUS_CANCELLED) for t in c.tasks(number))
            and sum(t.status == CS.TASK_STATUS_CANCELLED for t in c.tasks(number)) == 3
        ),
        what="tasks cancelled",
    )
    with pytest.raises(grpc.RpcError) as err:
        c.decide(tasks[1])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        c.intake.WithdrawCase(
            intake_pb2.WithdrawCaseRequest(case_id=reply.case.case_id, query_code=reply.query_code)
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_on_the_spot_matter_is_concluded_at_acceptance(c) -> None:
    number = c.submit("AIC-001").case.case_number
    case = c.wait_case(number, CS.CASE_STATUS_CONCLUDED, timeout=10)
    assert case.outcome == CS.OUTCOME_APPROVED
    (task,) = c.tasks(number)
    assert task.decided_by.username == "clerk.intake"


def test_a_decision_seal_verifies_and_a_tampered_decision_fails(c, node, tmp_path) -> None:
    number = c.submit("PL-001").case.case_number
    (task,) = c.wait_tasks(number)
    c.decide(task)
    c.wait_case(number, CS.CASE_STATUS_CONCLUDED)
    key = c.approval.GetSealKey(approval_pb2.GetSealKeyRequest())
    sealed = c.approval.GetCaseDecision(approval_pb2.GetCaseDecisionRequest(case_number=number))
    (tmp_path / "center.pem").write_text(key.public_key_pem)
    (tmp_path / "decision.bin").write_bytes(sealed.SerializeToString())
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "seal",
            "verify",
            "--decision",
            str(tmp_path / "decision.bin"),
            "--public-key",
            str(tmp_path / "center.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "valid seal of center 210200" in ok.stdout
    sealed.decision.outcome = CS.OUTCOME_REJECTED
    sealed.canonical = sealed.decision.SerializeToString(deterministic=True)
    (tmp_path / "decision.bin").write_bytes(sealed.SerializeToString())
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "seal",
            "verify",
            "--decision",
            str(tmp_path / "decision.bin"),
            "--public-key",
            str(tmp_path / "center.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "altered or forged" in bad.stdout
    assert not c.approval.VerifySeal(approval_pb2.VerifySealRequest(sealed=sealed)).valid


def test_a_retried_submission_with_the_same_request_id_returns_the_same_case(c) -> None:
    docs = c.complete_documents("PL-001")
    first = c.submit("PL-001", documents=docs, request_id="kiosk-7/2025-10-09/42")
    again = c.submit("PL-001", documents=docs, request_id="kiosk-7/2025-10-09/42")
    assert again.case.case_id == first.case.case_id
    assert again.case.case_number == first.case.case_number
    assert again.query_code == first.query_code
    assert len(c.wait_tasks(first.case.case_number)) == 1


def test_a_clerk_cannot_decide_another_department_cannot_touch_the_task_and_the_chief_decides_a_claimed_one(
    c,
) -> None:
    number = c.submit("PL-001").case.case_number
    (task,) = c.wait_tasks(number)
    with pytest.raises(grpc.RpcError) as err:
        c.decide(task, by=actor("clerk.plan", "window_clerk", "PLAN"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        c.approval.ClaimTask(
            approval_pb2.ClaimTaskRequest(task_id=task.task_id, by=actor("clerk.env", "window_clerk", "ENV"))
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    claimed = c.approval.ClaimTask(
        approval_pb2.ClaimTaskRequest(task_id=task.task_id, by=actor("clerk.plan", "window_clerk", "PLAN"))
    )
    assert claimed.status == CS.TASK_STATUS_CLAIMED
    with pytest.raises(grpc.RpcError) as err:  # another clerk of the window waits for the release
        c.decide(
            task,
            approval_pb2.VERDICT_REQUEST_SUPPLEMENT,
            items=[CS.SupplementItem(material_code="SITE-PLAN", reason="比例尺错误")],
            by=actor("clerk2.plan", "window_clerk", "PLAN"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claimed by clerk.plan" in (err.value.details() or "")
    # The clerk prepared it; the window's chief representative decides without waiting for a release.
    assert c.decide(task).status == CS.TASK_STATUS_APPROVED

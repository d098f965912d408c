"""Supervision over real processes on a shared test clock, moved across National Day 2025.

KP-001 (7 working days promised, silence is consent) accepted on Friday 2025-09-26: the working days
after it are Sun 09-28 (调休), 09-29, 09-30, then the holiday 10-01..10-08, then 10-09, 10-10,
Sat 10-11 (调休), 10-13 — due at the end of 2025-10-13.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest

from onestop.approval.v1 import approval_pb2
from onestop.common.v1 import common_pb2
from onestop.intake.v1 import intake_pb2
from onestop.notification.v1 import notification_pb2, notification_pb2_grpc
from onestop.supervision.v1 import supervision_pb2, supervision_pb2_grpc
from services.common.calendar import default_calendar
from services.common.clock import FileClock
from tests.harness import NodeClients, actor, wait_for

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
CS = common_pb2


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "now.json"
    FileClock.write(path, datetime(2025, 9, 26, 9, 0, tzinfo=SH))
    return path


@pytest.fixture(scope="module")
def node(module_node_factory, clock_file):
    return module_node_factory(
        env={"ONESTOP_TEST_CLOCK_FILE": str(clock_file), "ONESTOP_SUPERVISION_TICK_S": "0"}
    )


@pytest.fixture(scope="module")
def sup(node):
    return supervision_pb2_grpc.SupervisionServiceStub(grpc.insecure_channel(node.address("supervision")))


def at(clock_file: Path, *args: int) -> datetime:
    instant = datetime(*args, tzinfo=SH)
    FileClock.write(clock_file, instant)
    return instant


def task_clock(sup, number: str, department: str) -> common_pb2.Clock:
    clocks = sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number), timeout=5).clocks
    return next(c for c in clocks if c.department == department and c.task_id)


def start_case(c: NodeClients, sup, matter: str, silent: str) -> tuple[str, list[common_pb2.Task]]:
    number = c.submit(matter).case.case_number
    tasks = c.wait_tasks(number, count=1)

    def clocks() -> int:
        try:
            return len(sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks)
        except grpc.RpcError as exc:  # supervision may see the routing after approval opened the tasks
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return 0

    wait_for(lambda: clocks() > len(tasks), what="clocks of the case and its tasks")
    for task in tasks:
        if task.department != silent:
            c.decide(task)

    def decided_ones_stopped() -> bool:
        clocks = sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks
        decided = [k for k in clocks if k.task_id and k.department != silent]
        return len(decided) == len(tasks) - 1 and all(k.state == CS.CLOCK_STATE_STOPPED for k in decided)

    # Supervision has applied the decisions before the test ticks: a tick skips the clocks a consumer
    # transaction holds locked (FOR UPDATE SKIP LOCKED, so replicas never take the same clock) and leaves
    # them to the next tick, which a test that ticks by hand would not give.
    wait_for(decided_ones_stopped, what="supervision to stop the decided tasks' clocks")
    return number, tasks


def test_yellow_red_urge_then_deemed_approval_five_working_days_later_across_national_day(
    node, sup, clock_file
):
    at(clock_file, 2025, 9, 26, 9, 0)
    c = NodeClients.of(node)
    number, _ = start_case(c, sup, "KP-001", silent="FIRE")
    fire = task_clock(sup, number, "FIRE")
    due = fire.due_at.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(SH)
    assert due.date().isoformat() == "2025-10-13"
    assert due == default_calendar().due_instant(datetime(2025, 9, 26, 9, 0, tzinfo=SH), 7)
    at(clock_file, 2025, 10, 8, 10, 0)  # still a holiday: days left, green
    sup.Tick(supervision_pb2.TickRequest())
    assert task_clock(sup, number, "FIRE").state == CS.CLOCK_STATE_GREEN
    at(clock_file, 2025, 10, 13, 10, 0)  # the due day: yellow
    sup.Tick(supervision_pb2.TickRequest())
    assert task_clock(sup, number, "FIRE").state == CS.CLOCK_STATE_YELLOW
    at(clock_file, 2025, 10, 14, 9, 0)  # overdue: red, and the office urges
    sup.Tick(supervision_pb2.TickRequest())
    fire = task_clock(sup, number, "FIRE")
    assert fire.state == CS.CLOCK_STATE_RED and fire.urged
    wait_for(lambda: "task_urged" in c.timeline(number), what="the urge on the timeline")
    at(clock_file, 2025, 10, 20, 12, 0)  # four working days after the urge: still waiting
    sup.Tick(supervision_pb2.TickRequest())
    assert c.case(number).status != CS.CASE_STATUS_CONCLUDED
    at(clock_file, 2025, 10, 22, 9, 0)  # five working days after the urge have passed
    sup.Tick(supervision_pb2.TickRequest())
    case = c.wait_case(number, CS.CASE_STATUS_CONCLUDED)
    assert case.outcome == CS.OUTCOME_DEEMED_APPROVED
    fire_task = next(t for t in c.tasks(number) if t.department == "FIRE")
    assert fire_task.status == CS.TASK_STATUS_DEEMED_APPROVED
    records = wait_for(
        lambda: [
            r
            for r in sup.ListAccountability(
                supervision_pb2.ListAccountabilityRequest(department="FIRE")
            ).records
            if r.case_number == number
        ],
        what="the accountability record",
    )
    assert records[0].window
    sealed = c.approval.GetCaseDecision(approval_pb2.GetCaseDecisionRequest(case_number=number))
    assert c.approval.VerifySeal(approval_pb2.VerifySealRequest(sealed=sealed)).valid
    c.close()


def test_no_deemed_approval_for_a_matter_that_forbids_it(node, sup, clock_file):
    at(clock_file, 2025, 11, 3, 9, 0)
    c = NodeClients.of(node)
    number, _ = start_case(c, sup, "FI-001", silent="FTRADE")  # foreign investment: silence is not consent
    at(clock_file, 2026, 1, 30, 9, 0)  # far past any deadline
    sup.Tick(supervision_pb2.TickRequest())
    at(clock_file, 2026, 3, 2, 9, 0)
    sup.Tick(supervision_pb2.TickRequest())
    clock = task_clock(sup, number, "FTRADE")
    assert clock.urged and not clock.deemed_approval_allowed
    assert c.case(number).status != CS.CASE_STATUS_CONCLUDED
    assert next(t for t in c.tasks(number) if t.department == "FTRADE").status == CS.TASK_STATUS_PENDING
    c.close()


def test_no_deemed_approval_after_an_approved_extension(node, sup, clock_file):
    at(clock_file, 2026, 3, 2, 9, 0)
    c = NodeClients.of(node)
    number, tasks = start_case(c, sup, "KP-001", silent="ENV")
    env = next(t for t in tasks if t.department == "ENV")
    before = task_clock(sup, number, "ENV").due_at.ToDatetime()
    ask = c.approval.RequestExtension(
        approval_pb2.RequestExtensionRequest(
            task_id=env.task_id,
            days=10,
            reason="专家评审 / expert review",
            by=actor("clerk.env", "window_clerk", "ENV"),
        )
    )
    c.approval.DecideExtension(
        approval_pb2.DecideExtensionRequest(
            extension_id=ask.extension_id, approve=True, by=actor("head.env", "department_head", "ENV")
        )
    )
    wait_for(lambda: task_clock(sup, number, "ENV").extension_days == 10, what="the clock to move")
    assert task_clock(sup, number, "ENV").due_at.ToDatetime() > before
    at(clock_file, 2026, 5, 20, 9, 0)  # long past even the extended deadline
    sup.Tick(supervision_pb2.TickRequest())
    at(clock_file, 2026, 6, 30, 9, 0)
    sup.Tick(supervision_pb2.TickRequest())
    assert c.case(number).status != CS.CASE_STATUS_CONCLUDED
    assert next(t for t in c.tasks(number) if t.department == "ENV").status == CS.TASK_STATUS_PENDING
    c.close()


def test_a_supplement_pause_moves_the_due_date(node, sup, clock_file):
    at(clock_file, 2026, 7, 1, 9, 0)  # Wednesday
    c = NodeClients.of(node)
    reply = c.submit("PL-001")
    number = reply.case.case_number
    (task,) = c.wait_tasks(number)
    wait_for(
        lambda: sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks, what="the clocks"
    )
    due_before = task_clock(sup, number, "PLAN").due_at.ToDatetime()
    at(clock_file, 2026, 7, 2, 9, 0)
    c.decide(
        task,
        approval_pb2.VERDICT_REQUEST_SUPPLEMENT,
        items=[CS.SupplementItem(material_code="SITE-PLAN", reason="比例尺错误 / wrong scale")],
    )
    c.wait_case(number, CS.CASE_STATUS_SUPPLEMENT_REQUESTED)
    at(clock_file, 2026, 7, 9, 15, 0)  # the applicant answers a week later
    c.intake.SupplementCase(
        intake_pb2.SupplementCaseRequest(
            case_id=reply.case.case_id, query_code=reply.query_code, documents=[c.upload("SITE-PLAN")]
        ),
        timeout=10,
    )
    c.wait_tasks(number)
    due_after = wait_for(
        lambda: (d := task_clock(sup, number, "PLAN").due_at.ToDatetime()) > due_before and d,
        what="the due date to move by the paused days",
    )
    assert timedelta(days=5) <= due_after - due_before <= timedelta(days=9)
    c.close()


def test_a_year_without_calendar_data_raises_the_alarm_and_loading_it_recomputes_open_clocks(
    node, sup, clock_file
):
    at(clock_file, 2026, 12, 28, 9, 0)  # Monday; seven working days later is in 2027, which has no data yet
    c = NodeClients.of(node)
    number = c.submit("KP-001").case.case_number
    c.wait_tasks(number, count=1)
    clocks = wait_for(
        lambda: sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks, what="the clocks"
    )
    assert all(not clock.HasField("due_at") for clock in clocks)  # never a weekend-only guess
    wait_for(lambda: "calendar_missing" in _stream_kinds(node), what="the calendar-missing alarm")
    # Visible to whoever asks (the console shows it on every staff page), and the window's queue has no
    # due instant to sort by rather than a guessed one.
    assert list(sup.GetCalendarStatus(supervision_pb2.GetCalendarStatusRequest()).missing_years) == [2027]
    assert not any(t.HasField("due_at") for t in c.tasks(number))
    with pytest.raises(grpc.RpcError) as err:
        sup.LoadCalendarYear(
            supervision_pb2.LoadCalendarYearRequest(year=2027, by=actor("clerk.plan", "window_clerk"))
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = sup.LoadCalendarYear(
        supervision_pb2.LoadCalendarYearRequest(
            year=2027,
            holidays={"2027-01-01": "元旦 New Year's Day"},
            workdays=[],
            source="test: State Council 2027",
            by=actor("admin", "administrator"),
        )
    )
    assert reply.moved_clocks >= 1
    clock = task_clock(sup, number, "DRC")
    due = clock.due_at.ToDatetime().replace(tzinfo=ZoneInfo("UTC")).astimezone(SH)
    # Working days after Mon 12-28: 29, 30, 31, (01-01 holiday), 01-04, 05, 06, 07 -> the 7th is 2027-01-07.
    assert due.date().isoformat() == "2027-01-07"
    status = sup.GetCalendarStatus(supervision_pb2.GetCalendarStatusRequest())
    assert list(status.missing_years) == [] and [y.year for y in status.loaded_years] == [2027]
    # Approval takes the year from supervision's fact: the task's due instant is the clock's.
    drc = wait_for(
        lambda: (t := next(t for t in c.tasks(number) if t.department == "DRC")).HasField("due_at") and t,
        what="approval's due instant of the DRC task",
    )
    assert drc.due_at.ToDatetime() == clock.due_at.ToDatetime()
    # It keeps the year: after a restart a new case into 2027 gets its due instant at once.
    c.close()
    node.restart("approval")
    c = NodeClients.of(node)
    later = c.submit("KP-001").case.case_number
    tasks = c.wait_tasks(later, count=1)
    assert all(t.HasField("due_at") for t in tasks)
    assert tasks[0].due_at.ToDatetime() == drc.due_at.ToDatetime()  # accepted the same day
    c.close()


def _stream_kinds(node) -> set[str]:
    """Whether the node's stream holds a calendar-missing alarm (the alarm is an event like any other)."""
    import asyncio

    import nats

    async def read() -> set[str]:
        nc = await nats.connect(node.nats_url)
        sub = await nc.jetstream().subscribe("ev.calendar_missing", ordered_consumer=True)
        try:
            await sub.next_msg(timeout=1)
            return {"calendar_missing"}
        except nats.errors.TimeoutError:
            return set()
        finally:
            await nc.close()

    return asyncio.run(read())


def test_a_hearing_stops_the_clocks_tells_the_applicant_in_writing_and_moves_the_due_date(
    node, sup, clock_file
):
    """行政许可法 Art. 45: a hearing's time is not counted. KP-001 accepted on Monday 2026-11-02 is due at
    the end of Wed 11-11 (7 working days). A hearing from Tue 11-03 to Mon 11-16 covers the 9 working days
    11-04..11-16 (the clock runs on the day it stops and restarts the day after): due at the end of 11-24.
    """
    at(clock_file, 2026, 11, 2, 9, 0)
    c = NodeClients.of(node)
    number, tasks = start_case(c, sup, "KP-001", silent="ENV")
    env = next(t for t in tasks if t.department == "ENV")
    clerk = actor("clerk.env", "window_clerk", "ENV")
    assert task_clock(sup, number, "ENV").due_at.ToDatetime().date().isoformat() == "2026-11-11"

    def start(**overrides):
        by = overrides.pop("by", clerk)
        req = {
            "task_id": env.task_id,
            "procedure": "hearing",
            "reason": "利害关系人申请听证",
            "expected_days": 10,
        }
        return c.approval.StartSpecialProcedure(
            approval_pb2.StartSpecialProcedureRequest(**(req | overrides), by=by), timeout=5
        )

    def refused(code: grpc.StatusCode, call) -> str:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, err.value.details()
        return err.value.details()

    # Only what the matter allows, with a reason and a sensible length, at the task's own window.
    assert "expert_review, hearing" in refused(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: start(procedure="auction")
    )
    refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: start(reason=" "))
    refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: start(expected_days=0))
    refused(grpc.StatusCode.PERMISSION_DENIED, lambda: start(by=actor("clerk.plan", "window_clerk", "PLAN")))

    at(clock_file, 2026, 11, 3, 10, 0)
    hearing = start()
    assert hearing.state == "running" and hearing.expected_days == 10
    assert "already in a hearing" in refused(grpc.StatusCode.FAILED_PRECONDITION, start)
    wait_for(
        lambda: task_clock(sup, number, "ENV").state == CS.CLOCK_STATE_PAUSED, what="the task's clock to stop"
    )
    case_clock = next(
        k for k in sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks if not k.task_id
    )
    assert case_clock.state == CS.CLOCK_STATE_PAUSED
    other = next(
        k
        for k in sup.GetClocks(supervision_pb2.GetClocksRequest(case_number=number)).clocks
        if k.task_id and k.department != "ENV"
    )
    assert other.state != CS.CLOCK_STATE_PAUSED  # another department's task is not held up by it
    assert "hearing" in refused(grpc.StatusCode.FAILED_PRECONDITION, lambda: c.decide(env))

    # The applicant's written notice says how long it takes and under which article.
    notification = notification_pb2_grpc.NotificationServiceStub(
        grpc.insecure_channel(node.address("notification"))
    )
    notice = wait_for(
        lambda: _notice_or_none(notification, number, "special_procedure"), what="the written notice"
    )
    assert "第四十五条" in notice.html and "听证" in notice.html and "10 个工作日" in notice.html

    # Past the original due date while the hearing runs: no urge.
    at(clock_file, 2026, 11, 13, 9, 0)
    sup.Tick(supervision_pb2.TickRequest())
    assert not task_clock(sup, number, "ENV").urged

    at(clock_file, 2026, 11, 16, 16, 0)
    refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: c.approval.EndSpecialProcedure(
            approval_pb2.EndSpecialProcedureRequest(procedure_id=hearing.procedure_id, by=clerk), timeout=5
        ),
    )
    ended = c.approval.EndSpecialProcedure(
        approval_pb2.EndSpecialProcedureRequest(
            procedure_id=hearing.procedure_id, result="听证未发现新的事实", by=clerk
        ),
        timeout=5,
    )
    assert ended.state == "ended" and ended.result == "听证未发现新的事实"
    refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: c.approval.EndSpecialProcedure(
            approval_pb2.EndSpecialProcedureRequest(
                procedure_id=hearing.procedure_id, result="again", by=clerk
            ),
            timeout=5,
        ),
    )
    due = wait_for(
        lambda: (
            (k := task_clock(sup, number, "ENV")).state != CS.CLOCK_STATE_PAUSED and k.due_at.ToDatetime()
        ),
        what="the task's clock to run again",
    )
    assert due.astimezone(SH).date().isoformat() == "2026-11-24"
    task = c.approval.GetTask(approval_pb2.GetTaskRequest(task_id=env.task_id), timeout=5)
    assert task.due_at.ToDatetime() == due and not task.special_procedure  # the window's queue agrees
    listed = c.approval.ListSpecialProcedures(approval_pb2.ListSpecialProceduresRequest(case_number=number))
    assert [(p.procedure, p.state) for p in listed.procedures] == [("hearing", "ended")]

    c.decide(env)
    c.wait_case(number, CS.CASE_STATUS_CONCLUDED)
    kinds = c.timeline(number)
    assert kinds.index("special_procedure_started") < kinds.index("special_procedure_ended")
    c.close()


def _notice_or_none(notification, number: str, kind: str):
    try:
        return notification.GetNotice(
            notification_pb2.GetNoticeRequest(case_number=number, kind=kind), timeout=5
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None
